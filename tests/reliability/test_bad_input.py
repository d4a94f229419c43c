"""Bad input, table-driven, end to end through the operator over real HTTP.

Each bad record is put between two good ones. It must be rejected with an error that names the
record and the field, nothing may be sent for it (checked on the server's request log by path),
and the good records of the same run must still be written. SQL results are checked the same way
on SQLite, and mistakes in the operator's arguments fail when the DAG is parsed.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.reliability._support import CUSTOM_PATH, run_operator

BAD = "cus_bad"
GOOD = ("cus_good_0", "cus_good_2")
# The label of a record for BAD, as errors start (more identifiers may follow)
BAD_LABEL = f"record #1 (customer_uuid='{BAD}'"


def _attr(type_: Any, key: Any, value: Any, **more: Any) -> dict[str, Any]:
    return {"type": type_, "key": key, "value": value, **more}


def _with(*custom: Any) -> dict[str, Any]:
    return {"customer_uuid": BAD, "custom": list(custom)}


def _plan(value: str = "x") -> dict[str, Any]:
    return _attr("String", "plan", value)


BOOLEAN_RULE = "TRUE, true, t, 1, FALSE, false, f, 0"

# (id, bad record, substrings its error must contain besides the record's label)
CASES: list[tuple[str, Any, list[str]]] = [
    # wrong types
    ("integer-word", _with(_attr("Integer", "seats", "twelve")), ["'seats'", "'twelve'", "Integer"]),
    ("integer-bool", _with(_attr("Integer", "seats", True)), ["'seats'", "Integer", "bool"]),
    ("integer-fraction", _with(_attr("Integer", "seats", 8.5)), ["'seats'", "8.5", "whole number"]),
    ("decimal-word", _with(_attr("Decimal", "mrr", "cheap")), ["'mrr'", "'cheap'", "Decimal"]),
    ("decimal-bool", _with(_attr("Decimal", "mrr", False)), ["'mrr'", "Decimal", "bool"]),
    ("value-dict", _with(_attr("String", "plan", {"a": 1})), ["'plan'", "single value", "dict"]),
    ("value-list", _with(_attr("Integer", "seats", [1, 2])), ["'seats'", "single value", "list"]),
    # String over 255
    ("string-256", _with(_plan("x" * 256)), ["'plan'", "at most 255", "got 256"]),
    ("string-nan", _with(_attr("String", "plan", float("nan"))), ["'plan'", "finite"]),
    # one length, the value's own, in the rule and in the shortened value
    ("string-300", _with(_plan("x" * 300)), ["'plan'", "got 300", "(300 chars)"]),
    ("string-lone-surrogate", _with(_plan("Ren\udce9e")), ["'plan'", "lone surrogate U+DCE9"]),
    ("source-lone-surrogate", _with(_attr("String", "plan", "x", source="\ud800")), ["source", "U+D800"]),
    # Boolean spellings
    ("boolean-yes", _with(_attr("Boolean", "pro", "yes")), ["'pro'", "'yes'", BOOLEAN_RULE]),
    ("boolean-trailing-space", _with(_attr("Boolean", "pro", "TRUE ")), ["'pro'", "'TRUE '", BOOLEAN_RULE]),
    ("boolean-True", _with(_attr("Boolean", "pro", "True")), ["'pro'", "'True'", BOOLEAN_RULE]),
    ("boolean-on", _with(_attr("Boolean", "pro", "on")), ["'pro'", "'on'", BOOLEAN_RULE]),
    ("boolean-2", _with(_attr("Boolean", "pro", 2)), ["'pro'", "value 2", BOOLEAN_RULE]),
    ("boolean-empty", _with(_attr("Boolean", "pro", "")), ["'pro'", "value ''", BOOLEAN_RULE]),
    # timestamps
    ("timestamp-invalid-date", _with(_attr("Timestamp", "since", "2022-13-45")), ["'since'", "Timestamp"]),
    ("timestamp-epoch", _with(_attr("Timestamp", "since", 1662595200)), ["'since'", "epoch seconds"]),
    ("timestamp-word", _with(_attr("Timestamp", "since", "now")), ["'since'", "'now'", "ISO 8601"]),
    ("timestamp-year", _with(_attr("Timestamp", "since", "2022")), ["'since'", "year"]),
    ("timestamp-time-only", _with(_attr("Timestamp", "since", "12:00")), ["'since'", "needs a date"]),
    ("timestamp-duration", _with(_attr("Timestamp", "since", "P1D")), ["'since'", "duration"]),
    # NaN / inf
    ("decimal-nan", _with(_attr("Decimal", "mrr", float("nan"))), ["'mrr'", "NaN or infinity"]),
    ("decimal-minus-inf", _with(_attr("Decimal", "mrr", float("-inf"))), ["'mrr'", "NaN or infinity"]),
    ("decimal-nan-string", _with(_attr("Decimal", "mrr", "NaN")), ["'mrr'", "'NaN'", "Decimal"]),
    ("decimal-infinity-string", _with(_attr("Decimal", "mrr", "Infinity")), ["'mrr'", "'Infinity'"]),
    ("decimal-too-large", _with(_attr("Decimal", "mrr", Decimal("1e400"))), ["'mrr'", "too large"]),
    ("decimal-underflow", _with(_attr("Decimal", "mrr", "1e-400")), ["'mrr'", "'1e-400'", "sent as 0"]),
    ("integer-inf", _with(_attr("Integer", "seats", float("inf"))), ["'seats'", "infinity"]),
    # huge integers
    ("integer-2**63", _with(_attr("Integer", "seats", 2**63)), ["'seats'", "signed 64-bit"]),
    ("integer-below-min", _with(_attr("Integer", "seats", -(2**63) - 1)), ["'seats'", "signed 64-bit"]),
    ("integer-25-digits", _with(_attr("Integer", "seats", "9" * 25)), ["'seats'", "signed 64-bit"]),
    # keys
    ("key-space", _with(_attr("String", "bad key", "x")), ["'bad key'", "attribute key", "' '"]),
    ("key-unicode", _with(_attr("String", "clé", "x")), ["'clé'", "attribute key", "'é'"]),
    ("key-empty", _with(_attr("String", "", "x")), ["attribute key", "empty string"]),
    ("key-dash", _with(_attr("String", "utm-source", "x")), ["'utm-source'", "attribute key"]),
    ("key-int", _with(_attr("String", 5, "x")), ["attribute key", "got int"]),
    ("key-none", _with(_attr("String", None, "x")), ["attribute key", "got NoneType"]),
    # missing or unknown attribute fields
    ("missing-type", _with({"key": "plan", "value": "x"}), ["'plan'", "missing", "'type'"]),
    ("missing-key", _with({"type": "String", "value": "x"}), ["missing", "'key'"]),
    ("missing-value", _with({"type": "String", "key": "plan"}), ["'plan'", "missing", "'value'"]),
    ("attribute-field-typo", _with({"type": "String", "key": "plan", "vaule": "x"}), ["'vaule'", "'value'"]),
    ("type-unknown", _with(_attr("Float", "mrr", 1.5)), ["'mrr'", "'Float'", "did you mean 'Decimal'"]),
    ("type-none", _with(_attr(None, "mrr", 1.5)), ["'mrr'", "type must be one of"]),
    ("source-blank", _with(_attr("String", "plan", "x", source="  ")), ["'plan'", "source"]),
    ("attribute-not-a-dict", _with("plan=x"), ["'plan=x'", "attribute must be a mapping"]),
    # duplicate keys in one record
    ("duplicate-key", _with(_plan("a"), _plan("b")), ["'plan'", "duplicate key"]),
    # custom itself
    ("custom-dict", {"customer_uuid": BAD, "custom": {"plan": "x"}}, ["field 'custom'", "got dict"]),
    ("custom-none", {"customer_uuid": BAD, "custom": None}, ["field 'custom'", "got NoneType"]),
    ("custom-missing", {"customer_uuid": BAD}, ["field 'custom' is required"]),
    # non-dict records
    ("record-string", f"customer_uuid={BAD}", ["must be a mapping", "got str"]),
    ("record-none", None, ["must be a mapping", "got NoneType"]),
    ("record-list", [BAD, []], ["must be a mapping", "got list"]),
    ("record-int", 42, ["must be a mapping", "got int"]),
    ("record-field-typo", {"customer_id": BAD, "custom": [_plan()]}, ["'customer_id'", "'customer_uuid'"]),
    # identifiers: missing, empty, path-unsafe, ambiguous
    ("uuid-empty", {"customer_uuid": "", "custom": [_plan()]}, ["customer_uuid", "non-empty"]),
    ("uuid-blank", {"customer_uuid": "   ", "custom": [_plan()]}, ["customer_uuid", "whitespace"]),
    ("uuid-slash", {"customer_uuid": "cus_1/../../ping", "custom": [_plan()]}, ["customer_uuid", "'/'"]),
    ("uuid-question", {"customer_uuid": "cus_1?x=1", "custom": [_plan()]}, ["customer_uuid", "'?'"]),
    ("uuid-hash", {"customer_uuid": "cus_1#frag", "custom": [_plan()]}, ["customer_uuid", "'#'"]),
    ("uuid-percent", {"customer_uuid": "cus_1%2F..", "custom": [_plan()]}, ["customer_uuid", "'%'"]),
    ("uuid-dotdot", {"customer_uuid": "..", "custom": [_plan()]}, ["customer_uuid", "'..'"]),
    ("uuid-control", {"customer_uuid": "cus_\x00", "custom": [_plan()]}, ["customer_uuid", "control"]),
    ("uuid-int", {"customer_uuid": 12, "custom": [_plan()]}, ["customer_uuid=12", "got int", "external_id"]),
    ("no-identifier", {"custom": [_plan()]}, ["identifier", "none given"]),
    ("two-identifiers", {"customer_uuid": BAD, "email": "a@b.c", "custom": []}, ["customer_uuid and email"]),
    ("data-source-alone", {"data_source_uuid": "ds_1", "custom": [_plan()]}, ["'data_source_uuid'"]),
    ("email-without-at", {"email": "nobody", "custom": [_plan()]}, ["'email'", "'@'"]),
    ("external-id-blank", {"external_id": " ", "custom": [_plan()]}, ["'external_id'", "non-blank"]),
    ("external-id-list", {"external_id": ["a"], "custom": [_plan()]}, ["'external_id'", "got list"]),
    ("external-id-surrogate", {"external_id": "a\ud800", "custom": [_plan()]}, ["'external_id'", "U+D800"]),
    ("email-surrogate", {"email": "\udc00@x.io", "custom": [_plan()]}, ["'email'", "U+DC00"]),
]


def _good(uuid: str) -> dict[str, Any]:
    return {"customer_uuid": uuid, "custom": [_plan("good"), _attr("Integer", "seats", 3)]}


@pytest.fixture
def server(chartmogul_conn: ChartMogulServer) -> ChartMogulServer:
    for uuid in (*GOOD, BAD):
        chartmogul_conn.add_customer(uuid=uuid)
    return chartmogul_conn


def _assert_only_good_records_sent(server: ChartMogulServer) -> None:
    assert sorted((r.method, r.path, r.status) for r in server.requests) == [
        ("POST", CUSTOM_PATH.format(uuid), 200) for uuid in GOOD
    ]
    for uuid in GOOD:
        assert server.custom_attributes(uuid) == {"plan": "good", "seats": 3}
    assert server.custom_attributes(BAD) == {}


@pytest.mark.parametrize(("record", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_record_rejected_by_name_nothing_sent_the_rest_written(
    server: ChartMogulServer, record: Any, words: list[str]
) -> None:
    report, error = run_operator(customers=[_good(GOOD[0]), record, _good(GOOD[1])], max_failures=1)
    assert error is None
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 2, 1)
    (failure,) = report["failures"]
    assert failure["stage"] == "validation"
    assert failure["status"] is None
    message = failure["error"]
    assert message.startswith("record #1"), message
    if isinstance(record, dict) and record.get("customer_uuid") == BAD:
        assert message.startswith(BAD_LABEL), message
    assert failure["customer"].startswith("record #1")
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(message) < 600
    json.dumps(report)  # the report goes to XCom
    _assert_only_good_records_sent(server)


# ---- SQL --------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(columns: str, rows: list[tuple[Any, ...]]) -> str:
        path = tmp_path / "bad.db"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE attrs ({columns})")
            db.executemany(f"INSERT INTO attrs VALUES ({','.join('?' * len(rows[0]))})", rows)
        db.close()
        monkeypatch.setenv(
            "AIRFLOW_CONN_RELIABILITY_SQL", json.dumps({"conn_type": "sqlite", "host": str(path)})
        )
        return "reliability_sql"

    return make


# (id, columns, the bad row (between two good ones), attribute_types, words)
SQL_ROW_CASES: list[tuple[str, str, tuple[Any, ...], dict[str, str], list[str]]] = [
    (
        "blob-cannot-be-typed",
        "customer_uuid TEXT, plan TEXT, payload BLOB",
        (BAD, "x", b"\x00\x01"),
        {},
        ["'payload'", "cannot infer a ChartMogul type", "bytes"],
    ),
    (
        "column-changes-type",
        "customer_uuid TEXT, plan TEXT, seats",
        (BAD, "x", "many"),
        {},
        ["'seats'", "'many'", "Integer", "record #0", "attribute_types"],
    ),
    (
        "infinite-real",
        "customer_uuid TEXT, plan TEXT, mrr REAL",
        (BAD, "x", float("inf")),
        {"mrr": "Decimal"},
        ["'mrr'", "NaN or infinity"],
    ),
    (
        "text-not-a-timestamp",
        "customer_uuid TEXT, plan TEXT, since TEXT",
        (BAD, "x", "yesterday"),
        {"since": "Timestamp"},
        ["'since'", "'yesterday'", "Timestamp"],
    ),
    (
        "integer-not-a-boolean",
        "customer_uuid TEXT, plan TEXT, pro INTEGER",
        (BAD, "x", 2),
        {"pro": "Boolean"},
        ["'pro'", "Boolean"],
    ),
    (
        "text-integer-too-large",
        "customer_uuid TEXT, plan TEXT, seats TEXT",
        (BAD, "x", "9" * 20),
        {"seats": "Integer"},
        ["'seats'", "signed 64-bit"],
    ),
    (
        "string-too-long",
        "customer_uuid TEXT, plan TEXT",
        (BAD, "y" * 300),
        {},
        ["'plan'", "at most 255"],
    ),
    (
        "null-identifier",
        "customer_uuid TEXT, plan TEXT",
        (None, "x"),
        {},
        ["record #1", "identifier", "none given"],
    ),
    (
        # the same rule as for the same value in a record (uuid-int above)
        "integer-customer-uuid",
        "customer_uuid INTEGER, plan TEXT",
        (12, "x"),
        {},
        ["record #1 (customer_uuid=12)", "customer_uuid must be a string, got int", "external_id"],
    ),
    (
        "path-unsafe-identifier",
        "customer_uuid TEXT, plan TEXT",
        ("cus_1/../../ping", "x"),
        {},
        ["customer_uuid", "'/'"],
    ),
]


def _good_row(uuid: str, width: int) -> tuple[Any, ...]:
    # plan, then NULLs: a NULL leaves the attribute alone
    return (uuid, "good", *([None] * (width - 2)))


@pytest.mark.parametrize(
    ("columns", "bad_row", "attribute_types", "words"),
    [c[1:] for c in SQL_ROW_CASES],
    ids=[c[0] for c in SQL_ROW_CASES],
)
def test_bad_sql_row_rejected_by_name_nothing_sent_the_rest_written(
    server: ChartMogulServer,
    sqlite_table: Any,
    columns: str,
    bad_row: tuple[Any, ...],
    attribute_types: dict[str, str],
    words: list[str],
) -> None:
    width = len(bad_row)
    first = _good_row(GOOD[0], width)
    if "seats" in columns and not attribute_types:
        first = (GOOD[0], "good", 3)  # the column's type is inferred from this first value
    conn_id = sqlite_table(columns, [first, bad_row, _good_row(GOOD[1], width)])
    report, error = run_operator(
        sql="SELECT * FROM attrs ORDER BY rowid",
        sql_conn_id=conn_id,
        attribute_types=attribute_types,
        max_failures=1,
    )
    assert error is None
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 2, 1), report["failures"]
    (failure,) = report["failures"]
    assert failure["stage"] == "validation"
    assert failure["error"].startswith("record #1"), failure["error"]
    for word in words:
        assert word in failure["error"], f"{word!r} not in {failure['error']!r}"
    json.dumps(report)
    requests = server.requests
    assert sorted((r.method, r.path, r.status) for r in requests) == [
        ("POST", CUSTOM_PATH.format(uuid), 200) for uuid in GOOD
    ]
    first_written = {"plan": "good", "seats": 3} if first[2:] == (3,) else {"plan": "good"}
    assert server.custom_attributes(GOOD[0]) == first_written
    assert server.custom_attributes(GOOD[1]) == {"plan": "good"}
    assert server.custom_attributes(BAD) == {}


# (id, columns, query, attribute_types, words): the result as a whole is unusable
SQL_RESULT_CASES: list[tuple[str, str, str, dict[str, str], list[str]]] = [
    ("no-identifier-column", "name TEXT, plan TEXT", "SELECT * FROM attrs", {}, ["no identifier column"]),
    (
        "column-not-a-key",
        "customer_uuid TEXT, plan TEXT",
        'SELECT customer_uuid, plan AS "plan name" FROM attrs',
        {},
        ["'plan name'", "not a valid attribute key"],
    ),
    (
        "duplicate-column",
        "customer_uuid TEXT, plan TEXT",
        "SELECT customer_uuid, plan, plan FROM attrs",
        {},
        ["'plan'", "more than once"],
    ),
    (
        "data-source-without-external-id",
        "customer_uuid TEXT, data_source_uuid TEXT",
        "SELECT * FROM attrs",
        {},
        ["'data_source_uuid'", "'external_id'"],
    ),
    (
        "attribute-types-names-a-missing-column",
        "customer_uuid TEXT, plan TEXT",
        "SELECT * FROM attrs",
        {"seats": "Integer"},
        ["'seats'", "does not have"],
    ),
]


@pytest.mark.parametrize(
    ("columns", "query", "attribute_types", "words"),
    [c[1:] for c in SQL_RESULT_CASES],
    ids=[c[0] for c in SQL_RESULT_CASES],
)
def test_unusable_sql_result_fails_before_any_request(
    server: ChartMogulServer,
    sqlite_table: Any,
    columns: str,
    query: str,
    attribute_types: dict[str, str],
    words: list[str],
) -> None:
    conn_id = sqlite_table(columns, [(GOOD[0], "good")])
    operator = AddCustomAttributesOperator(
        task_id="push", sql=query, sql_conn_id=conn_id, attribute_types=attribute_types
    )
    with pytest.raises(ChartMogulValidationError) as info:
        operator.execute(context={})
    message = str(info.value)
    assert message.startswith("SQL result"), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert server.requests == []


# (id, attribute_types, words): refused when the operator is built, i.e. when the DAG is parsed
ARGUMENT_CASES: list[tuple[str, Any, list[str]]] = [
    ("unknown-type", {"seats": "Number"}, ["attribute_types", "'seats'", "'Number'"]),
    ("near-miss-type", {"mrr": "Float"}, ["attribute_types", "'mrr'", "did you mean 'Decimal'"]),
    ("type-not-a-string", {"seats": 5}, ["attribute_types", "'seats'"]),
    ("identifier-column-typed", {"customer_uuid": "String"}, ["attribute_types", "identifier column"]),
    ("key-not-valid", {"plan name": "String"}, ["attribute_types", "'plan name'", "attribute key"]),
    ("not-a-mapping", ["seats"], ["attribute_types", "mapping"]),
]


@pytest.mark.parametrize(
    ("attribute_types", "words"), [c[1:] for c in ARGUMENT_CASES], ids=[c[0] for c in ARGUMENT_CASES]
)
def test_bad_attribute_types_fail_at_construction(attribute_types: Any, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        AddCustomAttributesOperator(
            task_id="push", sql="SELECT 1", sql_conn_id="db", attribute_types=attribute_types
        )
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
