"""One stored customer of the test server: its fields, and the customer object the API shows."""

from __future__ import annotations

import os
import re
from typing import Any

DEFAULT_DATA_SOURCE_UUID = "ds_00000000-0000-0000-0000-000000000001"


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
    "owner": "owner",
    "id": "id",
}

#: The customer object as recorded over time, newest first: which of the fields that came and went
#: it shows. See docs/test-server.md, "The customer object".
CUSTOMER_SHAPES: dict[str, frozenset[str]] = {
    "2025": frozenset({"owner", "website_url"}),  # and no attributes.clearbit
    "2024": frozenset({"owner", "website_url", "clearbit"}),
    "2023": frozenset({"owner", "clearbit"}),
    "2020": frozenset({"clearbit"}),
}
NEWEST_SHAPE = "2025"
_CHANGING_FIELDS = ("owner", "website_url")


# Every customer object starts from these, in the order of the recorded answers; a customer
# stores only what differs.
_CUSTOMER_DEFAULTS: dict[str, Any] = {
    "id": 0,
    "uuid": "",
    "external_id": "",
    # Strings the official client's schema declares non-nullable are "" rather than null.
    "name": "",
    "email": "",
    "status": "Active",
    "customer-since": None,
    "attributes": None,
    "data_source_uuid": "",
    "data_source_uuids": [],
    "external_ids": [],
    "company": "",
    "country": None,
    "state": None,
    "city": None,
    "zip": None,
    "lead_created_at": None,
    "free_trial_started_at": None,
    "address": None,
    "mrr": 0,
    "arr": 0,
    "billing-system-url": None,
    "chartmogul-url": "",
    "billing-system-type": "Custom",
    "currency": "USD",
    "currency-sign": "$",
    "owner": None,
    "website_url": None,
}


def new_customer_uuid() -> str:
    """``cus_`` + a random (version 4) UUID; cheaper than ``uuid.uuid4()`` for bulk loads."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"cus_{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


class StoredCustomer:
    """One customer, stored compactly: a million of them must fit in one test process.

    The common fields are slots; ``more`` holds only what differs from a plain customer (other
    fields under their API names, ``external_ids`` / ``data_source_uuids`` when a merged customer
    has several, a given ``chartmogul-url``), or None.
    """

    __slots__ = (
        "custom",
        "data_source_uuid",
        "email",
        "external_id",
        "id",
        "more",
        "name",
        "position",
        "tags",
        "uuid",
    )

    def __init__(
        self,
        position: int,
        id_: int,
        uuid: str,
        external_id: str,
        data_source_uuid: str,
        *,
        email: str = "",
        name: str = "",
        custom: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        more: dict[str, Any] | None = None,
    ) -> None:
        self.position = position
        self.id = id_
        self.uuid = uuid
        self.external_id = external_id
        self.data_source_uuid = data_source_uuid
        self.email = email
        self.name = name
        self.custom: dict[str, Any] = {} if custom is None else custom
        self.tags = tags or None
        self.more = more or None

    @property
    def external_ids(self) -> list[str]:
        shown = self.more.get("external_ids") if self.more else None
        return list(shown) if shown is not None else [self.external_id]

    @property
    def data_source_uuids(self) -> list[str]:
        shown = self.more.get("data_source_uuids") if self.more else None
        return list(shown) if shown is not None else [self.data_source_uuid]

    def attributes(self, shape: str = NEWEST_SHAPE) -> dict[str, Any]:
        """The ``attributes`` object (a fresh copy) in the given shape (of CUSTOMER_SHAPES)."""
        tags = list(self.tags) if self.tags else []
        if "clearbit" in CUSTOMER_SHAPES[shape]:
            return {"tags": tags, "stripe": {}, "clearbit": {}, "custom": dict(self.custom)}
        return {"tags": tags, "stripe": {}, "custom": dict(self.custom)}

    def render(self, shape: str = NEWEST_SHAPE) -> dict[str, Any]:
        """The customer object as the API shows it (a fresh copy, safe to hand out) in the given
        shape (of CUSTOMER_SHAPES)."""
        slug = (re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_") if self.name else "") or "customer"
        shown = {
            **_CUSTOMER_DEFAULTS,
            "id": self.id,
            "uuid": self.uuid,
            "external_id": self.external_id,
            "data_source_uuid": self.data_source_uuid,
            "name": self.name,
            "email": self.email,
            "chartmogul-url": f"https://app.chartmogul.com/#/customers/{self.id}-{slug}",
        }
        if self.more:
            shown.update(self.more)
        shown["external_ids"] = self.external_ids
        shown["data_source_uuids"] = self.data_source_uuids
        shown["address"] = {
            "country": shown["country"],
            "state": shown["state"],
            "city": shown["city"],
            "address_zip": shown["zip"],
        }
        shown["attributes"] = self.attributes(shape)
        for name in _CHANGING_FIELDS:
            if name not in CUSTOMER_SHAPES[shape]:
                del shown[name]
        return shown
