"""Find the ChartMogul customer a record means, and read customers' current attributes.

Two ways, chosen by size: a lookup per record (``GET /v1/customers?external_id=...`` or the email
search), or one pass over the paginated customer listing (200 customers a page, each with its
external ids, email and current custom attributes) that indexes the whole account. Emails are not
unique and an external id is unique only within a data source: a record that matches no customer,
or several, is never written.

Emails match case-insensitively both ways. The search endpoint is asked for the email as given
and, when that finds nothing and the email has capitals, in lower case; only customers whose email
equals it case-insensitively count (a server that searched more loosely is not trusted).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.client.identifiers import data_source_uuids, external_ids
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import CustomerRecord

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook

_NAMED_MATCHES = 5


class ResolutionError(Exception):
    """A record matches no ChartMogul customer, or more than one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _pick(record: CustomerRecord, uuids: list[str]) -> str:
    what = _describe_identifier(record)
    if not uuids:
        raise ResolutionError(f"no ChartMogul customer has {what}", status=404)
    unique = list(dict.fromkeys(uuids))
    if len(unique) > 1:
        named = ", ".join(unique[:_NAMED_MATCHES]) + (" ..." if len(unique) > _NAMED_MATCHES else "")
        hint = (
            "emails are not unique in ChartMogul: identify this customer by customer_uuid or external_id"
            if record.email is not None
            else "external ids are unique only within a data source: add data_source_uuid"
        )
        raise ResolutionError(
            f"{what} matches {len(unique)} ChartMogul customers ({named}); nothing was written to "
            f"any of them ({hint})"
        )
    return unique[0]


def _describe_identifier(record: CustomerRecord) -> str:
    if record.email is not None:
        return f"email {record.email!r}"
    text = f"external_id {record.external_id!r}"
    if record.data_source_uuid is not None:
        text += f" in data source {record.data_source_uuid!r}"
    return text


class CustomerDirectory:
    """Every customer of the account, indexed, from one pass over ``GET /v1/customers``.

    :param keep_state: keep each customer's custom attributes (sync mode and dry runs need them).
    """

    def __init__(self, *, keep_state: bool) -> None:
        self.keep_state = keep_state
        self.customers = 0
        self.requests = 0
        self._sources: dict[str, tuple[str, ...]] = {}
        self._state: dict[str, dict[str, Any]] = {}
        self._by_external_id: dict[str, list[str]] = {}
        self._by_email: dict[str, list[str]] = {}

    def add(self, customer: Mapping[str, Any]) -> None:
        uuid = customer["uuid"]
        self.customers += 1
        self._sources[uuid] = tuple(data_source_uuids(customer))
        for external_id in external_ids(customer):
            self._by_external_id.setdefault(str(external_id), []).append(uuid)
        if customer.get("email"):
            self._by_email.setdefault(customer["email"].lower(), []).append(uuid)
        if self.keep_state:
            self._state[uuid] = dict((customer.get("attributes") or {}).get("custom") or {})

    @classmethod
    def build(cls, hook: ChartMogulHook, *, keep_state: bool, observed: ObservedTypes) -> CustomerDirectory:
        directory = cls(keep_state=keep_state)
        for customer in hook.iter_customers(on_page=directory._count_page):
            observed.observe((customer.get("attributes") or {}).get("custom") or {})
            directory.add(customer)
        return directory

    def _count_page(self) -> None:
        self.requests += 1

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._sources

    def candidates(self, record: CustomerRecord) -> list[str]:
        """The customers indexed so far that ``record``'s identifier names (none, one or several)."""
        if record.email is not None:
            return list(self._by_email.get(record.email.lower(), []))
        uuids = self._by_external_id.get(str(record.external_id), [])
        if record.data_source_uuid is not None:
            uuids = [u for u in uuids if record.data_source_uuid in self._sources.get(u, ())]
        return list(uuids)

    def set_state(self, uuid: str, custom: Mapping[str, Any]) -> None:
        """The customer's attributes after a write, for the next record for the same customer."""
        if self.keep_state and uuid in self._sources:
            self._state[uuid] = dict(custom)

    def find(self, record: CustomerRecord) -> str:
        if record.email is not None:
            return _pick(record, self._by_email.get(record.email.lower(), []))
        uuids = self._by_external_id.get(str(record.external_id), [])
        if record.data_source_uuid is not None:
            uuids = [u for u in uuids if record.data_source_uuid in self._sources.get(u, ())]
        return _pick(record, uuids)

    def state(self, uuid: str) -> dict[str, Any]:
        if uuid not in self._sources:
            raise ResolutionError(f"no ChartMogul customer has customer_uuid {uuid!r}", status=404)
        return self._state[uuid]


class CustomerResolver:
    """Resolves records to uuids and reads current attributes, by directory or per customer."""

    def __init__(self, hook: ChartMogulHook, observed: ObservedTypes) -> None:
        self.hook = hook
        self.observed = observed
        self.directory: CustomerDirectory | None = None
        self.lookup_requests = 0
        self._lock = threading.Lock()

    def build_directory(self, *, keep_state: bool) -> CustomerDirectory:
        self.directory = CustomerDirectory.build(self.hook, keep_state=keep_state, observed=self.observed)
        return self.directory

    def _count_page(self) -> None:
        with self._lock:
            self.lookup_requests += 1

    def resolve(self, record: CustomerRecord) -> str:
        """The uuid of the one customer ``record`` means."""
        if record.customer_uuid is not None:
            return record.customer_uuid
        if self.directory is not None:
            return self.directory.find(record)
        matches: Iterable[Mapping[str, Any]]
        if record.email is not None:
            matches = self._by_email(record.email)
        else:
            matches = self.hook.iter_customers(
                external_id=record.external_id,
                data_source_uuid=record.data_source_uuid,
                on_page=self._count_page,
            )
        return _pick(record, [c["uuid"] for c in matches])

    def _by_email(self, email: str) -> list[Mapping[str, Any]]:
        wanted = email.lower()
        for query in dict.fromkeys((email, wanted)):
            found: list[Mapping[str, Any]] = [
                customer
                for customer in self.hook.iter_customers(email=query, on_page=self._count_page)
                if str(customer.get("email") or "").lower() == wanted
            ]
            if found:
                return found
        return []

    def current_attributes(self, uuid: str) -> dict[str, Any]:
        """The customer's custom attributes as they are in ChartMogul now."""
        if self.directory is not None and self.directory.keep_state:
            return self.directory.state(uuid)
        self._count_page()
        try:
            current = self.hook.get_custom_attributes(uuid)
        except ChartMogulAPIError as exc:
            if exc.status == 404:
                raise ResolutionError(
                    f"no ChartMogul customer has customer_uuid {uuid!r}", status=404
                ) from None
            raise
        self.observed.observe(current)
        return current
