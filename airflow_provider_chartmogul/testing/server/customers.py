"""One stored customer of the test server: its fields, and the customer object the API shows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    "id": "id",
}


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
        shown["attributes"] = self.attributes()
        return shown
