"""Unit tests of the dead-letter table (``airflow_provider_chartmogul.push.dead_letter``) on a real
SQLite database: the table made when missing, one row per failure, the record kept as JSON to
replay, and no API key in any column."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.push.dead_letter import (
    create_table_sql,
    validate_table_name,
    write_dead_letters,
)
from airflow_provider_chartmogul.redaction import register_secret, secret_forms
from tests.conftest import API_KEY


def _failure(i: int = 0, **fields: Any) -> dict[str, Any]:
    failure: dict[str, Any] = {
        "customer": f"record #{i} (external_id='{i}')",
        "customer_uuid": f"cus_{i}",
        "stage": "api",
        "status": 500,
        "error": f"ChartMogul answered 500 for customer {i}",
        "record": {"external_id": str(i), "custom": [{"type": "Integer", "key": "seats", "value": i}]},
    }
    failure.update(fields)
    return failure


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite file behind the Airflow connection ``dead_letters``."""
    path = tmp_path / "dead_letter.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTERS", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def _rows(
    path: Path, sql: str = "SELECT * FROM dl ORDER BY rowid", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params)]
    finally:
        db.close()


def _write(failures: list[dict[str, Any]], *, table: str = "dl", run_id: str = "run_1") -> int:
    return write_dead_letters(
        conn_id="dead_letters", table=table, failures=failures, dag_id="my_dag", task_id="push", run_id=run_id
    )


# ---------------------------------------------------------------------------------------------
# Table names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["chartmogul_dead_letter", "ops.chartmogul_dead_letter", "_t1", "DL"])
def test_plain_and_schema_qualified_table_names_are_accepted(table: str) -> None:
    assert validate_table_name(table) == table


@pytest.mark.parametrize(
    "table",
    [
        "",
        "1table",
        "dl; DROP TABLE users",
        "dl -- comment",
        "a.b.c",
        "ops.",
        ".dl",
        'dl"',
        "dead letter",
        None,
        42,
    ],
)
def test_a_table_name_that_is_not_a_plain_identifier_is_refused(table: Any) -> None:
    with pytest.raises(ValueError) as caught:
        validate_table_name(table)

    assert str(caught.value) == (
        "dead_letter_table must be a plain table name like 'chartmogul_dead_letter' or "
        f"'ops.chartmogul_dead_letter', got {table!r}"
    )


def test_create_table_sql_refuses_a_bad_name() -> None:
    with pytest.raises(ValueError, match="plain table name"):
        create_table_sql("x); DROP TABLE y; --")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_the_table_is_created_with_the_documented_columns(db: Path) -> None:
    _write([_failure()])

    columns = _rows(db, "SELECT name, type FROM pragma_table_info('dl') ORDER BY cid")
    assert [(c["name"], c["type"]) for c in columns] == [
        ("dag_id", "VARCHAR(250)"),
        ("task_id", "VARCHAR(250)"),
        ("run_id", "VARCHAR(250)"),
        ("failed_at", "VARCHAR(40)"),
        ("customer", "TEXT"),
        ("customer_uuid", "VARCHAR(250)"),
        ("stage", "VARCHAR(20)"),
        ("status", "INTEGER"),
        ("error", "TEXT"),
        ("record", "TEXT"),
    ]


def test_each_failure_is_one_row_with_the_run_it_came_from(db: Path) -> None:
    before = dt.datetime.now(dt.timezone.utc)

    written = _write([_failure(0), _failure(1, stage="resolution", status=404, customer_uuid=None)])

    after = dt.datetime.now(dt.timezone.utc)
    assert written == 2
    rows = _rows(db)
    assert [{k: v for k, v in row.items() if k not in ("failed_at", "record")} for row in rows] == [
        {
            "dag_id": "my_dag",
            "task_id": "push",
            "run_id": "run_1",
            "customer": "record #0 (external_id='0')",
            "customer_uuid": "cus_0",
            "stage": "api",
            "status": 500,
            "error": "ChartMogul answered 500 for customer 0",
        },
        {
            "dag_id": "my_dag",
            "task_id": "push",
            "run_id": "run_1",
            "customer": "record #1 (external_id='1')",
            "customer_uuid": None,
            "stage": "resolution",
            "status": 404,
            "error": "ChartMogul answered 500 for customer 1",
        },
    ]
    for row in rows:
        failed_at = dt.datetime.fromisoformat(row["failed_at"])
        assert failed_at.utcoffset() == dt.timedelta(0)
        assert before <= failed_at <= after


def test_the_record_column_holds_json_to_replay(db: Path) -> None:
    failures = [_failure(i) for i in range(3)]

    _write(failures)

    replay = [
        json.loads(row["record"]) for row in _rows(db, "SELECT record FROM dl WHERE run_id = ?", ("run_1",))
    ]
    assert replay == [failure["record"] for failure in failures]


def test_values_json_cannot_hold_are_stored_as_text(db: Path) -> None:
    when = dt.datetime(2022, 9, 8, 10, 10, tzinfo=dt.timezone.utc)
    _write(
        [
            _failure(
                record={
                    "customer_uuid": "cus_1",
                    "custom": [{"type": "Timestamp", "key": "t", "value": when}],
                }
            )
        ]
    )

    (row,) = _rows(db)

    assert json.loads(row["record"])["custom"][0]["value"] == "2022-09-08 10:10:00+00:00"


def test_a_failure_without_record_or_error_is_stored_with_nulls(db: Path) -> None:
    _write([{"customer": "record #0", "stage": "input", "error": "", "record": None}])

    (row,) = _rows(db)

    assert row["customer"] == "record #0"
    assert row["stage"] == "input"
    assert row["error"] is None
    assert row["status"] is None
    assert row["customer_uuid"] is None
    assert row["record"] == "null"


def test_a_second_run_appends_to_the_existing_table(db: Path) -> None:
    _write([_failure(0)], run_id="run_1")

    _write([_failure(1), _failure(2)], run_id="run_2")

    assert [(row["run_id"], row["customer_uuid"]) for row in _rows(db)] == [
        ("run_1", "cus_0"),
        ("run_2", "cus_1"),
        ("run_2", "cus_2"),
    ]


def test_a_schema_qualified_table_is_written(db: Path) -> None:
    _write([_failure()], table="main.dead")

    assert [row["customer_uuid"] for row in _rows(db, "SELECT * FROM main.dead")] == ["cus_0"]


def test_more_failures_than_one_batch_are_all_written(db: Path) -> None:
    written = _write([_failure(i) for i in range(2_345)])

    assert written == 2_345
    assert _rows(db, "SELECT COUNT(*) AS n, COUNT(DISTINCT customer_uuid) AS uuids FROM dl") == [
        {"n": 2_345, "uuids": 2_345}
    ]


def test_no_failures_writes_nothing_and_needs_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONNECTION", raising=False)

    assert (
        write_dead_letters(
            conn_id="no_such_connection", table="dl", failures=[], dag_id="d", task_id="t", run_id="r"
        )
        == 0
    )


def test_a_bad_table_name_creates_nothing(db: Path) -> None:
    with pytest.raises(ValueError, match="plain table name"):
        _write([_failure()], table="dl; DROP TABLE users")

    assert not db.exists() or _rows(db, "SELECT name FROM sqlite_master") == []


def test_a_connection_that_is_not_sql_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_NOT_SQL",
        json.dumps({"conn_type": "chartmogul", "host": "http://127.0.0.1:9", "password": "unit-test-key"}),
    )

    with pytest.raises(ValueError) as caught:
        write_dead_letters(
            conn_id="not_sql", table="dl", failures=[_failure()], dag_id="d", task_id="t", run_id="r"
        )

    assert str(caught.value) == "dead_letter_conn_id 'not_sql' is not a SQL connection (ChartMogulHook)"


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------


def test_no_form_of_the_key_reaches_a_row(db: Path) -> None:
    register_secret(API_KEY)
    token = secret_forms(API_KEY)[1]
    error = (
        f"ChartMogul answered 401: No valid API key provided: {API_KEY} "
        f"(request had Authorization: Basic {token}; token {token})"
    )

    _write([_failure(error=error)])

    (row,) = _rows(db)
    assert row["error"] == (
        "ChartMogul answered 401: No valid API key provided: *** (request had Authorization: ***; token ***)"
    )
    stored = json.dumps(row)
    for secret in secret_forms(API_KEY):
        assert secret not in stored
