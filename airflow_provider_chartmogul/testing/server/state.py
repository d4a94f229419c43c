"""In-memory state of one ChartMogul account: customers, attribute definitions, listing indexes.

Nothing here is thread-safe: the server serialises every call under its lock. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.testing.server.attribute_rules import (
    AttributeValidationError,
    coerce_value,
    infer_type,
    validate_key,
    validate_type,
)
from airflow_provider_chartmogul.testing.server.customers import (
    CUSTOMER_FIELD_NAMES,
    DEFAULT_DATA_SOURCE_UUID,
    StoredCustomer,
    new_customer_uuid,
)
from airflow_provider_chartmogul.testing.server.synthetic import (
    SYNTHETIC_DEFINITIONS,
    holds_custom,
    synthetic_custom,
    synthetic_email,
    synthetic_external_id,
    synthetic_uuid,
)

_CURSOR_PREFIX = "cmts1:"
_FREEZE_AFTER = 10_000


def encode_cursor(position: int) -> str:
    """Opaque cursor, padded base64 as the API's: the position in insertion order where the next
    page starts."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Inverse of :func:`encode_cursor`; ValueError on anything it did not produce."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError(cursor) from exc
    if not text.startswith(_CURSOR_PREFIX) or not text[len(_CURSOR_PREFIX) :].isdigit():
        raise ValueError(cursor)
    return int(text[len(_CURSOR_PREFIX) :])


@dataclass
class Page:
    """One page of a listing: the customers, the next cursor and whether more follow."""

    customers: list[StoredCustomer]
    cursor: str | None  # None on the last page, as the API answers
    has_more: bool


class PositionIndex:
    """value -> ascending positions in the store's order. Most values (an external ID, an email)
    name one customer, so a single position is kept as a bare int rather than a one-item list."""

    __slots__ = ("_positions",)

    def __init__(self) -> None:
        self._positions: dict[str, int | list[int]] = {}

    def add(self, value: str, position: int) -> None:
        """Record ``position``, which must be above every position recorded so far."""
        found = self._positions.get(value)
        if found is None:
            self._positions[value] = position
        elif isinstance(found, int):
            self._positions[value] = [found, position]
        else:
            found.append(position)

    def get(self, value: str) -> Sequence[int]:
        found = self._positions.get(value)
        if found is None:
            return ()
        return (found,) if isinstance(found, int) else found

    def __contains__(self, value: object) -> bool:
        return value in self._positions


class AccountStore:
    """Customers and attribute definitions of one account, with lookup indexes."""

    customers: dict[str, StoredCustomer]
    order: list[StoredCustomer]
    definitions: dict[str, str]
    # Customers are never removed (only clear() empties the store), so positions in self.order are
    # stable, and cursors too.
    by_external_id: PositionIndex
    by_data_source: PositionIndex
    by_email: PositionIndex  # lower-cased
    next_id: int

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every customer and definition (in place: the endpoints keep this store)."""
        self.customers = {}
        self.order = []
        self.definitions = {}
        self.by_external_id = PositionIndex()
        self.by_data_source = PositionIndex()
        self.by_email = PositionIndex()
        self.next_id = 1

    # ----------------------------------------------------------------------------- definitions

    def define(self, key: str, type_: str) -> None:
        """Define (or redefine) ``key`` account-wide."""
        self.definitions[validate_key(key)] = validate_type(type_, key)

    def prepare_typed(self, entries: Any, type_conflict: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate the POST form ``[{"type","key","value","source"?}, ...]`` without writing.

        Returns (values to store, definitions to create or change). Raises
        AttributeValidationError on the first broken entry, TypeError if ``entries`` is not a
        list of objects.
        """
        if not isinstance(entries, list) or not all(isinstance(item, dict) for item in entries):
            raise TypeError("custom must be an array of {type, key, value} objects")
        values: dict[str, Any] = {}
        new_definitions: dict[str, str] = {}
        for entry in entries:
            key = validate_key(entry.get("key"))
            if "type" not in entry:
                raise AttributeValidationError(f"Custom attribute {key!r} has no type", key)
            type_ = validate_type(entry.get("type"), key)
            if "value" not in entry:
                raise AttributeValidationError(f"Custom attribute {key!r} has no value", key)
            source = entry.get("source", "API")
            if source is not None and not isinstance(source, str):
                raise AttributeValidationError(f"Source of custom attribute {key!r} must be a string", key)
            defined = new_definitions.get(key, self.definitions.get(key))
            if defined is not None and defined != type_ and type_conflict == "error":
                raise AttributeValidationError(
                    f"Custom attribute {key!r} is already defined with type {defined}; "
                    f"it cannot be set with type {type_}",
                    key,
                )
            values[key] = coerce_value(type_, entry["value"], key)
            if defined != type_:
                new_definitions[key] = type_
        return values, new_definitions

    def prepare_untyped(self, custom: Any) -> dict[str, Any]:
        """Validate the PUT form ``{key: value | {"value": v, "source": s}}`` without writing.

        Every key must already be defined; values are checked against the defined type.
        """
        if not isinstance(custom, dict):
            raise TypeError("custom must be an object of key: value pairs")
        values: dict[str, Any] = {}
        for key, raw in custom.items():
            validate_key(key)
            type_ = self.definitions.get(key)
            if type_ is None:
                raise AttributeValidationError(
                    f"Custom attribute {key!r} is not defined on this account; add it with a POST first",
                    key,
                )
            if isinstance(raw, dict):
                if "value" not in raw:
                    raise AttributeValidationError(f"Custom attribute {key!r} has no value", key)
                raw = raw["value"]
            values[key] = coerce_value(type_, raw, key)
        return values

    # ------------------------------------------------------------------------------- customers

    def add_customer(
        self,
        uuid: str | None = None,
        external_id: str | None = None,
        data_source_uuid: str | None = DEFAULT_DATA_SOURCE_UUID,
        email: str | None = None,
        name: str | None = None,
        custom: Mapping[str, Any] | None = None,
        external_ids: Iterable[str] | None = None,
        data_source_uuids: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        **extra: Any,
    ) -> StoredCustomer:
        """Create a customer; ValueError on a duplicate uuid / external ID or a bad custom value."""
        if uuid is None:
            uuid = new_customer_uuid()
        elif not isinstance(uuid, str) or not uuid:
            raise ValueError(f"uuid must be a non-empty string, got {uuid!r}")
        if uuid in self.customers:
            raise ValueError(f"a customer with uuid {uuid!r} already exists")
        if extra:
            unknown = [name_ for name_ in extra if name_ not in CUSTOMER_FIELD_NAMES]
            if unknown:
                raise TypeError(
                    f"add_customer() got unexpected customer fields: {', '.join(sorted(unknown))}"
                )
        customer_id = int(extra["id"]) if "id" in extra else self.next_id

        if external_ids is None:
            # Every real customer has an external ID (its ID in the billing system).
            external_id = f"ext_{customer_id}" if external_id is None else str(external_id)
            ext_ids = [external_id]
        else:
            ext_ids = [str(item) for item in external_ids]
            if external_id is None:
                external_id = ext_ids[0] if ext_ids else f"ext_{customer_id}"
            external_id = str(external_id)
            if external_id not in ext_ids:
                ext_ids.insert(0, external_id)
            ext_ids = list(dict.fromkeys(ext_ids))
        if data_source_uuids is None:
            data_source_uuid = DEFAULT_DATA_SOURCE_UUID if data_source_uuid is None else str(data_source_uuid)
            ds_uuids = [data_source_uuid]
        else:
            ds_uuids = [str(item) for item in data_source_uuids]
            if data_source_uuid is None:
                data_source_uuid = ds_uuids[0] if ds_uuids else DEFAULT_DATA_SOURCE_UUID
            if data_source_uuid not in ds_uuids:
                ds_uuids.insert(0, data_source_uuid)
            ds_uuids = list(dict.fromkeys(ds_uuids))
        for position in self.by_external_id.get(external_id):
            if data_source_uuid in self.order[position].data_source_uuids:
                raise ValueError(
                    f"external_id {external_id!r} already exists in data source {data_source_uuid!r}"
                )

        # Custom values are checked before anything is written.
        values: dict[str, Any] = {}
        new_definitions: dict[str, str] = {}
        if custom:
            for key, value in custom.items():
                validate_key(key)
                type_ = new_definitions.get(key) or self.definitions.get(key) or infer_type(value)
                values[key] = coerce_value(type_, value, key)
                if key not in self.definitions:
                    new_definitions[key] = type_

        more = {CUSTOMER_FIELD_NAMES[name_]: value for name_, value in extra.items() if name_ != "id"}
        if ext_ids != [external_id]:
            more["external_ids"] = ext_ids
        if ds_uuids != [data_source_uuid]:
            more["data_source_uuids"] = ds_uuids

        if new_definitions:
            self.definitions.update(new_definitions)
        customer = StoredCustomer(
            len(self.order),
            customer_id,
            uuid,
            external_id,
            data_source_uuid,
            email=email or "",
            name=name or "",
            custom=values,
            tags=list(tags) if tags else None,
            more=more,
        )
        self._insert(customer)
        return customer

    def _insert(self, customer: StoredCustomer) -> None:
        """Store and index a checked customer whose position is the next one."""
        position = customer.position
        self.customers[customer.uuid] = customer
        self.order.append(customer)
        self.next_id = max(self.next_id, customer.id) + 1
        for ext in customer.external_ids:
            self.by_external_id.add(ext, position)
        for ds in customer.data_source_uuids:
            self.by_data_source.add(ds, position)
        if customer.email:
            lowered = customer.email.lower()
            # The same string object when the email is already lower case: a million emails once.
            self.by_email.add(customer.email if lowered == customer.email else lowered, position)

    def load_synthetic(self, count: int, start: int, custom_share: float) -> int:
        """Add synthetic customers ``start`` .. ``start + count - 1`` (synthetic.py) and define
        their keys; how many. Their values are valid by construction, so only duplicates are
        checked (ValueError: the customers before the duplicate stay), which makes a million
        load in seconds rather than the half minute of add_customer's checks."""
        for key, type_ in SYNTHETIC_DEFINITIONS.items():
            self.define(key, type_)
        ds = DEFAULT_DATA_SOURCE_UUID
        with bulk_load(range(count)):
            for index in range(start, start + count):
                uuid, external_id = synthetic_uuid(index), synthetic_external_id(index)
                if uuid in self.customers:
                    raise ValueError(f"a customer with uuid {uuid!r} already exists")
                for position in self.by_external_id.get(external_id):
                    if ds in self.order[position].data_source_uuids:
                        raise ValueError(f"external_id {external_id!r} already exists in data source {ds!r}")
                custom = synthetic_custom(index) if holds_custom(index, custom_share) else None
                self._insert(
                    StoredCustomer(
                        len(self.order), self.next_id, uuid, external_id, ds,
                        email=synthetic_email(index), custom=custom,
                    )
                )  # fmt: skip
        return count

    def load(self, customers: Iterable[Mapping[str, Any]]) -> list[str]:
        """Bulk add_customer without rendering anything (seed files, the admin API): the uuids.

        Not atomic: on an error the customers before the bad one stay.
        """
        uuids: list[str] = []
        with bulk_load(uuids):
            uuids.extend(self.add_customer(**dict(kwargs)).uuid for kwargs in customers)
        return uuids

    def by_email_exact(self, email: str) -> list[StoredCustomer]:
        """Every customer whose email equals ``email`` (case-insensitively), in insertion order."""
        return [self.order[position] for position in self.by_email.get(email.lower())]

    def page(
        self,
        *,
        start: int,
        per_page: int,
        external_id: str | None = None,
        data_source_uuid: str | None = None,
        email: str | None = None,
    ) -> Page:
        """One page of customers in insertion order from position ``start``, filtered.

        Cost is O(per_page) without filters and O(log n + scanned candidates) with them: the
        smallest index among the filters gives the candidates, the others are checked per
        candidate.
        """
        candidates, checks = self._candidates(external_id, data_source_uuid, email)
        found: list[StoredCustomer] = []
        has_more = False
        if candidates is None:
            found = self.order[start : start + per_page]
            has_more = start + per_page < len(self.order)
        else:
            for index in range(bisect_left(candidates, start), len(candidates)):
                customer = self.order[candidates[index]]
                if not all(self._matches(customer, name_, wanted) for name_, wanted in checks):
                    continue
                if len(found) == per_page:
                    has_more = True
                    break
                found.append(customer)
        next_position = found[-1].position + 1 if found else start
        return Page(found, encode_cursor(next_position) if has_more else None, has_more)

    def count(
        self, *, external_id: str | None = None, data_source_uuid: str | None = None, email: str | None = None
    ) -> int:
        """How many customers the filters match: O(1) with at most one filter, else the
        candidates of the smallest index are checked."""
        candidates, checks = self._candidates(external_id, data_source_uuid, email)
        if candidates is None:
            return len(self.order)
        if not checks:
            return len(candidates)
        return sum(
            1
            for position in candidates
            if all(self._matches(self.order[position], name_, wanted) for name_, wanted in checks)
        )

    def _candidates(
        self, external_id: str | None, data_source_uuid: str | None, email: str | None
    ) -> tuple[Sequence[int] | None, list[tuple[str, str]]]:
        """The positions of the smallest index among the filters (None: no filter), and the
        other filters to check per candidate."""
        filters: list[tuple[Sequence[int], str, str]] = []
        if external_id is not None:
            filters.append((self.by_external_id.get(external_id), "external_ids", external_id))
        if data_source_uuid is not None:
            filters.append((self.by_data_source.get(data_source_uuid), "data_source_uuids", data_source_uuid))
        if email is not None:
            filters.append((self.by_email.get(email.lower()), "email", email.lower()))
        if not filters:
            return None, []
        filters.sort(key=lambda item: len(item[0]))
        return filters[0][0], [(name_, wanted) for _, name_, wanted in filters[1:]]

    @staticmethod
    def _matches(customer: StoredCustomer, name: str, wanted: str) -> bool:
        if name == "email":
            return customer.email.lower() == wanted
        if name == "external_ids":
            return wanted in customer.external_ids
        return wanted in customer.data_source_uuids


@contextlib.contextmanager
def bulk_load(created: Sized) -> Iterator[None]:
    """Pause the cyclic GC during a bulk load, and freeze the heap after a large one.

    Loads allocate only acyclic containers, and generation-2 passes over a growing heap would
    triple the time of loading 100k customers. Afterwards each full collection would still walk
    every customer (about a second for 100k on a busy 2-core machine), stalling requests long
    enough to trip client timeouts; ``gc.freeze()`` takes the loaded objects out of future
    collections. The price, acceptable in a test process: cyclic garbage that already exists at
    that moment is never collected. ``created`` is what the load fills (or its size).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if len(created) >= _FREEZE_AFTER:
            gc.freeze()
