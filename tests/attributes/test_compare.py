"""Tests of comparing values with what ChartMogul holds (``attributes.compare``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
import pytest

from airflow_provider_chartmogul.attributes import INTEGER_MAX, type_of_stored_value, values_equal

UTC = dt.timezone.utc

EQUAL: list[tuple[str, Any, Any]] = [
    ("Integer", 8, 8),
    ("Integer", 8, "8"),
    ("Integer", 8, 8.0),
    ("Integer", 8, "8.0"),
    ("Integer", -3, "-3"),
    ("Integer", INTEGER_MAX, str(INTEGER_MAX)),
    ("Decimal", 0.1, 0.1),
    ("Decimal", 0.1, "0.1"),
    ("Decimal", 8, 8.0),
    ("Decimal", 8.5, "8.50"),
    ("Decimal", 0.1 + 0.2, 0.3),
    ("Decimal", 1234567.891, 1234567.8910000001),
    ("Boolean", True, True),
    ("Boolean", True, "true"),
    ("Boolean", True, "t"),
    ("Boolean", True, "TRUE"),
    ("Boolean", True, 1),
    ("Boolean", True, "1"),
    ("Boolean", False, False),
    ("Boolean", False, "f"),
    ("Boolean", False, 0),
    ("Timestamp", "2016-01-31T00:00:00.000Z", "2016-01-31 00:00:00 UTC"),
    ("Timestamp", "2016-01-31T00:00:00.000Z", dt.datetime(2016, 1, 31, tzinfo=UTC)),
    ("Timestamp", "2016-01-31T00:00:00.000Z", dt.datetime(2016, 1, 31)),
    ("Timestamp", "2016-01-31T02:00:00+02:00", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2016-01-31", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2022-09-08 00:00:00", "2022-09-08T00:00:00Z"),
    ("Timestamp", "2022-W01-1", "2022-01-03T00:00:00.000Z"),
    ("Timestamp", pendulum.datetime(2016, 1, 31, 1, tz="Europe/Berlin"), "2016-01-31T00:00:00.000Z"),
    ("String", "Facebook", "Facebook"),
    ("String", "8", "8"),
    ("String", 8, "8"),
    ("String", None, None),
]

NOT_EQUAL: list[tuple[str, Any, Any]] = [
    ("Integer", 8, 9),
    ("Integer", 8, "8.5"),
    ("Integer", 1, True),
    ("Integer", 8, "eight"),
    ("Integer", 8, None),
    ("Decimal", 0.1, 0.1001),
    ("Decimal", 8.5, "abc"),
    ("Decimal", 1, True),
    ("Boolean", True, False),
    ("Boolean", True, "false"),
    ("Boolean", True, "yes"),
    ("Boolean", True, 2),
    ("Boolean", False, None),
    ("Timestamp", "2016-01-31T00:00:00Z", "2016-01-31T00:00:01Z"),
    ("Timestamp", "2016-01-31T00:00:00+02:00", "2016-01-31T00:00:00Z"),
    ("Timestamp", "2016-01-31", "garbage"),
    ("Timestamp", "2016-01-31", 1454198400),
    ("String", "Facebook", "facebook"),
    ("String", "Facebook", "Facebook "),
    ("String", "8", 8),
    ("String", "a", None),
]


@pytest.mark.parametrize(("type_", "ours", "theirs"), EQUAL)
def test_values_equal(type_: str, ours: Any, theirs: Any) -> None:
    assert values_equal(type_, ours, theirs)


@pytest.mark.parametrize(("type_", "ours", "theirs"), NOT_EQUAL)
def test_values_not_equal(type_: str, ours: Any, theirs: Any) -> None:
    assert not values_equal(type_, ours, theirs)


def test_values_equal_unknown_type() -> None:
    with pytest.raises(ValueError, match="did you mean 'Decimal'"):
        values_equal("Float", 1.0, 1.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "Boolean"),
        (False, "Boolean"),
        (213, "Integer"),
        (8.5, "Decimal"),
        (8.0, "Decimal"),
        ("2016-01-31T00:00:00.000Z", "Timestamp"),
        ("2022-09-08T10:00:00+02:00", "Timestamp"),
        ("2016-01-31 00:00:00 UTC", "Timestamp"),
        ("2022-09-08 00:00:00", "Timestamp"),  # convertedAt in the seed's answer
        ("2022-13-45T00:00:00Z", "String"),  # looks like one but is not a date
        ("2022-09-08", "String"),
        ("social media 1", "String"),
        ("", "String"),
        (None, None),
        ({"value": 1}, None),
        ([1], None),
    ],
)
def test_type_of_stored_value(value: Any, expected: str | None) -> None:
    assert type_of_stored_value(value) == expected


def test_seed_answer_types() -> None:
    answer = {
        "CAC": 213,
        "utmCampaign": "social media 1",
        "convertedAt": "2022-09-08 00:00:00",
        "pro": False,
        "salesRep": "Gabi",
        "channel": "Facebook",
        "age": 8,
    }
    assert {k: type_of_stored_value(v) for k, v in answer.items()} == {
        "CAC": "Integer",
        "utmCampaign": "String",
        "convertedAt": "Timestamp",
        "pro": "Boolean",
        "salesRep": "String",
        "channel": "String",
        "age": "Integer",
    }
