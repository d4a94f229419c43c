"""Tests of customer records (``airflow_provider_chartmogul.push.records``)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import CustomAttribute
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from airflow_provider_chartmogul.push.records import (
    IDENTIFIER_FIELDS,
    CustomerRecord,
    describe_record,
    parse_record,
)

CUS = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
HUGE = 10_000
LONG = "q" * HUGE
_SEATS = {"type": "Integer", "key": "seats", "value": 3}


def _custom(value: Any = "Facebook") -> list[dict[str, Any]]:
    return [{"type": "String", "key": "channel", "value": value}]


def test_identifier_fields() -> None:
    assert IDENTIFIER_FIELDS == ("customer_uuid", "external_id", "data_source_uuid", "email")


# ---------------------------------------------------------------------------------------------
# parse_record: good records
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fields", "label"),
    [
        ({"customer_uuid": CUS, "custom": _custom()}, {"customer_uuid": CUS}, f"customer_uuid={CUS}"),
        ({"external_id": "X-1", "custom": _custom()}, {"external_id": "X-1"}, "external_id=X-1"),
        ({"external_id": 42, "custom": _custom()}, {"external_id": "42"}, "external_id=42"),
        (
            {"external_id": "X", "data_source_uuid": "ds_1", "custom": _custom()},
            {"external_id": "X", "data_source_uuid": "ds_1"},
            "external_id=X (data_source_uuid=ds_1)",
        ),
        ({"email": "a@b.c", "custom": _custom()}, {"email": "a@b.c"}, "email=a@b.c"),
        ({"email": "a+b@localhost", "custom": _custom()}, {"email": "a+b@localhost"}, "email=a+b@localhost"),
        # None counts as "not given"
        (
            {"customer_uuid": None, "email": "a@b.c", "data_source_uuid": None, "custom": _custom()},
            {"email": "a@b.c"},
            "email=a@b.c",
        ),
        # failure entries of our own report fed back as records
        (
            {
                "customer_uuid": CUS,
                "custom": _custom(),
                "error": "HTTP 500",
                "status": "failed",
                "stage": "api",
            },
            {"customer_uuid": CUS},
            f"customer_uuid={CUS}",
        ),
    ],
)
def test_parse_good_records(raw: dict[str, Any], fields: dict[str, str], label: str) -> None:
    record = parse_record(raw, index=3)
    assert record.index == 3
    for name in IDENTIFIER_FIELDS:
        assert getattr(record, name) == fields.get(name)
    assert record.custom == [CustomAttribute("String", "channel", "Facebook")]
    assert record.label == label


def test_parse_record_empty_custom_is_valid() -> None:
    assert parse_record({"email": "a@b.c", "custom": []}, index=0).custom == []


def test_parse_record_default_source_and_clear() -> None:
    raw = {"email": "a@b.c", "custom": [{"type": "Integer", "key": "age", "value": None}]}
    record = parse_record(raw, index=0, default_source="airflow", allow_clear=True)
    assert record.custom == [CustomAttribute("Integer", "age", None, "airflow")]
    # Without clears, None is no value, like a SQL NULL: the attribute is left out.
    assert parse_record(raw, index=0).custom == []
    both = {"email": "a@b.c", "custom": [{"type": "Integer", "key": "age", "value": None}, {**_SEATS}]}
    assert [a.key for a in parse_record(both, index=0).custom] == ["seats"]
    with pytest.raises(ChartMogulValidationError, match="'Float'"):
        parse_record({"email": "a@b.c", "custom": [{"type": "Float", "key": "age", "value": None}]}, index=0)


def test_to_record_is_json_and_replayable() -> None:
    raw = {
        "external_id": 42,
        "data_source_uuid": "ds_1",
        "custom": [
            {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
            {"type": "Integer", "key": "age", "value": "8"},
            {"type": "Timestamp", "key": "seen", "value": dt.datetime(2022, 9, 8, 10)},
            {"type": "Decimal", "key": "CAC", "value": Decimal("213.50")},
            {"type": "Boolean", "key": "pro", "value": "f"},
        ],
    }
    record = parse_record(raw, index=5)
    out = record.to_record()
    assert json.dumps(out) == json.dumps(
        {
            "external_id": "42",
            "data_source_uuid": "ds_1",
            "custom": [
                {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
                {"type": "Integer", "key": "age", "value": 8},
                {"type": "Timestamp", "key": "seen", "value": "2022-09-08T10:00:00+00:00"},
                {"type": "Decimal", "key": "CAC", "value": 213.5},
                {"type": "Boolean", "key": "pro", "value": False},
            ],
        }
    )
    again = parse_record(json.loads(json.dumps(out)), index=5)
    assert again == record


def test_to_record_only_set_identifiers() -> None:
    record = CustomerRecord(0, CUS, None, None, None, [])
    assert record.to_record() == {"customer_uuid": CUS, "custom": []}


def test_label_is_shortened() -> None:
    record = parse_record({"external_id": LONG, "custom": []}, index=0)
    assert LONG not in record.label
    assert len(record.label) < 100


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"external_id": "x", "custom": []}, "record #3 (external_id='x')"),
        ({"external_id": 42}, "record #3 (external_id=42)"),
        (
            {"external_id": "x", "data_source_uuid": "ds"},
            "record #3 (external_id='x', data_source_uuid='ds')",
        ),
        ({"customer_uuid": "c", "email": "e"}, "record #3 (customer_uuid='c', email='e')"),
        ({"customer_uuid": None, "custom": []}, "record #3"),
        ({}, "record #3"),
        ([1, 2], "record #3"),
        (None, "record #3"),
    ],
)
def test_describe_record(raw: Any, expected: str) -> None:
    assert describe_record(raw, 3) == expected


def test_describe_record_shortens() -> None:
    assert LONG not in describe_record({"email": LONG}, 1)


# ---------------------------------------------------------------------------------------------
# parse_record: bad records. Every message names the record, the field/key and the rule.
# ---------------------------------------------------------------------------------------------

BAD_RECORDS: list[tuple[Any, str, list[str]]] = [
    # (raw, label the message starts with, other substrings)
    ([{"email": "a@b.c"}], "record #3", ["must be a mapping", "got list"]),
    ("a@b.c", "record #3", ["must be a mapping", "got str"]),
    (None, "record #3", ["must be a mapping", "got NoneType"]),
    (5, "record #3", ["must be a mapping", "got int"]),
    (
        {"email": "a@b.c", "custom": {"channel": "x"}},
        "record #3 (email='a@b.c')",
        ["field 'custom' must be a list", "got dict"],
    ),
    ({"email": "a@b.c", "custom": "x"}, "record #3 (email='a@b.c')", ["field 'custom' must be a list"]),
    ({"email": "a@b.c", "custom": None}, "record #3 (email='a@b.c')", ["field 'custom' must be a list"]),
    ({"email": "a@b.c"}, "record #3 (email='a@b.c')", ["field 'custom' is required"]),
    (
        {"customer_uuid": CUS, "email": "a@b.c", "custom": []},
        "record #3 (customer_uuid=",
        ["exactly one identifier", "customer_uuid and email"],
    ),
    (
        {"external_id": "x", "email": "a@b.c", "custom": []},
        "record #3 (external_id='x', email='a@b.c')",
        ["exactly one identifier", "external_id and email"],
    ),
    (
        {"custom": []},
        "record #3",
        ["needs exactly one identifier", "customer_uuid, external_id", "none given"],
    ),
    (
        {"customer_uuid": None, "custom": []},
        "record #3",
        ["needs exactly one identifier", "none given"],
    ),
    (
        {"data_source_uuid": "ds_1", "custom": []},
        "record #3 (data_source_uuid='ds_1')",
        ["field 'data_source_uuid'", "only allowed together with 'external_id'"],
    ),
    (
        {"email": "a@b.c", "data_source_uuid": "ds_1", "custom": []},
        "record #3 (data_source_uuid='ds_1', email='a@b.c')",
        ["field 'data_source_uuid'", "only allowed together with 'external_id'", "not with email"],
    ),
    (
        {"external_id": "x", "data_source_uuid": "", "custom": []},
        "record #3 (external_id='x', data_source_uuid='')",
        ["field 'data_source_uuid'", "non-empty string without whitespace"],
    ),
    (
        {"external_id": "x", "data_source_uuid": "ds 1", "custom": []},
        "record #3 (external_id='x'",
        ["field 'data_source_uuid'", "without whitespace"],
    ),
    (
        {"external_id": "x", "data_source_uuid": 5, "custom": []},
        "record #3 (external_id='x'",
        ["field 'data_source_uuid' must be a string", "got int"],
    ),
    ({"email": "abc", "custom": []}, "record #3 (email='abc')", ["field 'email'", "exactly one '@'"]),
    ({"email": "@b.c", "custom": []}, "record #3 (email='@b.c')", ["field 'email'", "text on both sides"]),
    ({"email": "a@", "custom": []}, "record #3 (email='a@')", ["field 'email'", "exactly one '@'"]),
    ({"email": "a@b@c", "custom": []}, "record #3 (email='a@b@c')", ["field 'email'", "exactly one '@'"]),
    ({"email": "", "custom": []}, "record #3 (email='')", ["field 'email'", "exactly one '@'"]),
    ({"email": 5, "custom": []}, "record #3 (email=5)", ["field 'email' must be a string", "got int"]),
    (
        {"customer_uuid": "", "custom": []},
        "record #3 (customer_uuid='')",
        ["customer_uuid must be a non-empty"],
    ),
    (
        {"customer_uuid": " ", "custom": []},
        "record #3 (customer_uuid=' ')",
        ["customer_uuid must be", "whitespace"],
    ),
    (
        {"customer_uuid": "a/b", "custom": []},
        "record #3 (customer_uuid='a/b')",
        ["customer_uuid", "URL path"],
    ),
    ({"customer_uuid": "a\\b", "custom": []}, "record #3 (customer_uuid=", ["customer_uuid", "URL path"]),
    (
        {"customer_uuid": "..", "custom": []},
        "record #3 (customer_uuid='..')",
        ["customer_uuid", "'.' or '..'"],
    ),
    ({"customer_uuid": ".", "custom": []}, "record #3 (customer_uuid='.')", ["customer_uuid", "'.' or '..'"]),
    (
        {"customer_uuid": "cus_1?x", "custom": []},
        "record #3 (customer_uuid='cus_1?x')",
        ["customer_uuid", "'?'"],
    ),
    (
        {"customer_uuid": "cus_1#x", "custom": []},
        "record #3 (customer_uuid='cus_1#x')",
        ["customer_uuid", "'#'"],
    ),
    (
        {"customer_uuid": "cus%2F1", "custom": []},
        "record #3 (customer_uuid='cus%2F1')",
        ["customer_uuid", "'%'"],
    ),
    ({"customer_uuid": 5, "custom": []}, "record #3 (customer_uuid=5)", ["customer_uuid must be a string"]),
    ({"external_id": "", "custom": []}, "record #3 (external_id='')", ["field 'external_id'", "non-empty"]),
    (
        {"external_id": "  ", "custom": []},
        "record #3 (external_id='  ')",
        ["field 'external_id'", "non-blank"],
    ),
    (
        {"external_id": True, "custom": []},
        "record #3 (external_id=True)",
        ["field 'external_id' must be a string"],
    ),
    ({"external_id": 4.5, "custom": []}, "record #3 (external_id=4.5)", ["field 'external_id'", "got float"]),
    (
        {"external_id": ["x"], "custom": []},
        "record #3 (external_id=['x'])",
        ["field 'external_id'", "got list"],
    ),
    (
        {"emial": "a@b.c", "custom": []},
        "record #3",
        ["unknown record field 'emial'", "did you mean 'email'"],
    ),
    (
        {"customer_id": CUS, "custom": []},
        "record #3",
        ["unknown record field 'customer_id'", "did you mean 'customer_uuid'"],
    ),
    (
        {"email": "a@b.c", "custom": [], "attributes": {}},
        "record #3 (email='a@b.c')",
        ["unknown record field 'attributes'", "allowed: customer_uuid"],
    ),
    # attribute errors inside a record carry the record's label
    (
        {"external_id": "abc", "custom": [{"type": "Integer", "key": "age", "value": "eight"}]},
        "record #3 (external_id='abc')",
        ["attribute 'age'", "value 'eight'", "not a valid Integer"],
    ),
    (
        {"external_id": "abc", "custom": [{"type": "Float", "key": "p", "value": 1.5}]},
        "record #3 (external_id='abc')",
        ["attribute 'p'", "did you mean 'Decimal'"],
    ),
    (
        {"email": "a@b.c", "custom": [{"type": "String", "key": "k", "value": "x" * 256}]},
        "record #3 (email='a@b.c')",
        ["attribute 'k'", "at most 255 characters"],
    ),
    (
        {"email": "a@b.c", "custom": [{"type": "String", "key": "a b", "value": "x"}]},
        "record #3 (email='a@b.c')",
        ["'a b'", "attribute key must be"],
    ),
    (
        {"email": "a@b.c", "custom": _custom() + _custom("Twitter")},
        "record #3 (email='a@b.c')",
        ["attribute 'channel'", "duplicate key"],
    ),
    (
        {"email": "a@b.c", "custom": [{"type": "Boolean", "key": "pro", "value": "yes"}]},
        "record #3 (email='a@b.c')",
        ["attribute 'pro'", "TRUE, true, t, 1, FALSE, false, f, 0"],
    ),
    (
        {"email": "a@b.c", "custom": [{"type": "Timestamp", "key": "at", "value": "2022-13-45"}]},
        "record #3 (email='a@b.c')",
        ["attribute 'at'", "not a valid Timestamp"],
    ),
    (
        {"email": "a@b.c", "custom": [{"type": "String", "key": "k", "vaule": "x"}]},
        "record #3 (email='a@b.c')",
        ["attribute 'k'", "unknown attribute field 'vaule'"],
    ),
]


@pytest.mark.parametrize(("raw", "label", "expected"), BAD_RECORDS)
def test_bad_records(raw: Any, label: str, expected: list[str]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        parse_record(raw, index=3)
    message = str(exc_info.value)
    assert message.startswith(label), message
    assert exc_info.value.customer == describe_record(raw, 3)
    for part in expected:
        assert part in message, (part, message)
    assert len(message) < 700


@pytest.mark.parametrize(
    "raw",
    [
        [LONG],
        LONG,
        {"email": LONG, "custom": []},
        {"email": "a@b.c", "custom": LONG},
        {"email": "a@b.c", "custom": [], LONG: 1},
        {"email": "a@b.c", "custom": [], "extra": LONG},
        {"customer_uuid": "/" + LONG, "custom": []},
        {"external_id": LONG, "data_source_uuid": " " + LONG, "custom": []},
        {"external_id": LONG, "custom": [{"type": "String", "key": "k", "value": LONG}]},
        {"external_id": LONG, "email": LONG, "custom": []},
    ],
)
def test_bad_records_are_shortened(raw: Any) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        parse_record(raw, index=0)
    message = str(exc_info.value)
    assert LONG not in message
    assert len(message) < 700


@pytest.mark.parametrize("field", ["external_id", "email"])
def test_an_identifier_with_a_lone_surrogate_is_refused(field: str) -> None:
    value = "ab\udc80@example.com"
    with pytest.raises(ChartMogulValidationError) as info:
        parse_record({field: value, "custom": []}, index=3)
    message = str(info.value)
    assert message.startswith("record #3") and f"field {field!r}" in message
    assert "lone surrogate U+DC80" in message


# ---- checked once, where a record enters the run -------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, counts: dict[str, int]) -> None:
    real = getattr(module, name)
    label = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
    counts[label] = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[label] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


@pytest.mark.parametrize("mode", ["sync", "mirror"])  # a mirror reads its input before the first write
@pytest.mark.parametrize("identifier", ["customer_uuid", "external_id"])
def test_a_pushed_record_is_checked_once_on_its_way_to_chartmogul(
    chartmogul_conn: Any, monkeypatch: pytest.MonkeyPatch, identifier: str, mode: str
) -> None:
    from airflow_provider_chartmogul.attributes import normalize
    from airflow_provider_chartmogul.hooks import chartmogul as hook_module
    from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
    from airflow_provider_chartmogul.push import records, resolve

    customers = chartmogul_conn.add_customers([{"external_id": f"e{i}"} for i in range(6)])
    counts: dict[str, int] = {}
    _counting(monkeypatch, normalize, "normalize_for_type", counts)
    for module in (records, resolve, hook_module):
        _counting(monkeypatch, module, "validate_customer_uuid", counts)
    wanted = [
        {
            identifier: customer["uuid"] if identifier == "customer_uuid" else customer["external_id"],
            "custom": [_SEATS, {"type": "String", "key": "channel", "value": "Ads"}],
        }
        for customer in customers
    ]

    report = AddCustomAttributesOperator(
        task_id="push", customers=wanted, mode=mode, customer_lookup="listing"
    ).execute(context={})

    assert report["succeeded"] == 6
    assert all(
        chartmogul_conn.custom_attributes(c["uuid"]) == {"seats": 3, "channel": "Ads"} for c in customers
    )
    # Each attribute is normalised once; each uuid is checked once: the record's own when it is
    # read, or the one ChartMogul answered when the record's customer is picked; the hook
    # checks nothing the run already checked.
    by_uuid = identifier == "customer_uuid"
    assert counts == {
        "normalize.normalize_for_type": 12,
        "records.validate_customer_uuid": 6 if by_uuid else 0,
        "resolve.validate_customer_uuid": 0 if by_uuid else 6,
        "chartmogul.validate_customer_uuid": 0,
    }
