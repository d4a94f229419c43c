"""Customer identifiers (``client.identifiers``): UUIDs that go into URL paths, ids in answers."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_chartmogul.client.identifiers import (
    data_source_uuids,
    external_ids,
    validate_customer_uuid,
)
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

HUGE = 10_000


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


def test_an_invalid_customer_uuid_error_ends_with_the_hint() -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        validate_customer_uuid(42, customer="record #0", hint="name the field external_id")
    assert str(exc_info.value) == (
        "record #0: value 42: customer_uuid must be a string, got int; name the field external_id"
    )


def test_a_merged_customer_has_every_external_id_and_data_source_of_its_parts() -> None:
    customer = {
        "external_id": "acct-1",
        "external_ids": ["acct-1", "acct-2", None, ""],
        "data_source_uuid": "ds_a",
        "data_source_uuids": ["ds_b"],
    }

    assert external_ids(customer) == {"acct-1", "acct-2"}
    assert data_source_uuids(customer) == {"ds_a", "ds_b"}


def test_a_customer_with_no_ids_has_none() -> None:
    assert external_ids({"external_id": None}) == set() == data_source_uuids({})
    assert external_ids({"external_ids": [42]}) == {"42"}
