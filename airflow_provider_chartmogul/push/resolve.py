"""Find the ChartMogul customer a record means by a lookup of its own, and read one customer's
current attributes (the other way, one pass over the customer listing, is
:mod:`airflow_provider_chartmogul.push.intake` with :mod:`airflow_provider_chartmogul.push.index`).

A lookup is ``GET /v1/customers?external_id=...`` or the email search. Emails are not unique and
an external id is unique only within a data source: a record that matches no customer, or several,
is never written. No answer is trusted blindly: only answered customers that carry the identifier
asked for count (the email case-insensitively, the external id exactly and within the data source
asked for); an answer of only other customers is a misdirected lookup, a resolution failure. The
search endpoint is asked for the email as given and, when that finds nothing and the email has
capitals, in lower case.

The uuid a record is matched to came from ChartMogul's answer, not from the checked input: it is
checked here, once, when it is picked (as :func:`~airflow_provider_chartmogul.push.records.parse_record`
checks a record's own ``customer_uuid``), and sent unchecked after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.client.identifiers import (
    data_source_uuids,
    external_ids,
    validate_customer_uuid,
)
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError, ChartMogulValidationError
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


def pick(record: CustomerRecord, uuids: list[str]) -> str:
    """The one customer of ``uuids`` (the matches of ``record``'s identifier), its uuid checked.

    :raises ResolutionError: no match, several, or a uuid that is not safe to send.
    """
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
    try:
        return validate_customer_uuid(unique[0], customer=f"the ChartMogul customer with {what}")
    except ChartMogulValidationError as exc:
        raise ResolutionError(f"{exc}; nothing was written") from None


def carries(record: CustomerRecord, customer: Mapping[str, Any]) -> bool:
    """Whether ``customer`` (an answer's customer object) has ``record``'s identifier: its email
    case-insensitively, or its external id exactly (within its data source, when the record
    names one)."""
    if record.email is not None:
        return str(customer.get("email") or "").lower() == record.email.lower()
    if record.external_id not in external_ids(customer):
        return False
    return record.data_source_uuid is None or record.data_source_uuid in data_source_uuids(customer)


def _carrying(record: CustomerRecord, answered: Iterable[Mapping[str, Any]], strays: list[str]) -> list[str]:
    """The uuids of the ``answered`` customers that carry ``record``'s identifier; the others'
    uuids are added to ``strays``."""
    found: list[str] = []
    for customer in answered:
        (found if carries(record, customer) else strays).append(str(customer.get("uuid")))
    return found


def _describe_identifier(record: CustomerRecord) -> str:
    if record.email is not None:
        return f"email {record.email!r}"
    text = f"external_id {record.external_id!r}"
    if record.data_source_uuid is not None:
        text += f" in data source {record.data_source_uuid!r}"
    return text


class CustomerResolver:
    """Looks up one record's customer, and reads one customer's attributes, a request at a time
    (thread-safe: worker threads call it)."""

    def __init__(self, hook: ChartMogulHook, observed: ObservedTypes) -> None:
        self.hook = hook
        self.observed = observed
        self.lookup_requests = 0
        self._lock = threading.Lock()

    def _count_page(self) -> None:
        with self._lock:
            self.lookup_requests += 1

    def resolve(self, record: CustomerRecord) -> str:
        """The uuid of the one customer ``record`` means."""
        if record.customer_uuid is not None:
            return record.customer_uuid
        strays: list[str] = []
        if record.email is not None:
            matches = self._by_email(record, record.email, strays)
        else:
            answered = self.hook.iter_customers(
                external_id=record.external_id,
                data_source_uuid=record.data_source_uuid,
                on_page=self._count_page,
            )
            matches = _carrying(record, answered, strays)
        if not matches and strays:
            named = ", ".join(strays[:_NAMED_MATCHES]) + (" ..." if len(strays) > _NAMED_MATCHES else "")
            raise ResolutionError(
                f"no ChartMogul customer has {_describe_identifier(record)}: the lookup answered "
                f"{len(strays)} customer(s) that do not carry it ({named}), a misdirected answer; "
                "nothing was written",
                status=404,
            )
        return pick(record, matches)

    def _by_email(self, record: CustomerRecord, email: str, strays: list[str]) -> list[str]:
        for query in dict.fromkeys((email, email.lower())):
            answered = self.hook.iter_customers(email=query, on_page=self._count_page)
            found = _carrying(record, answered, strays)
            if found:
                return found
        return []

    def current_attributes(self, uuid: str) -> dict[str, Any]:
        """The customer's custom attributes as they are in ChartMogul now (``uuid`` checked)."""
        self._count_page()
        try:
            current = self.hook._read_custom(uuid)
        except ChartMogulAPIError as exc:
            if exc.status == 404:
                raise ResolutionError(
                    f"no ChartMogul customer has customer_uuid {uuid!r}", status=404
                ) from None
            raise
        self.observed.observe(current)
        return current
