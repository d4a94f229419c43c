"""Tests of String, Integer, Decimal and Boolean values (``attributes.values``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import (
    INTEGER_MAX,
    INTEGER_MIN,
    normalize_attribute,
    normalize_value,
)
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from tests.attributes._checks import (
    CUSTOMER,
    check_bad_value,
    check_good_value,
    check_good_value_through_normalize_attribute,
)

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
    ("Boolean", Decimal("1"), True),
    ("Boolean", Decimal("0.0"), False),
]


@pytest.mark.parametrize(("type_", "value", "expected"), GOOD_VALUES)
def test_good_values(type_: str, value: Any, expected: Any) -> None:
    check_good_value(type_, value, expected)


@pytest.mark.parametrize(("type_", "value", "expected"), GOOD_VALUES)
def test_good_values_through_normalize_attribute(type_: str, value: Any, expected: Any) -> None:
    check_good_value_through_normalize_attribute(type_, value, expected)


def test_integer_accepts_float_only_when_integral() -> None:
    assert normalize_value("Integer", 1e15) == 10**15
    with pytest.raises(ValueError, match="whole number"):
        normalize_value("Integer", 1e15 + 0.5)


# Bad values: every message names the customer, the key and the rule
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
    # Boolean
    ("Boolean", "yes", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", "TRUE ", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", " true ", "not a valid Boolean"),
    ("Boolean", "0\n", "not a valid Boolean"),
    ("Boolean", "True", "TRUE, true, t, 1, FALSE, false, f, 0"),
    ("Boolean", Decimal("2"), "not a valid Boolean"),
    ("Boolean", Decimal("NaN"), "not a valid Boolean"),
    ("Boolean", Decimal("sNaN"), "not a valid Boolean"),
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


@pytest.mark.parametrize(("type_", "value", "rule"), BAD_VALUES)
def test_bad_values(type_: str, value: Any, rule: str) -> None:
    check_bad_value(type_, value, rule)


def test_a_cut_string_and_its_rule_give_the_same_length() -> None:
    with pytest.raises(ChartMogulValidationError) as info:
        normalize_attribute({"type": "String", "key": "plan", "value": "x" * 300}, customer=CUSTOMER)
    message = str(info.value)
    assert "got 300" in message and "(300 chars)" in message, message


@pytest.mark.parametrize(("value", "sent"), [("0e-400", 0.0), ("1e-300", 1e-300), (Decimal("0E-500"), 0.0)])
def test_decimal_zero_and_small_values_are_kept(value: Any, sent: float) -> None:
    assert normalize_value("Decimal", value) == sent
