"""Timestamp values: which ISO 8601 texts and datetimes are accepted, what is sent, and the
instant a value names (rules in ``docs/attribute-rules.md``)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pendulum

_RULE = "is not a valid Timestamp: "
_EXAMPLE = "expected ISO 8601 such as 2016-01-31 or 2016-01-31T00:00:00Z"
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


def _aware(value: dt.datetime | dt.date) -> dt.datetime:
    """``value`` as an aware datetime: a naive datetime is UTC, a date is midnight UTC."""
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _datetime_to_iso(value: dt.datetime | dt.date) -> str:
    """ISO 8601 with an offset; naive datetimes are UTC, dates are midnight UTC."""
    value = _aware(value)
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
    if "/" in text:
        raise ValueError(_RULE + f"an interval is not a single point in time; {_EXAMPLE}")
    if text.startswith(("P", "p", "-P", "+P")):
        raise ValueError(_RULE + f"a duration is not a point in time; {_EXAMPLE}")
    if re.fullmatch(r"[0-9]{1,2}:[0-9]{2}.*|T[0-9].*", text):
        raise ValueError(_RULE + f"a time needs a date; {_EXAMPLE}")
    if re.fullmatch(r"[0-9]{4}(?:-[0-9]{2})?", text):
        raise ValueError(_RULE + f"a year or year-month alone is not a point in time; {_EXAMPLE}")
    if re.fullmatch(r"[+-]?[0-9]+(?:\.[0-9]*)?", text) and not re.fullmatch(r"[0-9]{8}", text):
        raise ValueError(_RULE + f"numbers (epoch seconds) are not accepted; {_EXAMPLE}")
    # Keeps pendulum's special words ("now") and everything else that is not a date out.
    if not re.match(r"[0-9]{4}", text):
        raise ValueError(_RULE + _EXAMPLE)
    utc_suffix = text.endswith(" UTC")
    to_parse = text[:-4] if utc_suffix else text
    if utc_suffix and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]+", to_parse):
        raise ValueError(_RULE + f"' UTC' may only follow a date and time without an offset; {_EXAMPLE}")
    try:
        parsed = pendulum.parse(to_parse, exact=True, strict=True)
    except Exception:
        raise ValueError(_RULE + f"not a valid date or time; {_EXAMPLE}") from None
    if isinstance(parsed, dt.datetime | dt.date):
        return _aware(parsed)
    raise ValueError(_RULE + f"names no single day ({type(parsed).__name__}); {_EXAMPLE}")


def normalize_timestamp(value: Any) -> str:
    """The Timestamp text to send for ``value``.

    :raises ValueError: whose text is the rule that was broken.
    """
    if isinstance(value, dt.datetime | dt.date):
        return _datetime_to_iso(value)
    if isinstance(value, dt.time):
        raise ValueError(_RULE + "a time needs a date")
    if isinstance(value, dt.timedelta):
        raise ValueError(_RULE + "a duration is not a point in time")
    if isinstance(value, (bool, int, float, Decimal)):
        raise ValueError(
            _RULE + "numbers (epoch seconds) are not accepted; give an ISO 8601 string or a datetime"
        )
    if not isinstance(value, str):
        raise ValueError(
            _RULE + f"must be an ISO 8601 string, a datetime or a date, got {type(value).__name__}"
        )
    text = value.strip()
    parsed = _parse_timestamp_string(text)
    if _COMMON_TIMESTAMP_RE.fullmatch(text):
        return text
    return _datetime_to_iso(parsed)


def as_instant(value: Any) -> dt.datetime | None:
    """An aware datetime for a Timestamp value in any accepted form, or None."""
    if isinstance(value, dt.datetime | dt.date):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _parse_timestamp_string(value.strip())
        except ValueError:
            return None
    return None


def looks_stored(text: str) -> bool:
    """Whether ``text`` is a date *with a time*, as the API hands Timestamp attributes back."""
    return _STORED_TIMESTAMP_RE.fullmatch(text) is not None and as_instant(text) is not None
