"""What the benchmark's processes share: customer identifiers and the records pushed.

The orchestrator (``run.py``) seeds the server with these customers and the measured child
processes (``_cases.py``) build the same records from the same functions, so the two never
have to pass large lists to each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

API_KEY = "sk_bench_3d1f6a0c9e7b4a52"
ATTRIBUTES_PER_CUSTOMER = 3
OTHER_CLIENT_AGENT = "benchmark-other-integration/1.0"  # the shared-account load
SYNC_CHANGED_EVERY = 20  # 5 % of the daily sync's records differ from the account


def customer_uuid(index: int) -> str:
    """A deterministic ChartMogul-style customer uuid (``cus_`` + a UUID) for customer ``index``."""
    return f"cus_00000000-0000-4000-8000-{index:012x}"


def external_id(index: int) -> str:
    """The external id (billing-system id) of customer ``index``."""
    return f"ext-{index:07d}"


def seed_custom(index: int) -> list[dict[str, Any]]:
    """Three custom attributes in the seed call's shape (``type``, ``key``, ``value``, ``source``?)."""
    return [
        {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
        {"type": "Integer", "key": "age", "value": 8 + index % 60},
        {"type": "Boolean", "key": "pro", "value": index % 2 == 0},
    ]


def records_by_uuid(count: int) -> list[dict[str, Any]]:
    """``count`` operator records identified by ``customer_uuid``."""
    return [{"customer_uuid": customer_uuid(i), "custom": seed_custom(i)} for i in range(count)]


def records_by_external_id(count: int) -> list[dict[str, Any]]:
    """``count`` operator records identified by ``external_id`` (resolved by the operator)."""
    return [{"external_id": external_id(i), "custom": seed_custom(i)} for i in range(count)]


def server_customers(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """``add_customer`` keyword objects for the server's admin endpoint or its ``--seed`` file."""
    return [
        {"uuid": customer_uuid(i), "external_id": external_id(i), "email": f"customer{i}@example.com"}
        for i in range(start, start + count)
    ]


def expected_custom(index: int) -> dict[str, Any]:
    """Customer ``index``'s custom attributes as the server shows them once the records are written."""
    return {entry["key"]: entry["value"] for entry in seed_custom(index)}


def is_changed(index: int, every: int = SYNC_CHANGED_EVERY) -> bool:
    """Whether the daily sync's record for customer ``index`` differs from the account's state."""
    return index % every == 0


def synced_customers(count: int) -> list[dict[str, Any]]:
    """The daily sync's account: every customer holds its record's values, but one in
    ``SYNC_CHANGED_EVERY`` an older ``age``."""
    customers = server_customers(count)
    for index, customer in enumerate(customers):
        custom = expected_custom(index)
        if is_changed(index):
            custom["age"] += 1000
        customer["custom"] = custom
    return customers


def source_fingerprint(package_dir: Path) -> str:
    """A short SHA-256 of every ``.py`` file under ``package_dir`` (names and contents).

    The work tree changes while people work in it: this names the code a figure was measured on.
    """
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
