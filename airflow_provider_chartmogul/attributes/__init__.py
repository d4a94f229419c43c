"""ChartMogul custom attributes: the one place that knows the type rules.

The seed call, ``POST /v1/customers/{uuid}/attributes/custom``, takes a list of attributes such as
``{"type": "String", "key": "channel", "value": "Facebook", "source": "integration"}``. This module
checks such attributes, turns the values into the JSON values sent, and compares values the way
a sync needs to. It does no I/O.

Rules (the seed page, plus our own choices where ChartMogul documents nothing):

=============  ===========================================================  =====================
type           accepted Python values                                       sent as (JSON)
=============  ===========================================================  =====================
``String``     ``str`` of at most 255 characters (code points, not bytes;    the string unchanged
               ``""`` allowed; no lone surrogates). Also ``int``, ``float``, ``Decimal``
               (finite, not ``bool``), converted with ``str()``: SQL
               numbers are often mapped to String attributes.
``Integer``    ``int`` (not ``bool``); a ``str`` of ASCII digits with an     integer
               optional sign (surrounding whitespace ignored; no ``.``,
               exponent or ``_``); an integral ``float``/``Decimal``
               (``8.0`` -> ``8``). Range -2**63 .. 2**63-1 (signed
               64-bit: our choice, ChartMogul documents none).
``Decimal``    ``int``, ``float``, ``Decimal`` (not ``bool``), or a          see below
               numeric ``str`` (``8``, ``-8.5``, ``.5``, ``1e3``;
               surrounding whitespace ignored). Finite, also once
               converted to a float (``Decimal('1e400')`` is rejected),
               and not a non-zero value a float rounds to 0 (``1e-400``).
``Timestamp``  ISO 8601 date or date-time ``str``, ``"2016-01-31 00:00:00   see below
               UTC"``, ``datetime``/``date`` (pendulum included).
``Boolean``    ``bool``; exactly one of the seed's spellings ``TRUE true     ``true``/``false``
               t 1 FALSE false f 0`` as ``str`` (exactly: ``"TRUE "`` is
               rejected); the ``int`` 1 or 0.
=============  ===========================================================  =====================

Decimal values keep the shape they were given, so ``8`` and ``8.0`` both mean eight to
ChartMogul but neither is rewritten: an ``int`` or an integer string (``"8"``) is sent as a JSON
integer ``8``; a ``float`` or a fractional/exponent string as a JSON float (``8.0``, ``8.5``,
``1000.0``); a ``Decimal`` as an integer when written without a fraction (``Decimal('8')`` ->
``8``), else as a float (``Decimal('8.00')`` -> ``8.0``; precision beyond a float's is lost).

Timestamps:

* A string in the common extended form ``YYYY-MM-DD``, optionally followed by ``T`` or a space,
  ``hh:mm[:ss[.fff]]`` and a zone (``Z``, ``+02:00``, ``+0200`` or `` UTC``), is sent **unchanged**
  (only surrounding whitespace is removed), to be faithful to the user. Without a zone it is
  compared as UTC (ChartMogul's reading of it is not documented).
* Other ISO 8601 forms that name a day (basic ``20220908T101010Z``, week ``2022-W01-1``, ordinal
  ``2022-001``, a comma fraction, an hour-only offset ``+02``) are accepted and sent normalised to
  the extended form with an offset (``2022-01-03T00:00:00+00:00``), because ChartMogul is not
  documented to read them.
* An aware ``datetime`` is sent as ISO 8601 with its own offset; a naive ``datetime`` is taken to
  be UTC and sent with ``+00:00``; a ``date`` is midnight UTC.
* Rejected: a year or year-month alone (not a point in time), durations (``P1D``), intervals
  (``a/b``), times without a date (``12:00``), digits-only strings other than ``YYYYMMDD``
  (epoch seconds such as ``1662595200``), numbers, words (``now``, ``yesterday``) and invalid
  dates (``2022-13-45``).

Other rules:

================  ==============================================================================
field             rule
================  ==============================================================================
``type``          one of :data:`ATTRIBUTE_TYPES`. Matched case-insensitively and normalised to
                  the documented spelling (``integer`` -> ``Integer``); near misses such as
                  ``Float`` or ``Int`` get a "did you mean" hint but are rejected.
``key``           a non-empty ``str`` of ASCII letters, digits and underscores; case is kept
                  (``CAC``, ``utmCampaign``). No maximum length (ChartMogul documents none).
``value``         a single value (never a ``dict``/``list``); ``None`` only with ``allow_clear``,
                  where it means "remove this attribute".
``source``        optional; when given a ``str`` that is not empty or blank. ``None`` means "not
                  given" (then ``default_source`` applies). No maximum length (none documented).
other fields      rejected by name (a typo such as ``vaule`` is not silently dropped).
one list          an empty list is valid and means "nothing to send"; the same key twice in one
                  list is rejected (keys compare case-sensitively, as ChartMogul keeps case).
================  ==============================================================================
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pendulum

from airflow_provider_chartmogul.attributes.text import surrogate_problem
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError, shorten

__all__ = [
    "ATTRIBUTE_FIELDS",
    "ATTRIBUTE_TYPES",
    "BOOLEAN_FALSE",
    "BOOLEAN_TRUE",
    "INTEGER_MAX",
    "INTEGER_MIN",
    "MAX_STRING_LENGTH",
    "CustomAttribute",
    "canonical_type",
    "infer_type",
    "normalize_attribute",
    "normalize_custom",
    "normalize_value",
    "type_of_stored_value",
    "validate_customer_uuid",
    "validate_key",
    "values_equal",
]

ATTRIBUTE_TYPES: tuple[str, ...] = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
MAX_STRING_LENGTH = 255
#: Our choice of range for Integer (signed 64-bit); ChartMogul documents none.
INTEGER_MIN = -(2**63)
INTEGER_MAX = 2**63 - 1
#: The Boolean spellings listed on the seed page, exactly.
BOOLEAN_TRUE: tuple[str, ...] = ("TRUE", "true", "t", "1")
BOOLEAN_FALSE: tuple[str, ...] = ("FALSE", "false", "f", "0")
#: Fields of one attribute in the seed's request body, in the seed's order.
ATTRIBUTE_FIELDS: tuple[str, ...] = ("type", "key", "value", "source")

_TYPES_BY_FOLDED = {name.casefold(): name for name in ATTRIBUTE_TYPES}
# Names people reach for that are not ChartMogul types: only used for "did you mean" hints.
_TYPE_HINTS = {
    "float": "Decimal",
    "double": "Decimal",
    "number": "Decimal",
    "numeric": "Decimal",
    "real": "Decimal",
    "int": "Integer",
    "bigint": "Integer",
    "long": "Integer",
    "bool": "Boolean",
    "str": "String",
    "text": "String",
    "varchar": "String",
    "date": "Timestamp",
    "datetime": "Timestamp",
    "time": "Timestamp",
}
_BOOLEAN_SPELLINGS = ", ".join(BOOLEAN_TRUE + BOOLEAN_FALSE)
_UNDERFLOW = "is too close to zero for a floating point number (it would be sent as 0)"

_KEY_RE = re.compile(r"[A-Za-z0-9_]+")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNSAFE_PATH_CHARS = frozenset("/\\?#%")
# Extended calendar date, optional time, optional zone: sent unchanged.
_COMMON_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2}| UTC)?)?"
)
# A date with a time: what the API hands back for Timestamp attributes ("...T00:00:00.000Z",
# "2022-09-08 00:00:00" in the seed's answer).
_STORED_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2}| UTC)?"
)


@dataclass(frozen=True, slots=True)
class CustomAttribute:
    """One checked attribute, ready to send.

    :param type: one of :data:`ATTRIBUTE_TYPES`, in its documented spelling.
    :param key: the attribute key.
    :param value: the normalised JSON value; ``None`` only for a clear (``allow_clear``), meaning
        "remove this attribute".
    :param source: optional label shown in ChartMogul's UI (ChartMogul defaults it to ``"API"``).
    """

    type: str
    key: str
    value: str | int | float | bool | None
    source: str | None = None
    # Set only by normalize_attribute: checking such an attribute again can be skipped.
    _checked: bool = field(default=False, repr=False, compare=False)

    def as_payload(self) -> dict[str, Any]:
        """The seed's element: ``type``, ``key``, ``value`` and ``source`` (only when set), in that order."""
        payload: dict[str, Any] = {"type": self.type, "key": self.key, "value": self.value}
        if self.source is not None:
            payload["source"] = self.source
        return payload


def _type_name(value: Any) -> str:
    return type(value).__name__


def canonical_type(type_: Any) -> str:
    """The documented spelling of a type name, matched case-insensitively.

    :raises ValueError: with a rule text naming the allowed types and, for near misses such as
        ``Float``, a "did you mean" hint.
    """
    allowed = ", ".join(ATTRIBUTE_TYPES)
    if not isinstance(type_, str):
        raise ValueError(f"type must be one of {allowed}, got {_type_name(type_)} {shorten(type_)}")
    found = _TYPES_BY_FOLDED.get(type_.casefold())
    if found is not None:
        return found
    folded = type_.strip().casefold()
    hint = _TYPES_BY_FOLDED.get(folded) or _TYPE_HINTS.get(folded)
    if hint is None:
        close = difflib.get_close_matches(folded, list(_TYPES_BY_FOLDED), n=1)
        hint = _TYPES_BY_FOLDED[close[0]] if close else None
    suffix = f"; did you mean {hint!r}?" if hint else ""
    raise ValueError(f"type {shorten(type_)} is not one of {allowed}{suffix}")


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def normalize_value(type_: str, value: Any) -> str | int | float | bool:
    """Check ``value`` against the rules of ``type_`` and return the JSON value to send.

    ``type_`` may be any spelling :func:`canonical_type` accepts. ``None`` is never a value here
    (clears are handled by :func:`normalize_attribute`).

    :raises ValueError: whose text is the rule that was broken, for example
        ``is not a valid Integer: must be a whole number``.
    """
    type_ = canonical_type(type_)
    if value is None:
        raise ValueError(f"is not a valid {type_}: a value is required (got None)")
    if isinstance(value, (dict, list, tuple, set, frozenset, Mapping)):
        raise ValueError(f"is not a valid {type_}: must be a single value, not a {_type_name(value)}")
    if type_ == "String":
        return _normalize_string(value)
    if type_ == "Integer":
        return _normalize_integer(value)
    if type_ == "Decimal":
        return _normalize_decimal(value)
    if type_ == "Timestamp":
        return _normalize_timestamp(value)
    return _normalize_boolean(value)


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
        raise ValueError(f"is not a valid String: must be a str, got {_type_name(value)}")
    if len(value) > MAX_STRING_LENGTH:
        raise ValueError(
            f"is not a valid String: must be at most {MAX_STRING_LENGTH} characters, got {len(value)}"
        )
    problem = surrogate_problem(value)
    if problem:
        raise ValueError(f"is not a valid String: {problem}")
    return value


def _is_finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _normalize_integer(value: Any) -> int:
    rule = "is not a valid Integer: "
    if isinstance(value, bool):
        raise ValueError(rule + "got a bool; use type Boolean")
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER_RE.fullmatch(text):
            raise ValueError(rule + "must be a whole number written with digits 0-9 and an optional sign")
        # Longer than any 64-bit number: avoid int() on huge strings (and its digit limit).
        if len(text.lstrip("+-").lstrip("0")) > 19:
            raise ValueError(rule + f"must be between {INTEGER_MIN} and {INTEGER_MAX} (signed 64-bit)")
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
        raise ValueError(rule + f"must be an int or a string of digits, got {_type_name(value)}")
    if not INTEGER_MIN <= number <= INTEGER_MAX:
        raise ValueError(rule + f"must be between {INTEGER_MIN} and {INTEGER_MAX} (signed 64-bit)")
    return number


def _normalize_decimal(value: Any) -> int | float:
    rule = "is not a valid Decimal: "
    if isinstance(value, bool):
        raise ValueError(rule + "got a bool; use type Boolean")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_RE.fullmatch(text):
            hint = (
                "; use '.' as the decimal separator" if _DECIMAL_RE.fullmatch(text.replace(",", ".")) else ""
            )
            raise ValueError(rule + f"must be a number such as 8, -8.5 or 1e3{hint}")
        as_float = float(text)
        if not math.isfinite(as_float):
            raise ValueError(rule + "must be finite (too large for a floating point number)")
        if _INTEGER_RE.fullmatch(text):
            return int(text)
        if as_float == 0.0 and Decimal(text) != 0:
            raise ValueError(rule + _UNDERFLOW)
        return as_float
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            raise ValueError(rule + "must be finite (too large for a floating point number)") from None
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(rule + "must be finite, not NaN or infinity")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(rule + "must be finite, not NaN or infinity")
        as_float = float(value)
        if not math.isfinite(as_float):
            raise ValueError(rule + "must be finite (too large for a floating point number)")
        if as_float == 0.0 and value != 0:
            raise ValueError(rule + _UNDERFLOW)
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(value)
        return as_float
    raise ValueError(rule + f"must be a number or a numeric string, got {_type_name(value)}")


def _normalize_boolean(value: Any) -> bool:
    rule = f"is not a valid Boolean: must be true/false, the int 1 or 0, or one of {_BOOLEAN_SPELLINGS}"
    if isinstance(value, bool):
        return value
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
    raise ValueError(rule + f"; got {_type_name(value)}")


# --- timestamps -------------------------------------------------------------------------------


def _datetime_to_iso(value: dt.datetime | dt.date) -> str:
    """ISO 8601 with an offset; naive datetimes are UTC, dates are midnight UTC."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    elif value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    # Plain datetime keeps pendulum out of the output format.
    plain = dt.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=dt.timezone(value.utcoffset() or dt.timedelta(0)),
    )
    return plain.isoformat()


def _parse_timestamp_string(text: str) -> dt.datetime:
    """Parse a Timestamp string into an aware datetime (no zone: UTC; a date: midnight UTC).

    :raises ValueError: with the rule broken.
    """
    rule = "is not a valid Timestamp: "
    example = "expected ISO 8601 such as 2016-01-31 or 2016-01-31T00:00:00Z"
    if "/" in text:
        raise ValueError(rule + f"an interval is not a single point in time; {example}")
    if text.startswith(("P", "p", "-P", "+P")):
        raise ValueError(rule + f"a duration is not a point in time; {example}")
    if re.fullmatch(r"[0-9]{1,2}:[0-9]{2}.*|T[0-9].*", text):
        raise ValueError(rule + f"a time needs a date; {example}")
    if re.fullmatch(r"[0-9]{4}(?:-[0-9]{2})?", text):
        raise ValueError(rule + f"a year or year-month alone is not a point in time; {example}")
    if re.fullmatch(r"[+-]?[0-9]+(?:\.[0-9]*)?", text) and not re.fullmatch(r"[0-9]{8}", text):
        raise ValueError(rule + f"numbers (epoch seconds) are not accepted; {example}")
    # Keeps pendulum's special words ("now") and everything else that is not a date out.
    if not re.match(r"[0-9]{4}", text):
        raise ValueError(rule + example)
    utc_suffix = text.endswith(" UTC")
    to_parse = text[:-4] if utc_suffix else text
    if utc_suffix and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]+", to_parse):
        raise ValueError(rule + f"' UTC' may only follow a date and time without an offset; {example}")
    try:
        parsed = pendulum.parse(to_parse, exact=True, strict=True)
    except Exception:
        raise ValueError(rule + f"not a valid date or time; {example}") from None
    if isinstance(parsed, dt.datetime):
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed
    if isinstance(parsed, dt.date):
        return dt.datetime(parsed.year, parsed.month, parsed.day, tzinfo=dt.timezone.utc)
    raise ValueError(rule + f"names no single day ({_type_name(parsed)}); {example}")


def _normalize_timestamp(value: Any) -> str:
    rule = "is not a valid Timestamp: "
    if isinstance(value, dt.datetime | dt.date):
        return _datetime_to_iso(value)
    if isinstance(value, dt.time):
        raise ValueError(rule + "a time needs a date")
    if isinstance(value, dt.timedelta):
        raise ValueError(rule + "a duration is not a point in time")
    if isinstance(value, (bool, int, float, Decimal)):
        raise ValueError(
            rule + "numbers (epoch seconds) are not accepted; give an ISO 8601 string or a datetime"
        )
    if not isinstance(value, str):
        raise ValueError(rule + f"must be an ISO 8601 string, a datetime or a date, got {_type_name(value)}")
    text = value.strip()
    parsed = _parse_timestamp_string(text)
    if _COMMON_TIMESTAMP_RE.fullmatch(text):
        return text
    return _datetime_to_iso(parsed)


def _as_instant(value: Any) -> dt.datetime | None:
    """An aware datetime for a Timestamp value in any accepted form, or None."""
    if isinstance(value, dt.datetime | dt.date):
        if not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value
    if isinstance(value, str):
        try:
            return _parse_timestamp_string(value.strip())
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Keys, identifiers, inference
# ---------------------------------------------------------------------------------------------


def validate_key(key: Any) -> str:
    """Check an attribute key: a non-empty ``str`` of ASCII letters, digits and underscores.

    :raises ChartMogulValidationError: naming the bad key (shortened) and the rule.
    """
    rule = "attribute key must be a non-empty string of letters A-Z/a-z, digits and underscores"
    if not isinstance(key, str):
        raise ChartMogulValidationError(f"{rule}, got {_type_name(key)}", value=key, has_value=True)
    if key == "":
        raise ChartMogulValidationError(f"{rule}; got an empty string", value=key, has_value=True)
    if not _KEY_RE.fullmatch(key):
        bad = next(ch for ch in key if not _KEY_RE.fullmatch(ch))
        raise ChartMogulValidationError(f"{rule}; found {bad!r}", value=key, has_value=True)
    return key


def validate_customer_uuid(uuid: Any, *, customer: str | None = None) -> str:
    """Check a ChartMogul customer UUID is safe to put in a URL path.

    Any format is accepted (``cus_`` + UUID is usual, but not required): a non-empty ``str``
    without ``/``, ``\\``, ``?``, ``#``, ``%``, whitespace or control characters, and not ``.`` or
    ``..``.

    :raises ChartMogulValidationError: naming ``customer_uuid``, the value and the rule.
    """
    rule = "customer_uuid must be "
    if not isinstance(uuid, str):
        raise ChartMogulValidationError(
            rule + f"a string, got {_type_name(uuid)}", customer=customer, value=uuid, has_value=True
        )
    problem = None
    if uuid == "":
        problem = "a non-empty string"
    elif uuid in (".", ".."):
        problem = "a real identifier, not '.' or '..'"
    elif " " in uuid or not uuid.isprintable():  # every other whitespace is not printable
        problem = "free of whitespace and control characters"
    elif _UNSAFE_PATH_CHARS.intersection(uuid):
        bad = "".join(sorted(_UNSAFE_PATH_CHARS.intersection(uuid)))
        problem = f"safe in a URL path (no / \\ ? # %; found {bad!r})"
    if problem:
        raise ChartMogulValidationError(rule + problem, customer=customer, value=uuid, has_value=True)
    return uuid


def infer_type(value: Any) -> str:
    """The ChartMogul type of a Python value read from a database.

    ``bool`` -> Boolean (checked before ``int``), ``int`` -> Integer, ``float``/``Decimal`` ->
    Decimal, ``datetime``/``date`` (pendulum included) -> Timestamp, ``str`` -> String.

    :raises ValueError: for anything else, naming the Python type.
    """
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, (float, Decimal)):
        return "Decimal"
    if isinstance(value, dt.datetime | dt.date):
        return "Timestamp"
    if isinstance(value, str):
        return "String"
    raise ValueError(
        f"cannot infer a ChartMogul type from a Python {_type_name(value)} value; "
        "give the column a type in attribute_types or cast it in SQL"
    )


# ---------------------------------------------------------------------------------------------
# Attributes
# ---------------------------------------------------------------------------------------------


def _check_source(source: Any, *, customer: str | None, key: str | None) -> str | None:
    if source is None:
        return None
    if not isinstance(source, str) or not source.strip():
        got = _type_name(source) if not isinstance(source, str) else "a blank string"
        raise ChartMogulValidationError(
            f"source must be a non-empty string when given, got {got}",
            customer=customer,
            key=key,
            value=source,
            has_value=True,
        )
    problem = surrogate_problem(source)
    if problem:
        raise ChartMogulValidationError(
            f"source {problem}", customer=customer, key=key, value=source, has_value=True
        )
    return source


def _valid_key_or_none(raw: Mapping[Any, Any]) -> str | None:
    """The record's key if it is a valid key, for naming it in an error about another field."""
    key = raw.get("key")
    return key if isinstance(key, str) and _KEY_RE.fullmatch(key) else None


def normalize_attribute(
    raw: Any,
    *,
    customer: str | None = None,
    allow_clear: bool = False,
    default_source: str | None = None,
) -> CustomAttribute:
    """Check one attribute (the seed's ``{"type", "key", "value", "source"?}``) and normalise it.

    A :class:`CustomAttribute` built by hand is checked again the same way; one this function made
    is returned as it is. ``default_source`` applies whenever the attribute has no source.

    :param customer: label of the customer, used in every error.
    :param allow_clear: accept ``value: None``, meaning "remove this attribute".
    :param default_source: source to use when the attribute gives none.
    :raises ChartMogulValidationError: naming the customer, the key, the value and the rule.
    """
    if isinstance(raw, CustomAttribute):
        if (
            raw._checked
            and (raw.value is not None or allow_clear)
            and (raw.source is not None or default_source is None)
        ):
            return raw
        raw = {"type": raw.type, "key": raw.key, "value": raw.value, "source": raw.source}
    if not isinstance(raw, Mapping):
        raise ChartMogulValidationError(
            f"an attribute must be a mapping with type, key and value, got {_type_name(raw)}",
            customer=customer,
            value=raw,
            has_value=True,
        )
    unknown = [field for field in raw if field not in ATTRIBUTE_FIELDS]
    if unknown:
        field = unknown[0]
        close = difflib.get_close_matches(str(field), ATTRIBUTE_FIELDS, n=1) if isinstance(field, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ChartMogulValidationError(
            f"unknown attribute field {shorten(field)} (allowed: {', '.join(ATTRIBUTE_FIELDS)}){hint}",
            customer=customer,
            key=_valid_key_or_none(raw),
            value=raw[field],
            has_value=True,
        )
    missing = [field for field in ("type", "key", "value") if field not in raw]
    if missing:
        raise ChartMogulValidationError(
            f"attribute is missing required field(s) {', '.join(repr(m) for m in missing)}",
            customer=customer,
            key=_valid_key_or_none(raw),
            value=dict(raw),
            has_value=True,
        )
    try:
        key = validate_key(raw["key"])
    except ChartMogulValidationError as exc:
        raise ChartMogulValidationError(
            exc.rule, customer=customer, value=raw["key"], has_value=True
        ) from None
    value = raw["value"]
    try:
        type_ = canonical_type(raw["type"])
    except ValueError as exc:
        raise ChartMogulValidationError(
            str(exc), customer=customer, key=key, value=value, has_value=True
        ) from None
    source = _check_source(raw.get("source"), customer=customer, key=key)
    if source is None:
        source = _check_source(default_source, customer=customer, key=key)
    if value is None:
        if allow_clear:
            return CustomAttribute(type_, key, None, source, True)
        raise ChartMogulValidationError(
            f"value is required for a {type_} attribute (None is only accepted when clearing is allowed)",
            customer=customer,
            key=key,
            value=value,
            has_value=True,
        )
    try:
        normalised = normalize_value(type_, value)
    except ValueError as exc:
        raise ChartMogulValidationError(
            str(exc), customer=customer, key=key, value=value, has_value=True
        ) from None
    return CustomAttribute(type_, key, normalised, source, True)


def normalize_custom(
    raw: Any,
    *,
    customer: str | None = None,
    allow_clear: bool = False,
    default_source: str | None = None,
) -> list[CustomAttribute]:
    """Check a ``custom`` list. An empty list is valid and means "nothing to send".

    :raises ChartMogulValidationError: for a non-list, any bad attribute, or a key given twice.
    """
    if not isinstance(raw, (list, tuple)):
        raise ChartMogulValidationError(
            f"field 'custom' must be a list of attributes, got {_type_name(raw)}",
            customer=customer,
            value=raw,
            has_value=True,
        )
    result: list[CustomAttribute] = []
    seen: set[str] = set()
    for item in raw:
        attribute = normalize_attribute(
            item, customer=customer, allow_clear=allow_clear, default_source=default_source
        )
        if attribute.key in seen:
            raise ChartMogulValidationError(
                "the same attribute key appears more than once in one record (duplicate key)",
                customer=customer,
                key=attribute.key,
                value=attribute.value,
                has_value=True,
            )
        seen.add(attribute.key)
        result.append(attribute)
    return result


# ---------------------------------------------------------------------------------------------
# Comparing with what ChartMogul holds (sync mode)
# ---------------------------------------------------------------------------------------------


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
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value.strip()):
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
        if text in ("true", "t", "1"):
            return True
        if text in ("false", "f", "0"):
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
                ours = _normalize_string(ours)
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
    t1, t2 = _as_instant(ours), _as_instant(theirs)
    return t1 is not None and t2 is not None and t1 == t2


def type_of_stored_value(value: Any) -> str | None:
    """Best guess of the ChartMogul type of a value as the API returns it (decoded JSON).

    ``bool`` -> Boolean, ``int`` -> Integer, ``float`` -> Decimal, a ``str`` holding a date
    *with a time* (``2016-01-31T00:00:00.000Z``, ``2022-09-08 00:00:00``, with or without a
    zone) -> Timestamp, any other ``str`` (a date alone included) -> String, ``None`` or
    anything else -> ``None``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Decimal"
    if isinstance(value, str):
        if _STORED_TIMESTAMP_RE.fullmatch(value) and _as_instant(value) is not None:
            return "Timestamp"
        return "String"
    return None
