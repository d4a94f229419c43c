"""Synthetic customers for large load tests: deterministic identifiers and custom attributes.

Customer ``i`` (from 0) of a synthetic seed is made by the functions below, so a benchmark can
build its source rows from the same formulas without asking the server. docs/test-server.md
("Synthetic customers") states them.
"""

from __future__ import annotations

from typing import Any

#: The keys a synthetic customer holds, with their types (defined on the account by every seed).
SYNTHETIC_DEFINITIONS: dict[str, str] = {"channel": "String", "age": "Integer", "pro": "Boolean"}


def synthetic_uuid(index: int) -> str:
    return f"cus_00000000-0000-4000-8000-{index:012x}"


def synthetic_external_id(index: int) -> str:
    return f"ext-{index:07d}"


def synthetic_email(index: int) -> str:
    return f"customer{index}@example.com"


def synthetic_custom(index: int) -> dict[str, Any]:
    """The custom attributes customer ``index`` holds when it holds any."""
    return {"channel": "Facebook", "age": 8 + index % 60, "pro": index % 2 == 0}


def holds_custom(index: int, custom_share: float) -> bool:
    """Whether customer ``index`` holds :func:`synthetic_custom`: spread evenly, ``custom_share``
    of every run of customers (``int((i + 1) * share) > int(i * share)``)."""
    return int((index + 1) * custom_share) > int(index * custom_share)


def check_synthetic(count: Any, start: Any, custom_share: Any) -> tuple[int, int, float]:
    """The validated (count, start, custom_share); ValueError or TypeError otherwise."""
    for name, value in (("count", count), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if isinstance(custom_share, bool) or not isinstance(custom_share, (int, float)):
        raise TypeError(f"custom_share must be a number, got {custom_share!r}")
    if not 0.0 <= custom_share <= 1.0:
        raise ValueError(f"custom_share must be between 0 and 1, got {custom_share}")
    return count, start, float(custom_share)
