"""The dead-letter table (``airflow_provider_chartmogul.push.dead_letter``) on real SQLite and
PostgreSQL databases: the table made when missing (or given the columns a newer release added),
one row per failure with the try and map index that wrote it, the record kept as JSON to replay,
the replay query's latest try, and no API key in any column."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.push.dead_letter import (
    check_target,
    create_table_sql,
    replay_sql,
    validate_table_name,
    write_dead_letters,
)
from airflow_provider_chartmogul.redaction import register_secret, secret_forms
from tests.conftest import API_KEY
from tests.postgres import airflow_connection_json


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


def _write(
    failures: list[dict[str, Any]],
    *,
    table: str = "dl",
    run_id: str = "run_1",
    try_number: int | None = None,
    map_index: int | None = None,
    conn_id: str = "dead_letters",
) -> int:
    return write_dead_letters(
        conn_id=conn_id,
        table=table,
        failures=failures,
        dag_id="my_dag",
        task_id="push",
        run_id=run_id,
        try_number=try_number,
        map_index=map_index,
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
        ("try_number", "INTEGER"),
        ("map_index", "INTEGER"),
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
            "try_number": None,
            "map_index": None,
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
            "try_number": None,
            "map_index": None,
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


# ---------------------------------------------------------------------------------------------
# The operator's arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_id", "table", "message"),
    [
        ("db", None, "dead_letter_conn_id and dead_letter_table go together"),
        (None, "dl", "dead_letter_conn_id and dead_letter_table go together"),
        ("db", "dl; DROP TABLE x", "dead_letter_table must be a plain table name"),
    ],
)
def test_a_target_is_a_connection_and_a_plain_table_name_together(
    conn_id: str | None, table: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_target(conn_id, table)


def test_no_target_or_a_whole_one_is_accepted() -> None:
    check_target(None, None)
    check_target("db", "ops.dl")


# ---------------------------------------------------------------------------------------------
# Tries: SQLite and PostgreSQL
# ---------------------------------------------------------------------------------------------


class Database:
    """An Airflow SQL connection ``conn_id`` and a way to query it directly."""

    def __init__(self, conn_id: str, query: Any, execute: Any) -> None:
        self.conn_id, self.query, self.execute = conn_id, query, execute


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if request.param == "sqlite":
        path = tmp_path / "tries.db"
        monkeypatch.setenv("AIRFLOW_CONN_TRIES_DB", json.dumps({"conn_type": "sqlite", "host": str(path)}))

        def query(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as db:
                rows = db.execute(sql).fetchall()
            db.close()
            return rows

        def execute(sql: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql)
            db.close()

        yield Database("tries_db", query, execute)
        return
    import psycopg2

    dsn = request.getfixturevalue("postgres_dsn")
    monkeypatch.setenv("AIRFLOW_CONN_TRIES_DB", airflow_connection_json(dsn))
    db = psycopg2.connect(dsn)
    db.autocommit = True

    def pg_query(sql: str) -> list[tuple[Any, ...]]:
        with db.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def pg_execute(sql: str) -> None:
        with db.cursor() as cur:
            cur.execute(sql)

    pg_execute("DROP TABLE IF EXISTS dl_tries")
    yield Database("tries_db", pg_query, pg_execute)
    pg_execute("DROP TABLE IF EXISTS dl_tries")
    db.close()


def _replayed(database: Database, where: str = "") -> list[tuple[Any, ...]]:
    rows = database.query(
        f"SELECT d.run_id, d.map_index, d.try_number, d.customer_uuid, d.record "
        f"FROM ({replay_sql('dl_tries')}) d {where} ORDER BY d.run_id, d.map_index, d.customer_uuid"
    )
    return [(run, index, attempt, uuid, json.loads(record)) for run, index, attempt, uuid, record in rows]


def test_rows_carry_the_try_and_the_map_index_that_wrote_them(database: Database) -> None:
    _write([_failure(0)], table="dl_tries", conn_id=database.conn_id, try_number=3, map_index=7)

    assert database.query("SELECT try_number, map_index, customer_uuid FROM dl_tries") == [(3, 7, "cus_0")]


def test_replay_returns_each_record_once_from_the_latest_try_only(database: Database) -> None:
    """Try 1 failed customers 0, 1 and 2; its retry wrote 0 and 1 and failed 2 again (and 3, which
    try 1 never reached): the replay is 2 and 3, once each, never 0 or 1."""
    db = database.conn_id
    _write([_failure(0), _failure(1), _failure(2)], table="dl_tries", conn_id=db, try_number=1, map_index=-1)
    _write([_failure(2), _failure(3)], table="dl_tries", conn_id=db, try_number=2, map_index=-1)

    assert _replayed(database) == [
        ("run_1", -1, 2, "cus_2", _failure(2)["record"]),
        ("run_1", -1, 2, "cus_3", _failure(3)["record"]),
    ]


def test_each_mapped_task_instance_and_each_run_has_its_own_latest_try(database: Database) -> None:
    db = database.conn_id
    _write([_failure(0)], table="dl_tries", conn_id=db, try_number=1, map_index=0)
    _write([_failure(1)], table="dl_tries", conn_id=db, try_number=2, map_index=0)
    _write([_failure(2)], table="dl_tries", conn_id=db, try_number=1, map_index=1)  # shard 1: one try
    _write([_failure(3)], table="dl_tries", conn_id=db, try_number=4, map_index=0, run_id="run_2")

    assert [(run, index, attempt, uuid) for run, index, attempt, uuid, _ in _replayed(database)] == [
        ("run_1", 0, 2, "cus_1"),
        ("run_1", 1, 1, "cus_2"),
        ("run_2", 0, 4, "cus_3"),
    ]
    assert [row[3] for row in _replayed(database, "WHERE d.run_id = 'run_1' AND d.map_index = 0")] == [
        "cus_1"
    ]


def test_a_table_from_an_earlier_release_gets_the_new_columns_and_keeps_its_rows(database: Database) -> None:
    old_ddl = create_table_sql("dl_tries").replace(", try_number INTEGER, map_index INTEGER", "")
    assert "try_number" not in old_ddl
    database.execute(old_ddl)
    database.execute(
        "INSERT INTO dl_tries (dag_id, task_id, run_id, customer_uuid, stage, record) "
        "VALUES ('my_dag', 'push', 'run_0', 'cus_old', 'api', '{}')"
    )

    _write([_failure(5)], table="dl_tries", conn_id=database.conn_id, try_number=1, map_index=-1)

    assert database.query(
        "SELECT customer_uuid, try_number, map_index FROM dl_tries ORDER BY customer_uuid"
    ) == [
        ("cus_5", 1, -1),
        ("cus_old", None, None),
    ]
    # an old row counts as try 0 of its own task instance: replayed while no later try wrote
    assert [row[3] for row in _replayed(database)] == ["cus_old", "cus_5"] or [
        row[3] for row in _replayed(database)
    ] == ["cus_5", "cus_old"]
