"""Tests of Timestamp values (``airflow_provider_chartmogul.attributes.timestamps``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
import pytest

from tests.attributes._checks import (
    check_bad_value,
    check_good_value,
    check_good_value_through_normalize_attribute,
)

UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))

GOOD_TIMESTAMPS: list[tuple[Any, str]] = [
    # strings already in the common form are sent unchanged
    ("2016-01-31T00:00:00.000Z", "2016-01-31T00:00:00.000Z"),
    ("2016-01-31 00:00:00 UTC", "2016-01-31 00:00:00 UTC"),
    ("2022-09-08", "2022-09-08"),
    ("2022-09-08 00:00:00", "2022-09-08 00:00:00"),
    ("2022-09-08T10:00:00+02:00", "2022-09-08T10:00:00+02:00"),
    ("2022-09-08T10:00+0200", "2022-09-08T10:00+0200"),
    ("2022-09-08T10:00:00.123456Z", "2022-09-08T10:00:00.123456Z"),
    (" 2022-09-08 ", "2022-09-08"),
    # other ISO 8601 forms are normalised
    ("2022-W01-1", "2022-01-03T00:00:00+00:00"),
    ("2022-001", "2022-01-01T00:00:00+00:00"),
    ("20220908", "2022-09-08T00:00:00+00:00"),
    ("20220908T101010Z", "2022-09-08T10:10:10+00:00"),
    ("2022-09-08T10:00:00,5Z", "2022-09-08T10:00:00.500000+00:00"),
    ("2022-09-08T10:00:00+02", "2022-09-08T10:00:00+02:00"),
    # datetime objects, sent with their offset
    (dt.datetime(2022, 9, 8, 10, tzinfo=UTC), "2022-09-08T10:00:00+00:00"),
    (dt.datetime(2022, 9, 8, 10, tzinfo=PLUS2), "2022-09-08T10:00:00+02:00"),
    (dt.datetime(2022, 9, 8, 10, 0, 0, 123456, tzinfo=UTC), "2022-09-08T10:00:00.123456+00:00"),
    (dt.datetime(2022, 9, 8, 10), "2022-09-08T10:00:00+00:00"),  # naive: UTC
    (dt.date(2022, 9, 8), "2022-09-08T00:00:00+00:00"),  # midnight UTC
    (pendulum.datetime(2022, 9, 8, 10, tz="Europe/Berlin"), "2022-09-08T10:00:00+02:00"),
    (pendulum.datetime(2022, 1, 8, 10, tz="Europe/Berlin"), "2022-01-08T10:00:00+01:00"),
    (pendulum.datetime(2022, 9, 8, 10, tz="UTC"), "2022-09-08T10:00:00+00:00"),
    (pendulum.date(2022, 9, 8), "2022-09-08T00:00:00+00:00"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_TIMESTAMPS)
def test_good_timestamps(value: Any, expected: str) -> None:
    check_good_value("Timestamp", value, expected)


@pytest.mark.parametrize(("value", "expected"), GOOD_TIMESTAMPS)
def test_good_timestamps_through_normalize_attribute(value: Any, expected: str) -> None:
    check_good_value_through_normalize_attribute("Timestamp", value, expected)


# Bad timestamps: every message names the customer, the key and the rule
BAD_TIMESTAMPS: list[tuple[Any, str]] = [
    ("2022-13-45", "not a valid date or time"),
    ("2022-02-29", "not a valid date or time"),
    ("2022-09-08T25:00:00", "not a valid date or time"),
    ("yesterday", "expected ISO 8601"),
    ("now", "expected ISO 8601"),
    ("", "expected ISO 8601"),
    (1662595200, "epoch"),
    (1662595200.5, "epoch"),
    ("1662595200", "epoch"),
    ("P1D", "duration"),
    ("PT1H", "duration"),
    ("2022-09-08/2022-09-10", "interval"),
    ("2022-09-08T10:00:00Z/P1D", "interval"),
    ("12:00", "a time needs a date"),
    ("T12:00", "a time needs a date"),
    ("2022", "year or year-month alone"),
    ("2022-09", "year or year-month alone"),
    ("2022-09-08 00:00:00+02:00 UTC", "' UTC' may only follow"),
    (True, "epoch"),
    (dt.time(12), "a time needs a date"),
    (dt.timedelta(days=1), "duration"),
    (b"2022-01-01", "must be an ISO 8601 string"),
    (["2022-01-01"], "single value"),
]


@pytest.mark.parametrize(("value", "rule"), BAD_TIMESTAMPS)
def test_bad_timestamps(value: Any, rule: str) -> None:
    check_bad_value("Timestamp", value, rule)
