"""Tests of whole attributes and ``custom`` lists (``airflow_provider_chartmogul.attributes.normalize``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import CustomAttribute, normalize_attribute, normalize_custom
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from tests.attributes._checks import CUSTOMER

HUGE = 10_000


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


def test_normalising_is_idempotent_and_checks_every_time() -> None:
    checked = normalize_attribute({"type": "integer", "key": "age", "value": "8"})
    assert checked == CustomAttribute("Integer", "age", 8)
    assert dataclasses.astuple(checked) == ("Integer", "age", 8, None)  # the four fields, nothing else
    assert normalize_attribute(checked) == checked
    assert normalize_attribute(checked, default_source="airflow").source == "airflow"
    # What was checked once holds no mark that would let a changed copy through.
    with pytest.raises(ChartMogulValidationError, match="not a valid Integer"):
        normalize_attribute(dataclasses.replace(checked, value="eight"), customer=CUSTOMER)
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


def _message(exc_info: pytest.ExceptionInfo[ChartMogulValidationError]) -> str:
    return str(exc_info.value)


def _refusal(normalize: Callable[..., object], raw: Any, expected: list[str]) -> str:
    """The message ``normalize(raw)`` is refused with: it starts with the customer, holds ``expected``."""
    with pytest.raises(ChartMogulValidationError) as exc_info:
        normalize(raw, customer=CUSTOMER)
    message = _message(exc_info)
    assert message.startswith(CUSTOMER + ": ")
    for part in expected:
        assert part in message, (part, message)
    return message


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
    assert len(_refusal(normalize_attribute, raw, expected)) < 700


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
    _refusal(normalize_custom, raw, expected)


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


def test_a_source_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ChartMogulValidationError, match="source contains a lone surrogate"):
        normalize_attribute({"type": "String", "key": "plan", "value": "x", "source": "air\ud83dflow"})
