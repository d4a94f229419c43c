"""The test server's run-time settings, and the checks ``configure()`` applies to a change."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_chartmogul.testing.server.customers import CUSTOMER_SHAPES, NEWEST_SHAPE
from airflow_provider_chartmogul.testing.server.faults import parse_faults

ROLES: tuple[str, ...] = ("read-write", "read-only")


@dataclass(frozen=True)
class Settings:
    """Run-time configuration; replaced as a whole by configure()."""

    api_keys: Mapping[str, str]
    latency: float = 0.0
    rate_limit: float | None = None
    rate_limit_retry_after: float | None = None
    max_parallel: int | None = None
    faults: Mapping[str, float] = field(default_factory=dict)
    fault_seed: int = 0
    slow_seconds: float = 5.0
    type_conflict: str = "error"
    delete_status: int = 204
    customer_shape: str = NEWEST_SHAPE
    record_requests: bool = True
    request_log_limit: int | None = 100_000
    request_log_body_bytes: int | None = 64 * 1024 * 1024
    trickle_seconds: float = 1.5

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_settings(current: Settings, changes: Mapping[str, Any]) -> Settings:
    """Return ``current`` with ``changes`` applied, or raise TypeError/ValueError."""
    allowed = {item.name for item in dataclasses.fields(Settings)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
    values = dict(changes)
    if "api_keys" in values:
        keys = dict(values["api_keys"] or {})
        for key, role in keys.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"API keys must be non-empty strings, got {key!r}")
            if role not in ROLES:
                raise ValueError(f"role of API key {key!r} must be one of {ROLES}, got {role!r}")
        values["api_keys"] = keys
    for name in ("latency", "slow_seconds", "trickle_seconds"):
        if name in values:
            values[name] = float(values[name])
            if values[name] < 0:
                raise ValueError(f"{name} must be >= 0")
    for name in ("rate_limit", "rate_limit_retry_after"):
        if values.get(name) is not None:
            values[name] = float(values[name])
            if values[name] < 0 or (name == "rate_limit" and values[name] == 0):
                raise ValueError(f"{name} must be positive")
    if values.get("max_parallel") is not None:
        values["max_parallel"] = int(values["max_parallel"])
        if values["max_parallel"] < 1:
            raise ValueError("max_parallel must be >= 1")
    if "faults" in values:
        values["faults"] = parse_faults(values["faults"])
    if "fault_seed" in values:
        values["fault_seed"] = int(values["fault_seed"])
    if "type_conflict" in values and values["type_conflict"] not in ("error", "overwrite"):
        raise ValueError("type_conflict must be 'error' or 'overwrite'")
    if "delete_status" in values:
        values["delete_status"] = int(values["delete_status"])
        if values["delete_status"] not in (200, 202, 204):
            raise ValueError("delete_status must be 200, 202 or 204")
    for name in ("request_log_limit", "request_log_body_bytes"):
        if values.get(name) is not None:
            if isinstance(values[name], bool) or not isinstance(values[name], int):
                raise TypeError(f"{name} must be an integer or None, got {values[name]!r}")
            if values[name] < (1 if name == "request_log_limit" else 0):
                raise ValueError(f"{name} must be >= {1 if name == 'request_log_limit' else 0}")
    if "customer_shape" in values and values["customer_shape"] not in CUSTOMER_SHAPES:
        raise ValueError(f"customer_shape must be one of {', '.join(CUSTOMER_SHAPES)}")
    if "record_requests" in values:
        values["record_requests"] = bool(values["record_requests"])
    return dataclasses.replace(current, **values)
