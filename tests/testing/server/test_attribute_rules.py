"""The server's own reading of the type rules: values, types and keys over HTTP; type inference."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.testing.server.attribute_rules import AttributeValidationError, infer_type
from tests.testing.server._support import SEED_UUID, custom_path, post_attr

VALID_VALUES: list[tuple[str, Any, Any]] = [
    ("String", "Facebook", "Facebook"),
    ("String", "social media 1", "social media 1"),
    ("String", "x" * 255, "x" * 255),
    ("String", "", ""),
    ("Integer", 8, 8),
    ("Integer", "42", 42),
    ("Integer", "-3", -3),
    ("Integer", 0, 0),
    ("Decimal", 1.5, 1.5),
    ("Decimal", 3, 3.0),
    ("Decimal", "2.25", 2.25),
    ("Decimal", "-1e3", -1000.0),
    ("Timestamp", "2016-01-31T00:00:00Z", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2016-01-31 00:00:00 UTC", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2016-01-31T02:30:00+02:00", "2016-01-31T00:30:00.000Z"),
    ("Timestamp", "2016-01-31", "2016-01-31T00:00:00.000Z"),
    ("Timestamp", "2022-09-08T10:11:12.345678Z", "2022-09-08T10:11:12.345Z"),
    ("Timestamp", "2022-09-08 00:00:00", "2022-09-08T00:00:00.000Z"),
    *[("Boolean", text, True) for text in ("TRUE", "true", "t", "1")],
    *[("Boolean", text, False) for text in ("FALSE", "false", "f", "0")],
    ("Boolean", True, True),
    ("Boolean", False, False),
    ("Boolean", 1, True),
    ("Boolean", 0, False),
]


@pytest.mark.parametrize(("type_", "value", "stored"), VALID_VALUES)
def test_valid_values(
    server: ChartMogulServer, api: requests.Session, type_: str, value: Any, stored: Any
) -> None:
    server.add_customer(uuid=SEED_UUID)
    response = post_attr(api, server, type_, "attr_1", value)
    assert response.status_code == 200, response.text
    got = response.json()["custom"]["attr_1"]
    assert got == stored and type(got) is type(stored)
    assert server.definitions == {"attr_1": type_}


INVALID_VALUES: list[tuple[str, Any]] = [
    ("String", "x" * 256),
    ("String", 5),
    ("String", True),
    ("String", None),
    ("Integer", "abc"),
    ("Integer", 8.5),
    ("Integer", 8.0),
    ("Integer", "8.0"),
    ("Integer", ""),
    ("Integer", True),
    ("Decimal", "abc"),
    ("Decimal", "1,5"),
    ("Decimal", False),
    ("Decimal", None),
    ("Timestamp", "yesterday"),
    ("Timestamp", "2016-13-01"),
    ("Timestamp", 1454198400),
    ("Timestamp", ""),
    ("Boolean", "yes"),
    ("Boolean", "True"),
    ("Boolean", 2),
    ("Boolean", None),
    ("string", "lower-case type name"),
    ("Float", 1.5),
]


@pytest.mark.parametrize(("type_", "value"), INVALID_VALUES)
def test_invalid_values_rejected_whole(
    server: ChartMogulServer, api: requests.Session, type_: str, value: Any
) -> None:
    server.add_customer(uuid=SEED_UUID)
    body = {
        "custom": [
            {"type": "String", "key": "fine", "value": "ok"},
            {"type": type_, "key": "bad", "value": value},
        ]
    }
    response = api.post(custom_path(server), json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert set(error) == {"code", "message", "param"}
    assert error["code"] == 422 and error["param"] == "bad" and "bad" in error["message"]
    assert server.custom_attributes(SEED_UUID) == {}
    assert server.definitions == {}


@pytest.mark.parametrize("key", ["bad-key", "has space", "", "ключ", None, 7])
def test_invalid_keys(server: ChartMogulServer, api: requests.Session, key: Any) -> None:
    server.add_customer(uuid=SEED_UUID)
    response = post_attr(api, server, "String", key, "v")
    assert response.status_code == 422
    assert response.json()["code"] == 422
    assert server.definitions == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "Boolean"),  # bool before int: True is an int too
        (0, "Integer"),
        (2.5, "Decimal"),
        (datetime(2016, 1, 31, tzinfo=timezone.utc), "Timestamp"),
        ("x", "String"),
    ],
)
def test_infer_type_of_seeded_values(value: Any, expected: str) -> None:
    assert infer_type(value) == expected


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"x"])
def test_infer_type_refuses_other_values(value: Any) -> None:
    with pytest.raises(AttributeValidationError, match="Cannot infer"):
        infer_type(value)


def test_seeded_customer_defines_inferred_types(server: ChartMogulServer) -> None:
    moment = datetime(2016, 1, 31, 12, tzinfo=timezone.utc)
    server.add_customer(custom={"pro": True, "seats": 3, "share": 0.5, "since": moment, "plan": "team"})
    assert server.definitions == {
        "pro": "Boolean",
        "seats": "Integer",
        "share": "Decimal",
        "since": "Timestamp",
        "plan": "String",
    }
