"""In-memory state of one ChartMogul account for :mod:`airflow_provider_chartmogul.testing.server`.

This module holds the customers, the account-wide custom-attribute definitions, the secondary
indexes used by the listing filters, and the server's own reading of the seed page's type rules.
The rules are deliberately implemented here a second time, independently of the provider's
validation module: two readings of the same page catch more mistakes than one shared one.

Nothing here is thread-safe; :class:`~airflow_provider_chartmogul.testing.server.ChartMogulServer`
serialises every call under its lock. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ATTRIBUTE_TYPES: tuple[str, ...] = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
DEFAULT_DATA_SOURCE_UUID = "ds_00000000-0000-0000-0000-000000000001"
STRING_MAX_LENGTH = 255

_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE_STRINGS = frozenset({"TRUE", "true", "t", "1"})
_FALSE_STRINGS = frozenset({"FALSE", "false", "f", "0"})
_CURSOR_PREFIX = "cmts1:"

# add_customer(**fields) accepts these Python names; the value lands under the API name.
CUSTOMER_FIELD_NAMES: dict[str, str] = {
    "company": "company",
    "country": "country",
    "state": "state",
    "city": "city",
    "zip": "zip",
    "lead_created_at": "lead_created_at",
    "free_trial_started_at": "free_trial_started_at",
    "customer_since": "customer-since",
    "customer-since": "customer-since",
    "status": "status",
    "mrr": "mrr",
    "arr": "arr",
    "currency": "currency",
    "currency_sign": "currency-sign",
    "currency-sign": "currency-sign",
    "billing_system_url": "billing-system-url",
    "billing-system-url": "billing-system-url",
    "billing_system_type": "billing-system-type",
    "billing-system-type": "billing-system-type",
    "chartmogul_url": "chartmogul-url",
    "chartmogul-url": "chartmogul-url",
    "website_url": "website_url",
    "id": "id",
}


class AttributeValidationError(ValueError):
    """A custom attribute (or its key, type or value) breaks the seed page's rules.

    ``key`` names the attribute concerned (None when the entry has no usable key); the HTTP layer
    turns it into the ``param`` / ``error_details`` of the error body.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key


def validate_key(key: Any) -> str:
    """Return ``key`` if it is a non-empty string of ASCII letters, digits and underscores."""
    if not isinstance(key, str) or not key:
        raise AttributeValidationError("Custom attribute key is missing or not a string", None)
    if not _KEY_RE.fullmatch(key):
        raise AttributeValidationError(
            f"Custom attribute key {key!r} may only contain letters, digits and underscores", key
        )
    return key


def validate_type(type_: Any, key: str | None = None) -> str:
    """Return ``type_`` if it is one of the five type names (case-sensitive)."""
    if type_ not in ATTRIBUTE_TYPES:
        subject = f"of custom attribute {key!r} " if key else ""
        raise AttributeValidationError(
            f"Type {type_!r} {subject}is not supported; use one of {', '.join(ATTRIBUTE_TYPES)}",
            key,
        )
    return str(type_)


def format_timestamp(moment: datetime) -> str:
    """Format a datetime the way the API returns Timestamps: ``2016-01-31T00:00:00.000Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse ISO 8601 (date, date-time, ``Z`` or offset) or ``"2016-01-31 00:00:00 UTC"``.

    Naive values are taken as UTC. Raises ValueError.
    """
    candidate = text.strip()
    if candidate.endswith(" UTC"):
        candidate = candidate[: -len(" UTC")]
    if not candidate or not candidate[0].isdigit():
        raise ValueError(text)
    if candidate[-1] in "Zz":  # Python 3.10's fromisoformat knows only numeric offsets
        candidate = candidate[:-1] + "+00:00"
    moment = datetime.fromisoformat(candidate)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def coerce_value(type_: str, value: Any, key: str | None = None) -> Any:
    """Validate ``value`` against ``type_`` and return it in the form the API stores and returns.

    String -> str (<= 255 characters); Integer -> int (JSON integer or a string of digits with an
    optional sign; booleans and floats are refused); Decimal -> float (JSON number or numeric
    string, finite); Timestamp -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC; Boolean -> bool (JSON
    true/false, 1/0, or one of ``TRUE true t 1 FALSE false f 0``). ``null`` is refused for every
    type.
    """
    label = f"custom attribute {key!r}" if key else "custom attribute"
    if value is None:
        raise AttributeValidationError(f"Value of {label} can't be null", key)
    if type_ == "String":
        if not isinstance(value, str):
            raise AttributeValidationError(f"Value of {label} must be a String, got {value!r}", key)
        if len(value) > STRING_MAX_LENGTH:
            raise AttributeValidationError(
                f"Value of {label} is too long ({len(value)} characters; the maximum is {STRING_MAX_LENGTH})",
                key,
            )
        return value
    if type_ == "Integer":
        if isinstance(value, bool):
            raise AttributeValidationError(f"Value of {label} must be an Integer, got {value!r}", key)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INTEGER_RE.fullmatch(value):
            return int(value)
        raise AttributeValidationError(f"Value of {label} must be an Integer, got {value!r}", key)
    if type_ == "Decimal":
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        is_numeric_text = isinstance(value, str) and _DECIMAL_RE.fullmatch(value) is not None
        number = float(value) if is_number or is_numeric_text else None
        if number is None or not math.isfinite(number):
            raise AttributeValidationError(f"Value of {label} must be a Decimal, got {value!r}", key)
        return number
    if type_ == "Timestamp":
        if isinstance(value, datetime):
            return format_timestamp(value)
        if isinstance(value, str):
            try:
                return format_timestamp(parse_timestamp(value))
            except ValueError:
                pass
        raise AttributeValidationError(f"Value of {label} must be an ISO 8601 Timestamp, got {value!r}", key)
    if type_ == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return value == 1
        if isinstance(value, str):
            if value in _TRUE_STRINGS:
                return True
            if value in _FALSE_STRINGS:
                return False
        raise AttributeValidationError(
            f"Value of {label} must be a Boolean (TRUE true t 1 FALSE false f 0), got {value!r}", key
        )
    raise AttributeValidationError(f"Custom attribute type {type_!r} is not supported", key)


def infer_type(value: Any) -> str:
    """The type add_customer(custom=...) gives an undefined key: bool, int, float, datetime, str."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    if isinstance(value, datetime):
        return "Timestamp"
    if isinstance(value, str):
        return "String"
    raise AttributeValidationError(f"Cannot infer a custom attribute type for {value!r}", None)


def encode_cursor(position: int) -> str:
    """Opaque cursor: the position in insertion order where the next page starts."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


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


# Every customer object starts from these; a customer stores only what differs.
_CUSTOMER_DEFAULTS: dict[str, Any] = {
    "id": 0,
    "uuid": "",
    "external_id": "",
    "external_ids": [],
    "data_source_uuid": "",
    "data_source_uuids": [],
    # Strings the official client's schema declares non-nullable are "" rather than null.
    "name": "",
    "email": "",
    "company": "",
    "country": None,
    "state": None,
    "city": None,
    "zip": None,
    "lead_created_at": None,
    "free_trial_started_at": None,
    "customer-since": None,
    "status": "Active",
    "mrr": 0,
    "arr": 0,
    "currency": "USD",
    "currency-sign": "$",
    "billing-system-url": None,
    "chartmogul-url": "",
    "billing-system-type": "Custom",
    "website_url": None,
}


def new_customer_uuid() -> str:
    """``cus_`` + a random (version 4) UUID; cheaper than ``uuid.uuid4()`` for bulk loads."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"cus_{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


@dataclass(eq=False)
class StoredCustomer:
    """One customer: its position in insertion order, its own fields and the custom map."""

    position: int
    fields: dict[str, Any]
    custom: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return str(self.fields["uuid"])

    def attributes(self) -> dict[str, Any]:
        """The ``attributes`` object (a fresh copy)."""
        return {"tags": list(self.tags), "stripe": {}, "clearbit": {}, "custom": dict(self.custom)}

    def render(self) -> dict[str, Any]:
        """The customer object as the API shows it (a fresh copy, safe to hand out)."""
        shown = {**_CUSTOMER_DEFAULTS, **self.fields}
        shown["external_ids"] = list(shown["external_ids"])
        shown["data_source_uuids"] = list(shown["data_source_uuids"])
        shown["address"] = {
            "address_zip": shown["zip"],
            "city": shown["city"],
            "state": shown["state"],
            "country": shown["country"],
        }
        shown["attributes"] = {
            "tags": list(self.tags),
            "stripe": {},
            "clearbit": {},
            "custom": dict(self.custom),
        }
        return shown


@dataclass
class Page:
    """One page of a listing: the customers, the next cursor and whether more follow."""

    customers: list[StoredCustomer]
    cursor: str
    has_more: bool


class AccountStore:
    """Customers and attribute definitions of one account, with lookup indexes."""

    def __init__(self) -> None:
        self.customers: dict[str, StoredCustomer] = {}
        self.order: list[StoredCustomer] = []
        self.definitions: dict[str, str] = {}
        # Secondary indexes: value -> ascending positions in self.order. Customers are never
        # removed (only reset() empties the store), so positions are stable and cursors too.
        self.by_external_id: dict[str, list[int]] = {}
        self.by_data_source: dict[str, list[int]] = {}
        self.by_email: dict[str, list[int]] = {}
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
        for position in self.by_external_id.get(external_id, ()):
            if data_source_uuid in self.order[position].fields["data_source_uuids"]:
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

        slug = (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") if name else "") or "customer"
        fields: dict[str, Any] = {
            "id": customer_id,
            "uuid": uuid,
            "external_id": external_id,
            "external_ids": ext_ids,
            "data_source_uuid": data_source_uuid,
            "data_source_uuids": ds_uuids,
            "name": name or "",
            "email": email or "",
            "chartmogul-url": f"https://app.chartmogul.com/#/customers/{customer_id}-{slug}",
        }
        for name_, value in extra.items():
            fields[CUSTOMER_FIELD_NAMES[name_]] = value

        if new_definitions:
            self.definitions.update(new_definitions)
        position = len(self.order)
        customer = StoredCustomer(position, fields, values, list(tags) if tags else [])
        self.customers[uuid] = customer
        self.order.append(customer)
        self.next_id = max(self.next_id, customer_id) + 1
        for ext in ext_ids:
            self.by_external_id.setdefault(ext, []).append(position)
        for ds in ds_uuids:
            self.by_data_source.setdefault(ds, []).append(position)
        if email:
            self.by_email.setdefault(email.lower(), []).append(position)
        return customer

    def by_email_exact(self, email: str) -> list[StoredCustomer]:
        """Every customer whose email equals ``email`` (case-insensitively), in insertion order."""
        return [self.order[position] for position in self.by_email.get(email.lower(), [])]

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
        filters: list[tuple[list[int], str, str]] = []
        if external_id is not None:
            filters.append((self.by_external_id.get(external_id, []), "external_ids", external_id))
        if data_source_uuid is not None:
            filters.append(
                (self.by_data_source.get(data_source_uuid, []), "data_source_uuids", data_source_uuid)
            )
        if email is not None:
            filters.append((self.by_email.get(email.lower(), []), "email", email.lower()))

        found: list[StoredCustomer] = []
        has_more = False
        if not filters:
            found = self.order[start : start + per_page]
            has_more = start + per_page < len(self.order)
        else:
            filters.sort(key=lambda item: len(item[0]))
            candidates = filters[0][0]
            checks = filters[1:]
            for position in candidates[bisect_left(candidates, start) :]:
                customer = self.order[position]
                if not all(self._matches(customer, name_, wanted) for _, name_, wanted in checks):
                    continue
                if len(found) == per_page:
                    has_more = True
                    break
                found.append(customer)
        next_position = found[-1].position + 1 if found else start
        return Page(found, encode_cursor(next_position), has_more)

    @staticmethod
    def _matches(customer: StoredCustomer, name: str, wanted: str) -> bool:
        if name == "email":
            return str(customer.fields["email"]).lower() == wanted
        return wanted in customer.fields[name]
