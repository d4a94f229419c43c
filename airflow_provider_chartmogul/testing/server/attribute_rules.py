"""The test server's own reading of ChartMogul's custom-attribute rules: keys, types and values.

Apart from the provider's on purpose; see "Two readings of the type rules" in docs/test-server.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

ATTRIBUTE_TYPES: tuple[str, ...] = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
STRING_MAX_LENGTH = 255

_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# The seed page's Boolean spellings, exactly (case-sensitive: "True" is refused).
_BOOLEAN_STRINGS: dict[str, bool] = {
    "TRUE": True,
    "true": True,
    "t": True,
    "1": True,
    "FALSE": False,
    "false": False,
    "f": False,
    "0": False,
}
# The type add_customer(custom=...) gives an undefined key, by Python type; the first match wins,
# so bool comes before int (bool is an int).
_INFERRED_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "Boolean"),
    (int, "Integer"),
    (float, "Decimal"),
    (datetime, "Timestamp"),
    (str, "String"),
)


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


# Each coercer takes (value, key, label) and returns the stored value or raises.
def _string(value: Any, key: str | None, label: str) -> str:
    if not isinstance(value, str):
        raise AttributeValidationError(f"Value of {label} must be a String, got {value!r}", key)
    if len(value) > STRING_MAX_LENGTH:
        raise AttributeValidationError(
            f"Value of {label} is too long ({len(value)} characters; the maximum is {STRING_MAX_LENGTH})",
            key,
        )
    return value


def _integer(value: Any, key: str | None, label: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER_RE.fullmatch(value):
        return int(value)
    raise AttributeValidationError(f"Value of {label} must be an Integer, got {value!r}", key)


def _decimal(value: Any, key: str | None, label: str) -> float:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    is_numeric_text = isinstance(value, str) and _DECIMAL_RE.fullmatch(value) is not None
    number = float(value) if is_number or is_numeric_text else None
    if number is None or not math.isfinite(number):
        raise AttributeValidationError(f"Value of {label} must be a Decimal, got {value!r}", key)
    return number


def _timestamp(value: Any, key: str | None, label: str) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, str):
        try:
            return format_timestamp(parse_timestamp(value))
        except ValueError:
            pass
    raise AttributeValidationError(f"Value of {label} must be an ISO 8601 Timestamp, got {value!r}", key)


def _boolean(value: Any, key: str | None, label: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value in _BOOLEAN_STRINGS:
        return _BOOLEAN_STRINGS[value]
    raise AttributeValidationError(
        f"Value of {label} must be a Boolean (TRUE true t 1 FALSE false f 0), got {value!r}", key
    )


_COERCERS: dict[str, Callable[[Any, str | None, str], Any]] = {
    "String": _string,
    "Integer": _integer,
    "Decimal": _decimal,
    "Timestamp": _timestamp,
    "Boolean": _boolean,
}


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
    coerce = _COERCERS.get(type_)
    if coerce is None:
        raise AttributeValidationError(f"Custom attribute type {type_!r} is not supported", key)
    return coerce(value, key, label)


def infer_type(value: Any) -> str:
    """The type add_customer(custom=...) gives an undefined key: bool, int, float, datetime, str."""
    for python_type, type_ in _INFERRED_TYPES:
        if isinstance(value, python_type):
            return type_
    raise AttributeValidationError(f"Cannot infer a custom attribute type for {value!r}", None)
