"""Comparing our values with what ChartMogul holds (sync mode), and guessing a stored value's type."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_chartmogul.attributes.attribute import canonical_type, infer_type
from airflow_provider_chartmogul.attributes.timestamps import as_instant, looks_stored
from airflow_provider_chartmogul.attributes.values import (
    BOOLEAN_FALSE,
    BOOLEAN_TRUE,
    DECIMAL_RE,
    normalize_value,
)

# What the API may hand back for a Boolean, case ignored.
_TRUE_FOLDED = frozenset(spelling.casefold() for spelling in BOOLEAN_TRUE)
_FALSE_FOLDED = frozenset(spelling.casefold() for spelling in BOOLEAN_FALSE)


def _as_number(value: Any) -> Decimal | None:
    """A Decimal for a JSON number or a numeric string, or None (bools are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if isinstance(value, str) and DECIMAL_RE.fullmatch(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        text = value.strip().casefold()
        if text in _TRUE_FOLDED:
            return True
        if text in _FALSE_FOLDED:
            return False
    return None


def values_equal(type_: str, ours: Any, theirs: Any) -> bool:
    """Whether ``ours`` (our value) and ``theirs`` (what ChartMogul returned) are the same ``type_`` value.

    ========= ==========================================================================
    Integer   equal as numbers: ``8 == "8" == 8.0``; a bool is never a number
    Decimal   equal as numbers, tolerating float representation (relative 1e-9)
    Boolean   ``true == "true" == "TRUE" == "t" == 1`` (and the false spellings; case ignored)
    Timestamp equal as instants; no zone means UTC, a date is midnight UTC:
              ``"2016-01-31T00:00:00.000Z" == "2016-01-31 00:00:00 UTC"``
    String    exact; both must be str (a non-str on our side is first converted as for String)
    ========= ==========================================================================

    ``None`` equals only ``None`` (absent). A value that cannot be read as ``type_`` is unequal.

    :raises ValueError: if ``type_`` is not a type name.
    """
    type_ = canonical_type(type_)
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if type_ == "String":
        if not isinstance(ours, str):
            try:
                ours = normalize_value("String", ours)
            except ValueError:
                return False
        return isinstance(theirs, str) and ours == theirs
    if type_ in ("Integer", "Decimal"):
        a, b = _as_number(ours), _as_number(theirs)
        if a is None or b is None:
            return False
        if a == b:
            return True
        if type_ == "Integer":
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if type_ == "Boolean":
        x, y = _as_bool(ours), _as_bool(theirs)
        return x is not None and x == y
    t1, t2 = as_instant(ours), as_instant(theirs)
    return t1 is not None and t2 is not None and t1 == t2


def type_of_stored_value(value: Any) -> str | None:
    """Best guess of the ChartMogul type of a value as the API returns it (decoded JSON).

    ``bool`` -> Boolean, ``int`` -> Integer, ``float`` -> Decimal, a ``str`` holding a date
    *with a time* (``2016-01-31T00:00:00.000Z``, ``2022-09-08 00:00:00``, with or without a
    zone) -> Timestamp, any other ``str`` (a date alone included) -> String, ``None`` or
    anything else -> ``None``.
    """
    if isinstance(value, str):
        return "Timestamp" if looks_stored(value) else "String"
    # JSON's other scalars are typed as a database value of the same Python type would be.
    if isinstance(value, bool | int | float):
        return infer_type(value)
    return None
