"""Tests of the attribute and its type names (``airflow_provider_chartmogul.attributes.attribute``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
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
)
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

UTC = dt.timezone.utc


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


def test_the_constructor_takes_the_four_fields_and_nothing_that_could_skip_the_check() -> None:
    assert list(inspect.signature(CustomAttribute).parameters) == ["type", "key", "value", "source"]
    with pytest.raises(TypeError):
        CustomAttribute("Integer", "age", "eight", _checked=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        CustomAttribute("Integer", "age", "eight", None, True)  # type: ignore[call-arg]


def test_a_caller_cannot_skip_validation_through_the_public_api() -> None:
    by_hand = CustomAttribute("Integer", "age", "eight")
    checked = normalize_attribute({"type": "Integer", "key": "age", "value": 8})
    # Neither a copy with another value nor a look-alike passes as checked.
    for unchecked in (by_hand, dataclasses.replace(checked, value="eight")):
        with pytest.raises(ChartMogulValidationError, match="not a valid Integer"):
            normalize_custom([unchecked], customer="customer_uuid=cus_1")
    with pytest.raises(ChartMogulValidationError, match="not a valid Integer"):
        normalize_custom([checked, by_hand], customer="customer_uuid=cus_1")
    # Equality ignores how an attribute was made.
    assert normalize_custom([checked]) == [checked]
    assert checked == CustomAttribute("Integer", "age", 8)


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
