"""Tests of the attribute type rules (``airflow_provider_chartmogul.attributes``)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pendulum
import pytest

from airflow_provider_chartmogul.attributes import (
    ATTRIBUTE_TYPES,
    INTEGER_MAX,
    INTEGER_MIN,
    MAX_STRING_LENGTH,
    CustomAttribute,
    infer_type,
    normalize_attribute,
    normalize_custom,
    normalize_value,
    type_of_stored_value,
    validate_customer_uuid,
    validate_key,
    values_equal,
)
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

CUSTOMER = "record #7 (email='ada@example.com')"
UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))
HUGE = 10_000


def test_constants() -> None:
    assert ATTRIBUTE_TYPES == ("String", "Integer", "Decimal", "Timestamp", "Boolean")
    assert MAX_STRING_LENGTH == 255
    assert (INTEGER_MIN, INTEGER_MAX) == (-(2**63), 2**63 - 1)


# ---------------------------------------------------------------------------------------------
# The seed example
# ---------------------------------------------------------------------------------------------


def test_seed_example_exact_json() -> None:
    custom = normalize_custom(
        [
            {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
            {"type": "Integer", "key": "age", "value": 8},
        ]
    )
    assert [json.dumps(a.as_payload()) for a in custom] == [
        '{"type": "String", "key": "channel", "value": "Facebook", "source": "integration"}',
        '{"type": "Integer", "key": "age", "value": 8}',
    ]
    assert list(custom[0].as_payload()) == ["type", "key", "value", "source"]
    assert list(custom[1].as_payload()) == ["type", "key", "value"]


def test_as_payload_of_a_clear_keeps_null() -> None:
    attribute = normalize_attribute({"type": "String", "key": "k", "value": None}, allow_clear=True)
    assert attribute == CustomAttribute("String", "k", None)
    assert json.dumps(attribute.as_payload()) == '{"type": "String", "key": "k", "value": null}'


def test_custom_attribute_is_frozen() -> None:
    attribute = CustomAttribute("Integer", "age", 8)
    with pytest.raises(AttributeError):
        attribute.value = 9  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Good values
# ---------------------------------------------------------------------------------------------

GOOD_VALUES: list[tuple[str, Any, Any]] = [
    # String
    ("String", "Facebook", "Facebook"),
    ("String", "", ""),
    ("String", "x" * 255, "x" * 255),
    ("String", "é" * 255, "é" * 255),  # characters, not bytes
    ("String", " padded ", " padded "),
    ("String", "social media 1", "social media 1"),
    ("String", 8, "8"),
    ("String", -8.5, "-8.5"),
    ("String", Decimal("8.50"), "8.50"),
    # Integer
    ("Integer", 8, 8),
    ("Integer", -8, -8),
    ("Integer", 0, 0),
    ("Integer", "8", 8),
    ("Integer", "-8", -8),
    ("Integer", "+8", 8),
    ("Integer", " 8\n", 8),
    ("Integer", "007", 7),
    ("Integer", 8.0, 8),
    ("Integer", Decimal("8.00"), 8),
    ("Integer", INTEGER_MAX, INTEGER_MAX),
    ("Integer", INTEGER_MIN, INTEGER_MIN),
    ("Integer", str(INTEGER_MAX), INTEGER_MAX),
    ("Integer", str(INTEGER_MIN), INTEGER_MIN),
    # Decimal
    ("Decimal", 8, 8),
    ("Decimal", 8.0, 8.0),
    ("Decimal", 8.5, 8.5),
    ("Decimal", -0.25, -0.25),
    ("Decimal", "8", 8),
    ("Decimal", "8.5", 8.5),
    ("Decimal", "8.0", 8.0),
    ("Decimal", " -1e3 ", -1000.0),
    ("Decimal", ".5", 0.5),
    ("Decimal", "5.", 5.0),
    ("Decimal", Decimal("8.25"), 8.25),
    ("Decimal", Decimal("8"), 8),
    ("Decimal", Decimal("8.00"), 8.0),
    ("Decimal", Decimal("1E+2"), 100),
    ("Decimal", 10**20, 10**20),
    # Timestamp: strings already in the common form are sent unchanged
    ("Timestamp", "2016-01-31T00:00:00.000Z", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2016-01-31 00:00:00 UTC", "2016-01-31 00:00:00 UTC"),
    ("Timestamp", "2022-09-08", "2022-09-08"),
    ("Timestamp", "2022-09-08 00:00:00", "2022-09-08 00:00:00"),
    ("Timestamp", "2022-09-08T10:00:00+02:00", "2022-09-08T10:00:00+02:00"),
    ("Timestamp", "2022-09-08T10:00+0200", "2022-09-08T10:00+0200"),
    ("Timestamp", "2022-09-08T10:00:00.123456Z", "2022-09-08T10:00:00.123456Z"),
    ("Timestamp", " 2022-09-08 ", "2022-09-08"),
    # Timestamp: other ISO 8601 forms are normalised
    ("Timestamp", "2022-W01-1", "2022-01-03T00:00:00+00:00"),
    ("Timestamp", "2022-001", "2022-01-01T00:00:00+00:00"),
    ("Timestamp", "20220908", "2022-09-08T00:00:00+00:00"),
    ("Timestamp", "20220908T101010Z", "2022-09-08T10:10:10+00:00"),
    ("Timestamp", "2022-09-08T10:00:00,5Z", "2022-09-08T10:00:00.500000+00:00"),
    ("Timestamp", "2022-09-08T10:00:00+02", "2022-09-08T10:00:00+02:00"),
    # Timestamp: datetime objects, sent with their offset
    ("Timestamp", dt.datetime(2022, 9, 8, 10, tzinfo=UTC), "2022-09-08T10:00:00+00:00"),
    ("Timestamp", dt.datetime(2022, 9, 8, 10, tzinfo=PLUS2), "2022-09-08T10:00:00+02:00"),
    ("Timestamp", dt.datetime(2022, 9, 8, 10, 0, 0, 123456, tzinfo=UTC), "2022-09-08T10:00:00.123456+00:00"),
    ("Timestamp", dt.datetime(2022, 9, 8, 10), "2022-09-08T10:00:00+00:00"),  # naive: UTC
    ("Timestamp", dt.date(2022, 9, 8), "2022-09-08T00:00:00+00:00"),  # midnight UTC
    ("Timestamp", pendulum.datetime(2022, 9, 8, 10, tz="Europe/Berlin"), "2022-09-08T10:00:00+02:00"),
    ("Timestamp", pendulum.datetime(2022, 1, 8, 10, tz="Europe/Berlin"), "2022-01-08T10:00:00+01:00"),
    ("Timestamp", pendulum.datetime(2022, 9, 8, 10, tz="UTC"), "2022-09-08T10:00:00+00:00"),
    ("Timestamp", pendulum.date(2022, 9, 8), "2022-09-08T00:00:00+00:00"),
    # Boolean: every spelling of the seed page, real bools, ints 1/0
    ("Boolean", "TRUE", True),
    ("Boolean", "true", True),
    ("Boolean", "t", True),
    ("Boolean", "1", True),
    ("Boolean", "FALSE", False),
    ("Boolean", "false", False),
    ("Boolean", "f", False),
    ("Boolean", "0", False),
    ("Boolean", True, True),
    ("Boolean", False, False),
    ("Boolean", 1, True),
    ("Boolean", 0, False),
]


@pytest.mark.parametrize(("type_", "value", "expected"), GOOD_VALUES)
def test_good_values(type_: str, value: Any, expected: Any) -> None:
    result = normalize_value(type_, value)
    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result)  # always a JSON value
    # Idempotent: a normalised value normalises to itself.
    assert normalize_value(type_, result) == result


@pytest.mark.parametrize(("type_", "value", "expected"), GOOD_VALUES)
def test_good_values_through_normalize_attribute(type_: str, value: Any, expected: Any) -> None:
    attribute = normalize_attribute({"type": type_, "key": "k", "value": value}, customer=CUSTOMER)
    assert attribute == CustomAttribute(type_, "k", expected)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("integer", "Integer"),
        ("STRING", "String"),
        ("decimal", "Decimal"),
        ("boolean", "Boolean"),
        ("TimeStamp", "Timestamp"),
    ],
)
def test_type_names_are_case_insensitive_and_normalised(spelling: str, canonical: str) -> None:
    value = "2022-01-01" if canonical == "Timestamp" else "1"
    attribute = normalize_attribute({"type": spelling, "key": "k", "value": value})
    assert attribute.type == canonical


def test_integer_accepts_float_only_when_integral() -> None:
    assert normalize_value("Integer", 1e15) == 10**15
    with pytest.raises(ValueError, match="whole number"):
        normalize_value("Integer", 1e15 + 0.5)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def test_source_given_kept() -> None:
    raw = {"type": "String", "key": "k", "value": "v", "source": "crm"}
    assert normalize_attribute(raw, default_source="airflow").source == "crm"


def test_default_source_applies_when_none() -> None:
    assert normalize_attribute({"type": "String", "key": "k", "value": "v"}, default_source="x").source == "x"
    raw = {"type": "String", "key": "k", "value": "v", "source": None}
    assert normalize_attribute(raw, default_source="x").source == "x"
    assert normalize_attribute({"type": "String", "key": "k", "value": "v"}).source is None


def test_custom_attribute_passes_through() -> None:
    attribute = CustomAttribute("Integer", "age", 8)
    assert normalize_attribute(attribute) == attribute
    assert normalize_attribute(attribute, default_source="airflow") == CustomAttribute(
        "Integer", "age", 8, "airflow"
    )
    with_source = CustomAttribute("Integer", "age", 8, "crm")
    assert normalize_attribute(with_source, default_source="airflow").source == "crm"


def test_custom_attribute_built_by_hand_is_checked_again() -> None:
    with pytest.raises(ChartMogulValidationError, match="not a valid Integer"):
        normalize_attribute(CustomAttribute("Integer", "age", "eight"), customer=CUSTOMER)


def test_a_checked_attribute_is_not_checked_twice() -> None:
    checked = normalize_attribute({"type": "integer", "key": "age", "value": "8"})
    assert checked == CustomAttribute("Integer", "age", 8)
    assert normalize_attribute(checked) is checked
    # unless the call asks for something the first check did not do
    assert normalize_attribute(checked, default_source="airflow").source == "airflow"
    cleared = normalize_attribute({"type": "Integer", "key": "age", "value": None}, allow_clear=True)
    with pytest.raises(ChartMogulValidationError, match="value is required"):
        normalize_attribute(cleared)


def test_empty_custom_list_is_valid() -> None:
    assert normalize_custom([]) == []
    assert normalize_custom(()) == []


def test_normalize_custom_keeps_order_and_tuple_input() -> None:
    custom = normalize_custom(
        (
            {"type": "Boolean", "key": "pro", "value": "t"},
            {"type": "Decimal", "key": "CAC", "value": "213.5"},
        )
    )
    assert [(a.key, a.value) for a in custom] == [("pro", True), ("CAC", 213.5)]


def test_clear_only_when_allowed() -> None:
    raw = {"type": "Integer", "key": "age", "value": None}
    assert normalize_custom([raw], allow_clear=True) == [CustomAttribute("Integer", "age", None)]
    with pytest.raises(ChartMogulValidationError, match="value is required"):
        normalize_custom([raw])


# ---------------------------------------------------------------------------------------------
# Bad values: every message names the customer, the key and the rule
# ---------------------------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, Any, str]] = [
    # String
    ("String", "x" * 256, "at most 255 characters"),
    ("String", "é" * 256, "at most 255 characters"),
    ("String", True, "got a bool"),
    ("String", b"abc", "must be a str"),
    ("String", "ab\ud800c", "lone surrogate U+D800 at position 2"),
    ("String", "\udfff", "lone surrogate U+DFFF"),
    ("String", {"a": 1}, "single value"),
    ("String", ["a"], "single value"),
    ("String", object(), "must be a str"),
    ("String", float("nan"), "must be finite"),
    ("String", Decimal("NaN"), "must be finite"),
    ("String", dt.date(2022, 1, 1), "must be a str"),
    # Integer
    ("Integer", 8.5, "whole number"),
    ("Integer", "8.5", "whole number"),
    ("Integer", "8.0", "whole number"),
    ("Integer", "abc", "whole number"),
    ("Integer", "", "whole number"),
    ("Integer", "1_000", "whole number"),
    ("Integer", "1e3", "whole number"),
    ("Integer", "0x10", "whole number"),
    ("Integer", "١٢", "digits 0-9"),
    ("Integer", float("nan"), "not NaN or infinity"),
    ("Integer", float("inf"), "not NaN or infinity"),
    ("Integer", float("-inf"), "not NaN or infinity"),
    ("Integer", Decimal("Infinity"), "not NaN or infinity"),
    ("Integer", 2**63, "signed 64-bit"),
    ("Integer", -(2**63) - 1, "signed 64-bit"),
    ("Integer", "9223372036854775808", "signed 64-bit"),
    ("Integer", "1" * 5000, "signed 64-bit"),
    ("Integer", 1e19, "signed 64-bit"),
    ("Integer", True, "got a bool"),
    ("Integer", Decimal("8.5"), "whole number"),
    ("Integer", dt.date(2022, 1, 1), "must be an int"),
    ("Integer", [8], "single value"),
    # Decimal
    ("Decimal", float("nan"), "must be finite"),
    ("Decimal", float("inf"), "must be finite"),
    ("Decimal", float("-inf"), "must be finite"),
    ("Decimal", Decimal("NaN"), "must be finite"),
    ("Decimal", Decimal("Infinity"), "must be finite"),
    ("Decimal", Decimal("1e400"), "too large"),
    ("Decimal", 10**400, "too large"),
    ("Decimal", "1e400", "too large"),
    ("Decimal", "1e-400", "too close to zero"),
    ("Decimal", "-2.5e-330", "too close to zero"),
    ("Decimal", Decimal("1e-400"), "too close to zero"),
    ("Decimal", "nan", "must be a number"),
    ("Decimal", "inf", "must be a number"),
    ("Decimal", "1,5", "use '.' as the decimal separator"),
    ("Decimal", "abc", "must be a number"),
    ("Decimal", "", "must be a number"),
    ("Decimal", True, "got a bool"),
    ("Decimal", b"1", "must be a number"),
    ("Decimal", dt.datetime(2022, 1, 1), "must be a number"),
    ("Decimal", {"value": 1}, "single value"),
    # Timestamp
    ("Timestamp", "2022-13-45", "not a valid date or time"),
    ("Timestamp", "2022-02-29", "not a valid date or time"),
    ("Timestamp", "2022-09-08T25:00:00", "not a valid date or time"),
    ("Timestamp", "yesterday", "expected ISO 8601"),
    ("Timestamp", "now", "expected ISO 8601"),
    ("Timestamp", "", "expected ISO 8601"),
    ("Timestamp", 1662595200, "epoch"),
    ("Timestamp", 1662595200.5, "epoch"),
    ("Timestamp", "1662595200", "epoch"),
    ("Timestamp", "P1D", "duration"),
    ("Timestamp", "PT1H", "duration"),
    ("Timestamp", "2022-09-08/2022-09-10", "interval"),
    ("Timestamp", "2022-09-08T10:00:00Z/P1D", "interval"),
    ("Timestamp", "12:00", "a time needs a date"),
    ("Timestamp", "T12:00", "a time needs a date"),
    ("Timestamp", "2022", "year or year-month alone"),
    ("Timestamp", "2022-09", "year or year-month alone"),
    ("Timestamp", "2022-09-08 00:00:00+02:00 UTC", "' UTC' may only follow"),
    ("Timestamp", True, "epoch"),
    ("Timestamp", dt.time(12), "a time needs a date"),
    ("Timestamp", dt.timedelta(days=1), "duration"),
    ("Timestamp", b"2022-01-01", "must be an ISO 8601 string"),
    ("Timestamp", ["2022-01-01"], "single value"),
    # Boolean
    ("Boolean", "yes", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", "TRUE ", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", " true ", "not a valid Boolean"),
    ("Boolean", "0\n", "not a valid Boolean"),
    ("Boolean", "True", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", "False", "not a valid Boolean"),
    ("Boolean", "T", "not a valid Boolean"),
    ("Boolean", "no", "not a valid Boolean"),
    ("Boolean", "on", "not a valid Boolean"),
    ("Boolean", "", "not a valid Boolean"),
    ("Boolean", 2, "not a valid Boolean"),
    ("Boolean", -1, "not a valid Boolean"),
    ("Boolean", 1.0, "not a valid Boolean"),
    ("Boolean", b"true", "not a valid Boolean"),
    ("Boolean", {"v": True}, "single value"),
]


def _message(exc_info: pytest.ExceptionInfo[ChartMogulValidationError]) -> str:
    return str(exc_info.value)


@pytest.mark.parametrize(("type_", "value", "rule"), BAD_VALUES)
def test_bad_values(type_: str, value: Any, rule: str) -> None:
    with pytest.raises(ValueError, match="not a valid") as exc_info:
        normalize_value(type_, value)
    assert rule in str(exc_info.value)
    with pytest.raises(ChartMogulValidationError) as exc_info2:
        normalize_attribute({"type": type_, "key": "the_key", "value": value}, customer=CUSTOMER)
    message = _message(exc_info2)
    assert CUSTOMER in message
    assert "attribute 'the_key'" in message
    assert rule in message
    assert f"not a valid {type_}" in message
    assert exc_info2.value.key == "the_key"
    assert exc_info2.value.customer == CUSTOMER
    assert exc_info2.value.value_repr is not None
    assert len(message) < 700


# Whole attributes that break a structural rule: (raw, substrings the message must contain).
BAD_ATTRIBUTES: list[tuple[Any, list[str]]] = [
    (
        {"type": "Float", "key": "price", "value": 1.5},
        ["attribute 'price'", "'Float'", "did you mean 'Decimal'"],
    ),
    ({"type": "Int", "key": "age", "value": 1}, ["attribute 'age'", "did you mean 'Integer'"]),
    ({"type": "Strin", "key": "age", "value": "1"}, ["attribute 'age'", "did you mean 'String'"]),
    ({"type": "", "key": "age", "value": 1}, ["attribute 'age'", "is not one of String, Integer"]),
    ({"type": None, "key": "age", "value": 1}, ["attribute 'age'", "type must be one of"]),
    ({"type": 5, "key": "age", "value": 1}, ["attribute 'age'", "type must be one of"]),
    ({"type": "Integer", "key": "a b", "value": 1}, ["'a b'", "letters", "found ' '"]),
    ({"type": "Integer", "key": "", "value": 1}, ["value ''", "got an empty string"]),
    ({"type": "Integer", "key": "a-b", "value": 1}, ["'a-b'", "underscores", "found '-'"]),
    ({"type": "Integer", "key": "a.b", "value": 1}, ["'a.b'", "found '.'"]),
    ({"type": "Integer", "key": "ключ", "value": 1}, ["'ключ'", "letters A-Z/a-z"]),
    ({"type": "Integer", "key": "café", "value": 1}, ["'café'", "found 'é'"]),
    ({"type": "Integer", "key": "a\n", "value": 1}, ["'a\\n'", "found '\\n'"]),
    ({"type": "Integer", "key": 5, "value": 1}, ["value 5", "attribute key must be", "got int"]),
    ({"type": "Integer", "key": None, "value": 1}, ["value None", "attribute key must be", "got NoneType"]),
    ({"type": "Integer", "key": "age"}, ["attribute 'age'", "missing required field(s) 'value'"]),
    ({"key": "age", "value": 1}, ["attribute 'age'", "missing required field(s) 'type'"]),
    ({"type": "Integer", "value": 1}, ["missing required field(s) 'key'"]),
    ({}, ["missing required field(s) 'type', 'key', 'value'"]),
    ({"type": "Integer", "key": "age", "value": None}, ["attribute 'age'", "value is required"]),
    (
        {"type": "Integer", "key": "age", "vaule": 1},
        ["attribute 'age'", "unknown attribute field 'vaule'", "did you mean 'value'"],
    ),
    (
        {"type": "Integer", "key": "age", "value": 1, "Type": "x"},
        ["attribute 'age'", "unknown attribute field 'Type'", "allowed: type, key, value, source"],
    ),
    ({"type": "Integer", "key": "age", "value": 1, 3: "x"}, ["unknown attribute field 3"]),
    (
        {"type": "Integer", "key": "age", "value": 1, "source": ""},
        ["attribute 'age'", "source must be a non-empty"],
    ),
    ({"type": "Integer", "key": "age", "value": 1, "source": "  "}, ["attribute 'age'", "blank string"]),
    (
        {"type": "Integer", "key": "age", "value": 1, "source": 5},
        ["attribute 'age'", "source must be", "got int"],
    ),
    (
        {"type": "Integer", "key": "age", "value": {"value": 1}},
        ["attribute 'age'", "single value, not a dict"],
    ),
    (
        {"type": "String", "key": "tags", "value": ["a", "b"]},
        ["attribute 'tags'", "single value, not a list"],
    ),
    ("channel=Facebook", ["an attribute must be a mapping", "got str"]),
    (["String", "channel", "Facebook"], ["an attribute must be a mapping", "got list"]),
    (None, ["an attribute must be a mapping", "got NoneType"]),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_ATTRIBUTES)
def test_bad_attributes(raw: Any, expected: list[str]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        normalize_attribute(raw, customer=CUSTOMER)
    message = _message(exc_info)
    assert message.startswith(CUSTOMER + ": ")
    for part in expected:
        assert part in message, (part, message)
    assert len(message) < 700


def test_default_source_blank_is_rejected() -> None:
    with pytest.raises(ChartMogulValidationError, match="source must be a non-empty") as exc_info:
        normalize_attribute(
            {"type": "String", "key": "k", "value": "v"}, customer=CUSTOMER, default_source=""
        )
    assert CUSTOMER in str(exc_info.value)


BAD_CUSTOM_LISTS: list[tuple[Any, list[str]]] = [
    ({"type": "String", "key": "k", "value": "v"}, ["field 'custom' must be a list", "got dict"]),
    ("k=v", ["field 'custom' must be a list", "got str"]),
    (None, ["field 'custom' must be a list", "got NoneType"]),
    ({"k": "v"}, ["field 'custom' must be a list", "got dict"]),
    (
        [{"type": "String", "key": "k", "value": "a"}, {"type": "String", "key": "k", "value": "b"}],
        ["attribute 'k'", "more than once", "duplicate key"],
    ),
    (
        [{"type": "String", "key": "k", "value": "a"}, {"type": "Integer", "key": "k", "value": 1}],
        ["attribute 'k'", "duplicate key"],
    ),
    (
        [{"type": "String", "key": "ok", "value": "a"}, {"type": "Integer", "key": "n", "value": "x"}],
        ["attribute 'n'", "not a valid Integer"],
    ),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_CUSTOM_LISTS)
def test_bad_custom_lists(raw: Any, expected: list[str]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        normalize_custom(raw, customer=CUSTOMER)
    message = _message(exc_info)
    assert message.startswith(CUSTOMER + ": ")
    for part in expected:
        assert part in message, (part, message)


def test_keys_differing_in_case_are_distinct() -> None:
    custom = normalize_custom(
        [{"type": "Integer", "key": "CAC", "value": 1}, {"type": "Integer", "key": "cac", "value": 2}]
    )
    assert [a.key for a in custom] == ["CAC", "cac"]


# ---------------------------------------------------------------------------------------------
# Long values are shortened in messages
# ---------------------------------------------------------------------------------------------

LONG = "z" * HUGE


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "String", "key": "k", "value": LONG},
        {"type": "Integer", "key": "k", "value": LONG},
        {"type": "Integer", "key": "k", "value": "9" * HUGE},
        {"type": "Decimal", "key": "k", "value": LONG},
        {"type": "Timestamp", "key": "k", "value": LONG},
        {"type": "Boolean", "key": "k", "value": LONG},
        {"type": "String", "key": "k", "value": [LONG]},
        {"type": "String", "key": "k", "value": LONG.encode()},
        {"type": LONG, "key": "k", "value": 1},
        {"type": "String", "key": "a-" + LONG, "value": "v"},
        {"type": "String", "key": "k", "value": "v", "source": 10**HUGE // 10**9000},
        {"type": "String", "key": "k", "value": "v", LONG: 1},
        {"type": "String", "key": "k", LONG: LONG},
    ],
)
def test_long_values_are_shortened(raw: dict[str, Any]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        normalize_attribute(raw, customer=CUSTOMER)
    message = _message(exc_info)
    assert LONG not in message
    assert "9" * 200 not in message
    assert len(message) < 700
    assert CUSTOMER in message


def test_long_custom_is_shortened() -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        normalize_custom({"k": LONG}, customer=CUSTOMER)
    assert LONG not in str(exc_info.value)


# ---------------------------------------------------------------------------------------------
# validate_key / validate_customer_uuid
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["CAC", "utmCampaign", "a", "_", "a_b_1", "1abc", "A" * 300])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", " ", "a b", "a-b", "a.b", "é", "ключ", "a\n", "a/b", 5, None, b"ab"])
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(ChartMogulValidationError, match="attribute key must be") as exc_info:
        validate_key(key)
    assert repr(key) in str(exc_info.value)


@pytest.mark.parametrize(
    "uuid", ["cus_de305d54-75b4-431b-adb2-eb6b9e546012", "cus_1", "abc", "a.b", "...", "cus_ü", "A:B"]
)
def test_valid_customer_uuids(uuid: str) -> None:
    assert validate_customer_uuid(uuid) == uuid


@pytest.mark.parametrize(
    ("uuid", "rule"),
    [
        ("", "non-empty"),
        (" ", "whitespace"),
        ("cus_1 ", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\u00a0b", "whitespace"),
        ("a\u2028b", "whitespace"),
        ("a\x00b", "control characters"),
        ("a\u200bb", "control characters"),
        ("a/b", "safe in a URL path"),
        ("a\\b", "safe in a URL path"),
        ("cus_1?x", "safe in a URL path"),
        ("cus_1#x", "safe in a URL path"),
        ("cus_%2F", "safe in a URL path"),
        (".", "not '.' or '..'"),
        ("..", "not '.' or '..'"),
        (None, "a string, got NoneType"),
        (5, "a string, got int"),
    ],
)
def test_invalid_customer_uuids(uuid: Any, rule: str) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        validate_customer_uuid(uuid, customer="record #2")
    message = str(exc_info.value)
    assert message.startswith("record #2: ")
    assert "customer_uuid must be" in message
    assert rule in message
    assert repr(uuid) in message


def test_invalid_customer_uuid_shortened() -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        validate_customer_uuid("/" * HUGE)
    assert "/" * 200 not in str(exc_info.value)


# ---------------------------------------------------------------------------------------------
# infer_type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "Boolean"),
        (False, "Boolean"),
        (0, "Integer"),
        (8, "Integer"),
        (2**70, "Integer"),
        (8.5, "Decimal"),
        (Decimal("8.50"), "Decimal"),
        ("x", "String"),
        ("", "String"),
        ("2022-01-01", "String"),  # a string stays a String; say Timestamp in attribute_types
        (dt.date(2022, 1, 1), "Timestamp"),
        (dt.datetime(2022, 1, 1), "Timestamp"),
        (dt.datetime(2022, 1, 1, tzinfo=UTC), "Timestamp"),
        (pendulum.datetime(2022, 1, 1, tz="Europe/Berlin"), "Timestamp"),
        (pendulum.date(2022, 1, 1), "Timestamp"),
    ],
)
def test_infer_type(value: Any, expected: str) -> None:
    assert infer_type(value) == expected
    if value != 2**70:  # inferred Integer, then rejected as out of range by normalize_value
        normalize_value(expected, value)  # what is inferred is also accepted


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (b"x", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (memoryview(b"x"), "memoryview"),
        ({"a": 1}, "dict"),
        ([1], "list"),
        (dt.time(12), "time"),
        (dt.timedelta(1), "timedelta"),
        (None, "NoneType"),
        (object(), "object"),
    ],
)
def test_infer_type_rejects(value: Any, name: str) -> None:
    with pytest.raises(ValueError, match=f"Python {name} value"):
        infer_type(value)


# ---------------------------------------------------------------------------------------------
# values_equal / type_of_stored_value
# ---------------------------------------------------------------------------------------------

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


def test_a_cut_string_and_its_rule_give_the_same_length() -> None:
    with pytest.raises(ChartMogulValidationError) as info:
        normalize_attribute({"type": "String", "key": "plan", "value": "x" * 300}, customer=CUSTOMER)
    message = str(info.value)
    assert "got 300" in message and "(300 chars)" in message, message


@pytest.mark.parametrize(("value", "sent"), [("0e-400", 0.0), ("1e-300", 1e-300), (Decimal("0E-500"), 0.0)])
def test_decimal_zero_and_small_values_are_kept(value: Any, sent: float) -> None:
    assert normalize_value("Decimal", value) == sent


def test_a_source_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ChartMogulValidationError, match="source contains a lone surrogate"):
        normalize_attribute({"type": "String", "key": "plan", "value": "x", "source": "air\ud83dflow"})
