"""Checks that every type's value tests share (``test_values.py``, ``test_timestamps.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import CustomAttribute, normalize_attribute, normalize_value
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

CUSTOMER = "record #7 (email='ada@example.com')"


def check_good_value(type_: str, value: Any, expected: Any) -> None:
    result = normalize_value(type_, value)
    assert result == expected
    assert type(result) is type(expected)
    json.dumps(result)  # always a JSON value
    # Idempotent: a normalised value normalises to itself.
    assert normalize_value(type_, result) == result


def check_good_value_through_normalize_attribute(type_: str, value: Any, expected: Any) -> None:
    attribute = normalize_attribute({"type": type_, "key": "k", "value": value}, customer=CUSTOMER)
    assert attribute == CustomAttribute(type_, "k", expected)


def check_bad_value(type_: str, value: Any, rule: str) -> None:
    """Refused by normalize_value, and by normalize_attribute with the customer, the key and the rule."""
    with pytest.raises(ValueError, match="not a valid") as exc_info:
        normalize_value(type_, value)
    assert rule in str(exc_info.value)
    with pytest.raises(ChartMogulValidationError) as exc_info2:
        normalize_attribute({"type": type_, "key": "the_key", "value": value}, customer=CUSTOMER)
    message = str(exc_info2.value)
    assert CUSTOMER in message
    assert "attribute 'the_key'" in message
    assert rule in message
    assert f"not a valid {type_}" in message
    assert exc_info2.value.key == "the_key"
    assert exc_info2.value.customer == CUSTOMER
    assert exc_info2.value.value_repr is not None
    assert len(message) < 700
