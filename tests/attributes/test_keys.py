"""Tests of attribute keys (``airflow_provider_chartmogul.attributes.keys``)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import validate_key
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError


@pytest.mark.parametrize("key", ["CAC", "utmCampaign", "a", "_", "a_b_1", "1abc", "A" * 300])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", " ", "a b", "a-b", "a.b", "é", "ключ", "a\n", "a/b", 5, None, b"ab"])
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(ChartMogulValidationError, match="attribute key must be") as exc_info:
        validate_key(key)
    assert repr(key) in str(exc_info.value)


@pytest.mark.parametrize("key", ["a b", "", 5])
def test_an_invalid_key_error_names_who_it_is_about_and_how_to_fix_it(key: Any) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        validate_key(key, customer="SQL result", hint="alias it in SQL")
    error = exc_info.value
    assert error.customer == "SQL result"
    assert error.value_repr == repr(key)
    assert str(error).startswith(f"SQL result: value {key!r}: attribute key must be")
    assert str(error).endswith("; alias it in SQL")


def test_a_valid_key_ignores_who_and_hint() -> None:
    assert validate_key("CAC", customer="customer_uuid=cus_1", hint="alias it in SQL") == "CAC"
