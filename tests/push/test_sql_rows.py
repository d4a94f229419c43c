"""Tests of SQL rows -> records (``airflow_provider_chartmogul.push.sql_rows``)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pendulum
import pytest

from airflow_provider_chartmogul.attributes import CustomAttribute
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from airflow_provider_chartmogul.push.records import parse_record
from airflow_provider_chartmogul.push.sql_rows import (
    RejectedInput,
    check_columns,
    records_from_rows,
    validate_attribute_types,
)

UTC = dt.timezone.utc
CUS = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
HUGE = 10_000
LONG = "q" * HUGE


# ---------------------------------------------------------------------------------------------
# attribute_types and columns
# ---------------------------------------------------------------------------------------------


def test_validate_attribute_types() -> None:
    assert validate_attribute_types(None) == {}
    assert validate_attribute_types({}) == {}
    assert validate_attribute_types({"pro": "boolean", "seen": "Timestamp"}) == {
        "pro": "Boolean",
        "seen": "Timestamp",
    }


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ({"price": "Float"}, ["attribute_types", "attribute 'price'", "'Float'", "did you mean 'Decimal'"]),
        ({"price": 5}, ["attribute_types", "attribute 'price'", "type must be one of"]),
        ({"a-b": "String"}, ["attribute_types", "'a-b'", "attribute key must be"]),
        ({"email": "String"}, ["attribute_types", "'email' is an identifier column"]),
        (["price", "Decimal"], ["attribute_types", "must be a mapping"]),
    ],
)
def test_validate_attribute_types_rejects(types: Any, expected: list[str]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        validate_attribute_types(types)
    message = str(exc_info.value)
    assert message.startswith("attribute_types: ")
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("columns", "types"),
    [
        (["customer_uuid", "plan"], None),
        (["external_id", "data_source_uuid", "plan"], None),
        (["email"], None),
        (["customer_uuid", "email", "plan"], {"plan": "String"}),  # one per row is checked later
    ],
)
def test_check_columns_ok(columns: list[str], types: dict[str, str] | None) -> None:
    check_columns(columns, validate_attribute_types(types))


@pytest.mark.parametrize(
    ("columns", "types", "expected"),
    [
        (
            ["name", "plan"],
            None,
            ["SQL result has no identifier column; expected one of customer_uuid, external_id, email"],
        ),
        (["data_source_uuid", "plan"], None, ["no identifier column"]),
        (["email", "data_source_uuid"], None, ["'data_source_uuid'", "together with an 'external_id'"]),
        (["email", "plan", "plan"], None, ["column 'plan' appears more than once", "duplicate column name"]),
        (["email", "plan name"], None, ["'plan name'", "not a valid attribute key"]),
        (["email", "count(*)"], None, ["'count(*)'", "not a valid attribute key", "alias it in SQL"]),
        (["email", 3], None, ["column names must be strings", "got int"]),
        (
            ["email", "plan"],
            {"plan": "Text"},
            ["attribute_types", "attribute 'plan'", "did you mean 'String'"],
        ),
        (["email", "plan"], {"plna": "String"}, ["attribute 'plna'", "does not have"]),
        (["email", "plan"], {"email": "String"}, ["'email' is an identifier column"]),
    ],
)
def test_check_columns_rejects(columns: list[Any], types: dict[str, str] | None, expected: list[str]) -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        check_columns(columns, validate_attribute_types(types))
    message = str(exc_info.value)
    assert message.startswith(("SQL result: ", "attribute_types: "))
    for part in expected:
        assert part in message, (part, message)
    with pytest.raises(ChartMogulValidationError):
        # checked before any row is read
        records_from_rows(columns, [], attribute_types=validate_attribute_types(types))


def test_check_columns_shortens() -> None:
    with pytest.raises(ChartMogulValidationError) as exc_info:
        check_columns(["email", "-" + LONG], {})
    assert LONG not in str(exc_info.value)
    with pytest.raises(ChartMogulValidationError) as exc_info:
        check_columns([LONG, "x"], {})
    assert LONG not in str(exc_info.value)


# ---------------------------------------------------------------------------------------------
# records_from_rows
# ---------------------------------------------------------------------------------------------


def _all(columns: Sequence[str], rows: Any, **kwargs: Any) -> list[dict[str, Any] | RejectedInput]:
    return list(records_from_rows(columns, rows, **kwargs))


def test_rows_to_records_and_nulls() -> None:
    out = _all(
        ["customer_uuid", "email", "plan", "seats"],
        [(CUS, None, "pro", 3), (None, "a@b.c", None, None), ("cus_2", None, "free", None)],
    )
    assert out == [
        {
            "customer_uuid": CUS,
            "custom": [
                {"type": "String", "key": "plan", "value": "pro"},
                {"type": "Integer", "key": "seats", "value": 3},
            ],
        },
        {"email": "a@b.c", "custom": []},
        {"customer_uuid": "cus_2", "custom": [{"type": "String", "key": "plan", "value": "free"}]},
    ]
    for index, raw in enumerate(out):
        parse_record(raw, index=index)


def test_identifier_values_from_sql() -> None:
    ext = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = _all(["external_id", "data_source_uuid", "n"], [(42, "ds_1", 1), (ext, None, 2)])
    assert out[0] == {
        "external_id": "42",
        "data_source_uuid": "ds_1",
        "custom": [{"type": "Integer", "key": "n", "value": 1}],
    }
    assert out[1]["external_id"] == str(ext)  # type: ignore[index]
    assert "data_source_uuid" not in out[1]  # type: ignore[operator]
    assert parse_record(out[0], index=0).label == "external_id=42 (data_source_uuid=ds_1)"


def test_rows_are_read_lazily() -> None:
    read: list[int] = []

    def rows() -> Iterator[tuple[Any, ...]]:
        for n in range(3):
            read.append(n)
            yield (f"cus_{n}", n)
        raise RuntimeError("row source exhausted its welcome")

    stream = records_from_rows(["customer_uuid", "n"], rows())
    assert read == []  # nothing read before iteration
    first = next(stream)
    assert first == {"customer_uuid": "cus_0", "custom": [{"type": "Integer", "key": "n", "value": 0}]}
    assert read == [0]
    got = [first, next(stream), next(stream)]
    assert [r["customer_uuid"] for r in got] == ["cus_0", "cus_1", "cus_2"]  # type: ignore[index]
    with pytest.raises(RuntimeError, match="exhausted"):
        next(stream)


def test_many_rows_stream() -> None:
    rows = ((f"cus_{n}", n) for n in range(200_000))
    count = 0
    for item in records_from_rows(["customer_uuid", "n"], rows):
        assert isinstance(item, dict)
        count += 1
    assert count == 200_000


def test_start_index() -> None:
    out = _all(["email", "blob"], [("a@b.c", b"x")], start_index=100)
    assert isinstance(out[0], RejectedInput)
    assert out[0].index == 100
    assert out[0].label == "record #100 (email='a@b.c')"


@pytest.mark.parametrize(
    ("value", "type_", "sent"),
    [
        ("pro", "String", "pro"),
        (3, "Integer", 3),
        (2.5, "Decimal", 2.5),
        (Decimal("19.90"), "Decimal", 19.9),
        (True, "Boolean", True),
        (False, "Boolean", False),
        (dt.date(2022, 9, 8), "Timestamp", "2022-09-08T00:00:00+00:00"),
        (dt.datetime(2022, 9, 8, 10, 30), "Timestamp", "2022-09-08T10:30:00+00:00"),
        (dt.datetime(2022, 9, 8, 10, 30, tzinfo=UTC), "Timestamp", "2022-09-08T10:30:00+00:00"),
        (
            dt.datetime(2022, 9, 8, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "Timestamp",
            "2022-09-08T10:30:00-05:00",
        ),
        (pendulum.datetime(2022, 9, 8, 10, 30, tz="Europe/Berlin"), "Timestamp", "2022-09-08T10:30:00+02:00"),
    ],
)
def test_type_inference_psycopg2_like_values(value: Any, type_: str, sent: Any) -> None:
    """The Python types psycopg2 returns (text, int, float, numeric, bool, date, timestamp[tz])."""
    (raw,) = _all(["customer_uuid", "attr"], [(CUS, value)])
    assert raw == {"customer_uuid": CUS, "custom": [{"type": type_, "key": "attr", "value": value}]}
    record = parse_record(raw, index=0)
    assert record.custom == [CustomAttribute(type_, "attr", sent)]
    json.dumps(record.to_record())


def test_type_inference_sqlite3() -> None:
    """The Python types sqlite3 returns: str, int, float, None, bytes; booleans come back as 0/1."""
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE c (customer_uuid TEXT, plan TEXT, seats INTEGER, mrr REAL, pro BOOLEAN, "
        "since DATE, logo BLOB)"
    )
    conn.execute("INSERT INTO c VALUES ('cus_1', 'pro', 3, 49.5, 1, '2022-09-08', NULL)")
    conn.execute("INSERT INTO c VALUES ('cus_2', NULL, NULL, NULL, NULL, NULL, x'00ff')")
    cursor = conn.execute("SELECT * FROM c ORDER BY customer_uuid")
    columns = [d[0] for d in cursor.description]
    out = list(records_from_rows(columns, cursor, attribute_types={"pro": "Boolean", "since": "Timestamp"}))
    assert out[0] == {
        "customer_uuid": "cus_1",
        "custom": [
            {"type": "String", "key": "plan", "value": "pro"},
            {"type": "Integer", "key": "seats", "value": 3},
            {"type": "Decimal", "key": "mrr", "value": 49.5},
            {"type": "Boolean", "key": "pro", "value": 1},
            {"type": "Timestamp", "key": "since", "value": "2022-09-08"},
        ],
    }
    assert [(a.key, a.value) for a in parse_record(out[0], index=0).custom] == [
        ("plan", "pro"),
        ("seats", 3),
        ("mrr", 49.5),
        ("pro", True),
        ("since", "2022-09-08"),
    ]
    error = out[1]
    assert isinstance(error, RejectedInput)
    assert error.index == 1
    assert error.key == "logo"
    for part in [
        "record #1 (customer_uuid='cus_2')",
        "attribute 'logo'",
        "Python bytes value",
        "attribute_types",
    ]:
        assert part in error.message, (part, error.message)
    assert error.record == {"customer_uuid": "cus_2", "custom": []}
    conn.close()


@pytest.mark.parametrize(
    ("value", "pytype"),
    [
        (b"\x00\xff", "bytes"),
        (memoryview(b"\x00"), "memoryview"),
        ({"a": [1, 2]}, "dict"),
        ([1, 2], "list"),
        (dt.time(12, 0), "time"),
        (dt.timedelta(days=1), "timedelta"),
        (uuid.UUID(int=1), "UUID"),
    ],
)
def test_uninferable_values_become_rejected_rows(value: Any, pytype: str) -> None:
    out = _all(
        ["external_id", "plan", "odd"],
        [("a", "pro", 1), ("b", "basic", value), ("c", "free", None)],
    )
    assert isinstance(out[0], dict)
    assert isinstance(out[2], dict)  # the stream goes on
    error = out[1]
    assert isinstance(error, RejectedInput)
    assert error.label == "record #1 (external_id='b')"
    assert error.message.startswith("record #1 (external_id='b'): ")
    assert "attribute 'odd'" in error.message
    assert f"Python {pytype} value" in error.message or "not a valid Integer" in error.message
    assert isinstance(error.error, ChartMogulValidationError)
    assert str(error.error) == error.message
    # The failure entry can go into a JSON report; it keeps the attributes that were fine.
    assert json.loads(json.dumps(error.record)) == {
        "external_id": "b",
        "custom": [{"type": "String", "key": "plan", "value": "basic"}],
    }


def test_uninferable_first_value() -> None:
    out = _all(["email", "odd"], [("a@b.c", b"\x00"), ("d@e.f", "fine")])
    assert isinstance(out[0], RejectedInput)
    assert "Python bytes value" in out[0].message
    assert out[1] == {"email": "d@e.f", "custom": [{"type": "String", "key": "odd", "value": "fine"}]}


def test_rejected_row_shortens_values() -> None:
    (error,) = _all(["email", "odd"], [("a@b.c", LONG.encode())])
    assert isinstance(error, RejectedInput)
    assert LONG not in error.message
    assert len(error.message) < 700


def test_rejected_row_several_columns() -> None:
    (error,) = _all(["email", "a", "b"], [("a@b.c", b"1", {"x": 1})])
    assert isinstance(error, RejectedInput)
    assert "attribute 'a'" in error.message
    assert "attribute 'b'" in error.message
    assert error.key == "a"


def test_row_with_wrong_length() -> None:
    out = _all(["email", "plan"], [("a@b.c",), ("d@e.f", "pro")])
    assert isinstance(out[0], RejectedInput)
    assert "record #0 (email='a@b.c')" in out[0].message
    assert "row has 1 values but the SQL result has 2 columns" in out[0].message
    assert isinstance(out[1], dict)


def test_explicit_type_wins_over_inference() -> None:
    out = _all(["email", "code"], [("a@b.c", 7)], attribute_types={"code": "String"})
    assert out[0] == {"email": "a@b.c", "custom": [{"type": "String", "key": "code", "value": 7}]}
    assert parse_record(out[0], index=0).custom == [CustomAttribute("String", "code", "7")]


def test_explicit_type_mismatch_fails_in_parse_record() -> None:
    (raw,) = _all(["email", "blob"], [("a@b.c", b"x")], attribute_types={"blob": "String"})
    assert isinstance(raw, dict)
    with pytest.raises(ChartMogulValidationError, match=r"attribute 'blob'.*must be a str, got bytes"):
        parse_record(raw, index=0)


def test_inferred_type_is_kept_per_column() -> None:
    """SQLite hands 8 and 8.5 out of one NUMERIC column: the first non-NULL value fixes the type."""
    out = _all(
        ["email", "price", "code"],
        [
            ("a@b.c", None, "A"),
            ("b@b.c", 8, 5),  # price is Integer from here on; code is String (first value "A")
            ("c@b.c", 9.0, "B"),  # integral float fits Integer
            ("d@b.c", 8.5, "C"),  # does not fit
        ],
    )
    assert out[0] == {"email": "a@b.c", "custom": [{"type": "String", "key": "code", "value": "A"}]}
    assert out[1] == {
        "email": "b@b.c",
        "custom": [
            {"type": "Integer", "key": "price", "value": 8},
            {"type": "String", "key": "code", "value": 5},
        ],
    }
    assert isinstance(out[2], dict)
    assert out[2]["custom"][0] == {"type": "Integer", "key": "price", "value": 9.0}
    assert parse_record(out[2], index=2).custom[0] == CustomAttribute("Integer", "price", 9)
    error = out[3]
    assert isinstance(error, RejectedInput)
    for part in [
        "record #3 (email='d@b.c')",
        "attribute 'price'",
        "not a valid Integer",
        "inferred from its first non-NULL value, in record #1",
        "attribute_types={'price': 'Decimal'}",
    ]:
        assert part in error.message, (part, error.message)


def test_keep_nulls_makes_clears() -> None:
    out = _all(
        ["email", "plan", "seats"],
        [("a@b.c", None, 3), ("b@b.c", "pro", None)],
        attribute_types={"plan": "String"},
        keep_nulls=True,
    )
    assert out[0] == {
        "email": "a@b.c",
        "custom": [
            {"type": "String", "key": "plan", "value": None},
            {"type": "Integer", "key": "seats", "value": 3},
        ],
    }
    assert out[1] == {
        "email": "b@b.c",
        "custom": [
            {"type": "String", "key": "plan", "value": "pro"},
            {"type": "Integer", "key": "seats", "value": None},
        ],
    }
    record = parse_record(out[1], index=1, allow_clear=True)
    assert record.custom[1] == CustomAttribute("Integer", "seats", None)


def test_keep_nulls_before_type_is_known() -> None:
    out = _all(["email", "n"], [("a@b.c", None), ("b@b.c", 2.5)], keep_nulls=True)
    assert out[0] == {"email": "a@b.c", "custom": [{"type": "String", "key": "n", "value": None}]}
    # A NULL does not fix the column's type.
    assert out[1] == {"email": "b@b.c", "custom": [{"type": "Decimal", "key": "n", "value": 2.5}]}


def test_rows_can_be_any_sequence() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT 'cus_1' AS customer_uuid, 5 AS n").fetchall()
    assert _all(["customer_uuid", "n"], rows) == [
        {"customer_uuid": "cus_1", "custom": [{"type": "Integer", "key": "n", "value": 5}]}
    ]
    assert _all(["customer_uuid", "n"], [["cus_1", 5]]) == _all(["customer_uuid", "n"], [("cus_1", 5)])
    conn.close()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ((None, None, "pro"), ["record #0", "needs exactly one identifier"]),
        (("cus_1", "a@b.c", "pro"), ["record #0 (customer_uuid='cus_1', email='a@b.c')", "exactly one"]),
        (("a/b", None, "pro"), ["record #0 (customer_uuid='a/b')", "URL path"]),
        ((None, "not-an-email", "pro"), ["record #0 (email='not-an-email')", "exactly one '@'"]),
        (
            ("cus_1", None, "x" * 300),
            ["record #0 (customer_uuid='cus_1')", "attribute 'plan'", "at most 255"],
        ),
    ],
)
def test_bad_sql_rows_fail_in_parse_record(row: tuple[Any, ...], expected: list[str]) -> None:
    (raw,) = _all(["customer_uuid", "email", "plan"], [row])
    assert isinstance(raw, dict)
    with pytest.raises(ChartMogulValidationError) as exc_info:
        parse_record(raw, index=0)
    for part in expected:
        assert part in str(exc_info.value), (part, str(exc_info.value))


def test_an_integer_customer_uuid_is_refused_from_a_record_and_from_sql_alike() -> None:
    custom = [{"type": "String", "key": "plan", "value": "pro"}]
    with pytest.raises(ChartMogulValidationError) as from_record:
        parse_record({"customer_uuid": 12, "custom": custom}, index=0)
    (row,) = records_from_rows(["customer_uuid", "plan"], [(12, "pro")])
    with pytest.raises(ChartMogulValidationError) as from_sql:
        parse_record(row, index=0)
    assert str(from_record.value) == str(from_sql.value)
    message = str(from_sql.value)
    assert message.startswith("record #0 (customer_uuid=12)"), message
    assert "customer_uuid must be a string, got int" in message and "external_id" in message
    # an integer external_id stays accepted from both
    (by_external_id,) = records_from_rows(["external_id", "plan"], [(12, "pro")])
    assert parse_record(by_external_id, index=0).external_id == "12"
    assert parse_record({"external_id": 12, "custom": custom}, index=0).external_id == "12"


@pytest.mark.parametrize("nan", [float("nan"), Decimal("NaN")])
def test_a_rejected_rows_record_is_strict_json_and_a_nan_in_it_is_refused_again(nan: Any) -> None:
    columns = ["customer_uuid", "note", "logo"]
    (error,) = _all(columns, [("cus_1", nan, b"\x00")], attribute_types={"note": "String"})
    assert isinstance(error, RejectedInput) and error.key == "logo"
    (note,) = error.record["custom"]
    assert note["value"] == {"unrepresentable": repr(nan) if isinstance(nan, float) else str(nan)}
    json.dumps(error.record, allow_nan=False)
    # The text "nan" would be a valid String; the marker is refused as the NaN itself was.
    with pytest.raises(ChartMogulValidationError, match="single value"):
        parse_record(error.record, index=0)
