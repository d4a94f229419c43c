"""Attribute keys: a non-empty ``str`` of ASCII letters, digits and underscores, case kept."""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_KEY_RULE = "attribute key must be a non-empty string of letters A-Z/a-z, digits and underscores"


def is_valid_key(key: Any) -> bool:
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def validate_key(key: Any, *, customer: str | None = None, hint: str = "") -> str:
    """Check an attribute key: a non-empty ``str`` of ASCII letters, digits and underscores.

    :param customer: who the error is about: a customer label (``customer_uuid=cus_...``), or
        what the key came from (``SQL result``, ``attribute_types``).
    :param hint: appended to the rule, to say how to fix the key where it came from (``alias it
        in SQL``).
    :raises ChartMogulValidationError: naming ``customer``, the bad key (shortened, as the value)
        and the rule.
    """
    if isinstance(key, str) and _KEY_RE.fullmatch(key):
        return key
    if not isinstance(key, str):
        problem = f", got {type(key).__name__}"
    elif key == "":
        problem = "; got an empty string"
    else:
        problem = f"; found {next(ch for ch in key if not _KEY_RE.fullmatch(ch))!r}"
    rule = f"{_KEY_RULE}{problem}; {hint}" if hint else f"{_KEY_RULE}{problem}"
    raise ChartMogulValidationError(rule, customer=customer, value=key, has_value=True)
