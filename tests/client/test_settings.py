"""Hook and operator arguments that override a connection's extras: one range check for both."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_chartmogul.client.settings import check_override
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from tests.conftest import API_KEY


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("max_connections", 20, 20),
        ("max_connections", 1.0, 1),
        ("max_requests_per_second", 0.1, 0.1),
        ("max_requests_per_second", 25, 25.0),
        ("timeout", 2, 2.0),
        ("max_retries", 0, 0),
        ("retry_budget", None, None),
    ],
)
def test_a_value_in_range_is_cast_to_the_settings_type(name: str, value: Any, expected: Any) -> None:
    result = check_override(name, value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("max_connections", 0, "max_connections must be a whole number between 1 and 20, got 0"),
        ("max_connections", 21, "between 1 and 20, got 21"),
        ("max_connections", 3.5, "whole number"),
        ("max_connections", "4", "got '4'"),
        ("max_requests_per_second", 0.0, "max_requests_per_second must be a finite number >= 0.1"),
        ("max_requests_per_second", float("nan"), "finite number"),
        ("max_requests_per_second", True, "got True"),
        ("max_retries", -1, "max_retries must be a whole number >= 0"),
        ("timeout", 0.5, "timeout must be a finite number >= 1"),
    ],
)
def test_a_value_outside_the_forms_range_is_named(name: str, value: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_override(name, value)


def test_the_hook_refuses_a_bad_override_when_built_not_at_first_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "password": API_KEY}))
    with pytest.raises(ValueError, match="max_connections must be a whole number between 1 and 20"):
        ChartMogulHook("cm", max_connections=50)
    assert ChartMogulHook("cm", max_connections=20).max_connections == 20
