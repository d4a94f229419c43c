"""Attribute values: which Python values each type accepts, and the JSON value sent for them
(rules in ``docs/attribute-rules.md``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from airflow_provider_chartmogul.attributes.attribute import canonical_type
from airflow_provider_chartmogul.attributes.text import surrogate_problem
from airflow_provider_chartmogul.attributes.timestamps import normalize_timestamp

MAX_STRING_LENGTH = 255
#: Our choice of range for Integer (signed 64-bit); ChartMogul documents none.
INTEGER_MIN = -(2**63)
INTEGER_MAX = 2**63 - 1
#: The Boolean spellings listed on the seed page, exactly.
BOOLEAN_TRUE: tuple[str, ...] = ("TRUE", "true", "t", "1")
BOOLEAN_FALSE: tuple[str, ...] = ("FALSE", "false", "f", "0")
#: A number as a Decimal attribute accepts it in a string (``8``, ``-8.5``, ``.5``, ``1e3``).
DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_BOOLEAN_SPELLINGS = ", ".join(BOOLEAN_TRUE + BOOLEAN_FALSE)
_UNDERFLOW = "is too close to zero for a floating point number (it would be sent as 0)"
_OVERFLOW = "must be finite (too large for a floating point number)"
_INTEGER_RANGE = f"must be between {INTEGER_MIN} and {INTEGER_MAX} (signed 64-bit)"


def normalize_value(type_: str, value: Any) -> str | int | float | bool:
    """Check ``value`` against the rules of ``type_`` and return the JSON value to send.

    ``type_`` may be any spelling :func:`canonical_type` accepts. ``None`` is never a value here
    (clears are handled by :func:`~airflow_provider_chartmogul.attributes.normalize_attribute`).

    :raises ValueError: whose text is the rule that was broken, for example
        ``is not a valid Integer: must be a whole number``.
    """
    return normalize_for_type(canonical_type(type_), value)


def normalize_for_type(type_: str, value: Any) -> str | int | float | bool:
    """:func:`normalize_value` for a ``type_`` already spelled as :func:`canonical_type` returns it."""
    if value is None:
        raise ValueError(f"is not a valid {type_}: a value is required (got None)")
    if isinstance(value, (dict, list, tuple, set, frozenset, Mapping)):
        raise ValueError(f"is not a valid {type_}: must be a single value, not a {type(value).__name__}")
    if isinstance(value, bool) and type_ in ("Integer", "Decimal"):
        raise ValueError(f"is not a valid {type_}: got a bool; use type Boolean")
    return _NORMALIZERS[type_](value)


def _is_finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _normalize_string(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(
            "is not a valid String: got a bool; use type Boolean, or give the text 'true'/'false'"
        )
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, (float, Decimal)) and not _is_finite(value):
            raise ValueError("is not a valid String: a number converted to String must be finite")
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"is not a valid String: must be a str, got {type(value).__name__}")
    if len(value) > MAX_STRING_LENGTH:
        raise ValueError(
            f"is not a valid String: must be at most {MAX_STRING_LENGTH} characters, got {len(value)}"
        )
    problem = surrogate_problem(value)
    if problem:
        raise ValueError(f"is not a valid String: {problem}")
    return value


def _normalize_integer(value: Any) -> int:
    rule = "is not a valid Integer: "
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER_RE.fullmatch(text):
            raise ValueError(rule + "must be a whole number written with digits 0-9 and an optional sign")
        # Longer than any 64-bit number: avoid int() on huge strings (and its digit limit).
        if len(text.lstrip("+-").lstrip("0")) > 19:
            raise ValueError(rule + _INTEGER_RANGE)
        number = int(text)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, (float, Decimal)):
        if not _is_finite(value):
            raise ValueError(rule + "must be a whole number, not NaN or infinity")
        if value != int(value):
            raise ValueError(rule + "must be a whole number")
        number = int(value)
    else:
        raise ValueError(rule + f"must be an int or a string of digits, got {type(value).__name__}")
    if not INTEGER_MIN <= number <= INTEGER_MAX:
        raise ValueError(rule + _INTEGER_RANGE)
    return number


def _normalize_decimal(value: Any) -> int | float:
    rule = "is not a valid Decimal: "
    if isinstance(value, str):
        text = value.strip()
        if not DECIMAL_RE.fullmatch(text):
            comma = DECIMAL_RE.fullmatch(text.replace(",", "."))
            hint = "; use '.' as the decimal separator" if comma else ""
            raise ValueError(rule + f"must be a number such as 8, -8.5 or 1e3{hint}")
        as_float = _as_float(text, rule)
        # int() only once the float check has bounded the number of digits.
        return int(text) if _INTEGER_RE.fullmatch(text) else as_float
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            raise ValueError(rule + _OVERFLOW) from None
        return value
    if isinstance(value, (float, Decimal)):
        if not _is_finite(value):
            raise ValueError(rule + "must be finite, not NaN or infinity")
        if isinstance(value, float):
            return value
        as_float = _as_float(value, rule)
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else as_float
    raise ValueError(rule + f"must be a number or a numeric string, got {type(value).__name__}")


def _as_float(number: str | Decimal, rule: str) -> float:
    """``number`` as the float sent, refused when a float cannot hold it (infinite, or 0 for non-zero)."""
    as_float = float(number)
    if not math.isfinite(as_float):
        raise ValueError(rule + _OVERFLOW)
    if as_float == 0.0 and Decimal(number) != 0:
        raise ValueError(rule + _UNDERFLOW)
    return as_float


def _normalize_boolean(value: Any) -> bool:
    rule = f"is not a valid Boolean: must be true/false, the int 1 or 0, or one of {_BOOLEAN_SPELLINGS}"
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value in (0, 1):  # NUMERIC(1) columns
        return value == 1
    if isinstance(value, int):
        if value in (0, 1):
            return value == 1
        raise ValueError(rule)
    if isinstance(value, str):
        if value in BOOLEAN_TRUE:
            return True
        if value in BOOLEAN_FALSE:
            return False
        raise ValueError(rule)
    raise ValueError(rule + f"; got {type(value).__name__}")


_NORMALIZERS: dict[str, Callable[[Any], str | int | float | bool]] = {
    "String": _normalize_string,
    "Integer": _normalize_integer,
    "Decimal": _normalize_decimal,
    "Timestamp": normalize_timestamp,
    "Boolean": _normalize_boolean,
}
