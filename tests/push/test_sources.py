"""Unit tests of where records come from (``airflow_provider_chartmogul.push.sources``): the value
handed to the operator in its many forms, and the rows of a query on a real SQLite database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import ChartMogulSourceError, ChartMogulValidationError
from airflow_provider_chartmogul.push.report import Outcome, RunReport
from airflow_provider_chartmogul.push.sources import RejectedInput, iter_customer_input, iter_sql_records
from airflow_provider_chartmogul.push.sql_rows import validate_attribute_types
from airflow_provider_chartmogul.redaction import register_secret, secret_forms
from airflow_provider_chartmogul.version_compat import AirflowException, literal
from tests.conftest import API_KEY

RECORDS = [
    {"customer_uuid": "cus_1", "custom": [{"type": "String", "key": "plan", "value": "pro"}]},
    {"external_id": "42", "custom": [{"type": "Boolean", "key": "trial", "value": True}]},
    {"email": "a@example.com", "custom": [{"type": "Integer", "key": "seats", "value": None}]},
]


def _broken(items: list[Any], exc: Exception) -> Iterator[Any]:
    yield from items
    raise exc


# ---------------------------------------------------------------------------------------------
# iter_customer_input: good inputs
# ---------------------------------------------------------------------------------------------


def test_a_list_of_records_is_used_as_given() -> None:
    assert list(iter_customer_input(RECORDS)) == RECORDS


def test_a_tuple_of_records_is_used_as_given() -> None:
    assert list(iter_customer_input(tuple(RECORDS))) == RECORDS


@pytest.mark.parametrize("encode", [str, str.encode], ids=["str", "bytes"])
def test_a_json_string_of_records_is_decoded(encode: Callable[[str], Any]) -> None:
    assert list(iter_customer_input(encode(json.dumps(RECORDS)))) == RECORDS


def test_a_python_literal_string_is_read_as_jinja_renders_a_list() -> None:
    # Without render_template_as_native_obj, "{{ ti.xcom_pull(...) }}" renders a list as its repr.
    rendered = f"  {RECORDS!r}\n"
    assert "True" in rendered and "None" in rendered  # not JSON

    assert list(iter_customer_input(rendered)) == RECORDS


def test_one_record_on_its_own_is_a_list_of_one() -> None:
    assert list(iter_customer_input(RECORDS[0])) == [RECORDS[0]]
    assert list(iter_customer_input(json.dumps(RECORDS[1]))) == [RECORDS[1]]


@pytest.mark.parametrize("value", [RECORDS, json.dumps(RECORDS)], ids=["list", "json"])
def test_a_literal_value_is_unwrapped(value: Any) -> None:
    assert list(iter_customer_input(literal(value))) == RECORDS


def test_any_iterable_is_read_lazily() -> None:
    pulled: list[int] = []

    def upstream() -> Iterator[dict[str, Any]]:
        for i, record in enumerate(RECORDS):
            pulled.append(i)
            yield record

    records = iter(iter_customer_input(upstream()))

    assert pulled == []
    assert next(records) == RECORDS[0]
    assert pulled == [0]
    assert list(records) == RECORDS[1:]


def test_an_empty_list_has_no_records() -> None:
    assert list(iter_customer_input([])) == []
    assert list(iter_customer_input("[]")) == []


# ---------------------------------------------------------------------------------------------
# iter_customer_input: replaying a previous run's report
# ---------------------------------------------------------------------------------------------


def _report() -> dict[str, Any]:
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome("succeeded", "customer_uuid=cus_1", RECORDS[0], customer_uuid="cus_1"))
    report.add(Outcome.failure("api", "external_id=42", RECORDS[1], "Internal error", http_status=500))
    report.add(Outcome.failure("resolution", "email=a@example.com", RECORDS[2], "no customer"))
    return report.as_dict()


def test_a_report_replays_only_its_failed_records() -> None:
    assert list(iter_customer_input(_report())) == [RECORDS[1], RECORDS[2]]


def test_a_report_pulled_from_xcom_as_json_replays_its_failed_records() -> None:
    assert list(iter_customer_input(json.dumps(_report()))) == [RECORDS[1], RECORDS[2]]


def test_a_report_without_failures_replays_nothing() -> None:
    report = RunReport(mode="sync", dry_run=False)
    report.add(Outcome("succeeded", "customer_uuid=cus_1", RECORDS[0]))

    assert list(iter_customer_input(report.as_dict())) == []


def test_a_mapping_with_failures_but_no_total_is_a_record_not_a_report() -> None:
    odd = {"failures": [], "customer_uuid": "cus_1"}

    assert list(iter_customer_input(odd)) == [odd]


# ---------------------------------------------------------------------------------------------
# iter_customer_input: bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "null"], ids=["None", "json-null"])
def test_none_is_refused_as_nothing_handed_over(value: Any) -> None:
    with pytest.raises(
        ChartMogulSourceError, match=r"^customers is None: nothing was handed to the operator$"
    ):
        iter_customer_input(value)


@pytest.mark.parametrize(("value", "name"), [(5, "int"), ("5", "int"), (2.5, "float"), ("true", "bool")])
def test_a_single_value_is_refused_with_its_type(value: Any, name: str) -> None:
    with pytest.raises(ChartMogulSourceError) as caught:
        iter_customer_input(value)

    assert str(caught.value) == f"customers must be a list of records, got {name}"


@pytest.mark.parametrize("text", ["not a list", "", "[{'a': 1}", "{{ ti.xcom_pull('x') }}"])
def test_a_string_that_is_no_data_is_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ChartMogulSourceError) as caught:
        iter_customer_input(text)

    message = str(caught.value)
    assert message.startswith(f"customers is a string that is neither JSON nor a Python literal: {text!r}")
    assert "render_template_as_native_obj=True" in message


def test_a_long_bad_string_is_quoted_only_in_part() -> None:
    text = "x" * 80 + "TAIL_NOT_SHOWN" * 100

    with pytest.raises(ChartMogulSourceError) as caught:
        iter_customer_input(text)

    assert repr("x" * 80) in str(caught.value)
    assert "TAIL_NOT_SHOWN" not in str(caught.value)


def test_double_encoded_json_is_refused_not_read_character_by_character() -> None:
    double = json.dumps(json.dumps(RECORDS))

    with pytest.raises(ChartMogulSourceError):
        list(iter_customer_input(double))


def test_input_nested_too_deep_to_parse_is_refused_as_a_source_error() -> None:
    with pytest.raises(ChartMogulSourceError, match="neither JSON nor a Python literal"):
        iter_customer_input("[" * 100_000)


def test_bytes_that_are_not_text_are_refused_as_a_source_error() -> None:
    with pytest.raises(ChartMogulSourceError):
        iter_customer_input(b"\xff\xfe[]")


# ---------------------------------------------------------------------------------------------
# iter_customer_input: an input that breaks while it is read
# ---------------------------------------------------------------------------------------------


def test_an_input_that_breaks_ends_with_one_input_error_after_what_was_read() -> None:
    items = list(iter_customer_input(_broken(RECORDS[:2], RuntimeError("upstream went away"))))

    assert items[:2] == RECORDS[:2]
    assert len(items) == 3
    error = items[2]
    assert isinstance(error, RejectedInput)
    assert (error.index, error.label, error.stage) == (2, "record #2", "input")
    assert error.message == (
        "record #2: reading customers failed here with RuntimeError: upstream went away; records #0 "
        "to #1 were read and are reported, and whatever came after was never read. Fix the source "
        "and re-run (re-running is safe)"
    )
    assert isinstance(error.error, ChartMogulValidationError)


def test_an_input_that_breaks_at_once_says_no_record_was_read() -> None:
    items = list(iter_customer_input(_broken([], OSError("disk gone"))))

    assert len(items) == 1
    assert items[0].index == 0
    assert "failed here with OSError: disk gone; no record was read" in items[0].message


def test_an_airflow_exception_from_the_input_stops_the_task() -> None:
    records = iter(iter_customer_input(_broken(RECORDS[:1], AirflowException("task timed out"))))

    assert next(records) == RECORDS[0]
    with pytest.raises(AirflowException, match="task timed out"):
        next(records)


def test_the_key_in_a_broken_input_error_is_scrubbed() -> None:
    register_secret(API_KEY)

    items = list(iter_customer_input(_broken([], RuntimeError(f"auth failed for {API_KEY}"))))

    for secret in secret_forms(API_KEY):
        assert secret not in items[0].message
        assert secret not in str(items[0].error)
    assert "auth failed for ***" in items[0].message


# ---------------------------------------------------------------------------------------------
# iter_sql_records on SQLite
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Make a SQLite database with one table ``attrs`` and the Airflow connection ``unit_sql`` to it."""

    def make(columns: str, rows: list[tuple[Any, ...]]) -> str:
        path = tmp_path / "source.db"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE attrs ({columns})")
            if rows:
                db.executemany(f"INSERT INTO attrs VALUES ({','.join('?' * len(rows[0]))})", rows)
        db.close()
        monkeypatch.setenv("AIRFLOW_CONN_UNIT_SQL", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        return "unit_sql"

    return make


def _sql(sql: str, *, conn_id: str = "unit_sql", fetch_size: int = 100, **options: Any) -> list[Any]:
    return list(
        iter_sql_records(
            sql_conn_id=conn_id,
            sql=sql,
            parameters=options.pop("parameters", None),
            attribute_types=options.pop("attribute_types", None),
            fetch_size=fetch_size,
            **options,
        )
    )


def test_each_row_becomes_a_record_with_typed_attributes(sqlite_db: Callable[..., str]) -> None:
    sqlite_db(
        "customer_uuid TEXT, plan TEXT, seats INTEGER, mrr REAL, pro INTEGER",
        [("cus_1", "pro", 5, 9.5, 1), ("cus_2", "basic", 1, 0.25, 0)],
    )

    types = validate_attribute_types({"pro": "boolean"})  # as the operator checked it
    records = _sql("SELECT * FROM attrs ORDER BY customer_uuid", attribute_types=types)

    assert records == [
        {
            "customer_uuid": "cus_1",
            "custom": [
                {"type": "String", "key": "plan", "value": "pro"},
                {"type": "Integer", "key": "seats", "value": 5},
                {"type": "Decimal", "key": "mrr", "value": 9.5},
                {"type": "Boolean", "key": "pro", "value": 1},
            ],
        },
        {
            "customer_uuid": "cus_2",
            "custom": [
                {"type": "String", "key": "plan", "value": "basic"},
                {"type": "Integer", "key": "seats", "value": 1},
                {"type": "Decimal", "key": "mrr", "value": 0.25},
                {"type": "Boolean", "key": "pro", "value": 0},
            ],
        },
    ]


def test_sql_identifiers_become_text_and_nulls_are_left_out(sqlite_db: Callable[..., str]) -> None:
    sqlite_db(
        "external_id INTEGER, data_source_uuid TEXT, plan TEXT",
        [(42, "ds_1", None), (43, None, "pro")],
    )

    records = _sql("SELECT * FROM attrs ORDER BY external_id")

    assert records == [
        {"external_id": "42", "data_source_uuid": "ds_1", "custom": []},
        {"external_id": "43", "custom": [{"type": "String", "key": "plan", "value": "pro"}]},
    ]


def test_keep_nulls_turns_sql_nulls_into_clears(sqlite_db: Callable[..., str]) -> None:
    sqlite_db("customer_uuid TEXT, coupon TEXT, seats INTEGER", [("cus_1", None, None)])

    records = _sql("SELECT * FROM attrs", attribute_types={"seats": "Integer"}, keep_nulls=True)

    assert records == [
        {
            "customer_uuid": "cus_1",
            "custom": [
                {"type": "String", "key": "coupon", "value": None},
                {"type": "Integer", "key": "seats", "value": None},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("SELECT customer_uuid, plan FROM attrs WHERE plan = ? ORDER BY customer_uuid", ["pro"]),
        ("SELECT customer_uuid, plan FROM attrs WHERE plan = :plan ORDER BY customer_uuid", {"plan": "pro"}),
    ],
    ids=["sequence", "mapping"],
)
def test_query_parameters_are_bound(sqlite_db: Callable[..., str], sql: str, parameters: Any) -> None:
    sqlite_db("customer_uuid TEXT, plan TEXT", [("cus_1", "pro"), ("cus_2", "basic"), ("cus_3", "pro")])

    records = _sql(sql, parameters=parameters)

    assert [r["customer_uuid"] for r in records] == ["cus_1", "cus_3"]


@pytest.mark.parametrize("fetch_size", [1, 2, 3, 7, 1000])
def test_every_row_is_read_in_order_whatever_the_batch_size(
    sqlite_db: Callable[..., str], fetch_size: int
) -> None:
    sqlite_db("customer_uuid TEXT, seats INTEGER", [(f"cus_{i:02}", i) for i in range(7)])

    records = _sql("SELECT * FROM attrs ORDER BY customer_uuid", fetch_size=fetch_size)

    assert [r["customer_uuid"] for r in records] == [f"cus_{i:02}" for i in range(7)]
    assert [r["custom"][0]["value"] for r in records] == list(range(7))


def test_a_query_with_no_rows_gives_no_records(sqlite_db: Callable[..., str]) -> None:
    sqlite_db("customer_uuid TEXT, plan TEXT", [])

    assert _sql("SELECT * FROM attrs") == []


def test_a_statement_without_a_result_set_is_a_source_error(sqlite_db: Callable[..., str]) -> None:
    sqlite_db("customer_uuid TEXT, plan TEXT", [("cus_1", "pro")])

    with pytest.raises(ChartMogulSourceError, match=r"returned no result set \(is it a SELECT\?\)"):
        _sql("UPDATE attrs SET plan = 'basic'")


def test_a_result_without_an_identifier_column_is_refused_before_any_row(
    sqlite_db: Callable[..., str],
) -> None:
    sqlite_db("name TEXT, plan TEXT", [("x", "pro")])

    with pytest.raises(ChartMogulValidationError, match="SQL result has no identifier column"):
        _sql("SELECT * FROM attrs")


def test_invalid_sql_raises_the_database_error(sqlite_db: Callable[..., str]) -> None:
    sqlite_db("customer_uuid TEXT", [("cus_1",)])

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _sql("SELECT * FROM missing_table")


def test_a_database_error_between_batches_ends_with_one_input_error(sqlite_db: Callable[..., str]) -> None:
    sqlite_db("customer_uuid TEXT, n INTEGER", [(f"cus_{i}", i) for i in range(6)])
    # abs() of the smallest 64-bit integer overflows: the query fails when it reaches n = 3.
    sql = "SELECT customer_uuid, abs(-9223372036854775807 - (n >= 3)) AS big FROM attrs"

    items = _sql(sql, fetch_size=2)

    *records, error = items
    assert [r["customer_uuid"] for r in records] == [f"cus_{i}" for i in range(len(records))]
    assert len(records) in (2, 3)  # sqlite3 may read one row ahead
    assert isinstance(error, RejectedInput)
    assert error.stage == "input"
    assert error.index == len(records)
    assert (
        "reading the rows of the SQL query on 'unit_sql' failed here with OperationalError: integer overflow"
        in error.message
    )


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
    """The real connections the SQLite hook opens, kept to look at after the records are read."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    connections: list[sqlite3.Connection] = []
    original = SqliteHook.get_conn

    def get_conn(self: SqliteHook) -> sqlite3.Connection:
        connections.append(original(self))
        return connections[-1]

    monkeypatch.setattr(SqliteHook, "get_conn", get_conn)
    return connections


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_the_connection_is_closed_after_the_last_row(
    sqlite_db: Callable[..., str], opened: list[sqlite3.Connection]
) -> None:
    sqlite_db("customer_uuid TEXT, seats INTEGER", [(f"cus_{i}", i) for i in range(5)])

    assert len(_sql("SELECT * FROM attrs", fetch_size=2)) == 5

    assert len(opened) == 1
    assert _is_closed(opened[0])


def test_the_connection_is_closed_when_the_statement_is_refused(
    sqlite_db: Callable[..., str], opened: list[sqlite3.Connection]
) -> None:
    sqlite_db("customer_uuid TEXT, plan TEXT", [("cus_1", "pro")])

    with pytest.raises(ChartMogulSourceError):
        _sql("DELETE FROM attrs")

    assert _is_closed(opened[0])


def test_stopping_early_closes_the_connection_and_releases_the_database(
    sqlite_db: Callable[..., str], opened: list[sqlite3.Connection], tmp_path: Path
) -> None:
    sqlite_db("customer_uuid TEXT, seats INTEGER", [(f"cus_{i}", i) for i in range(10)])
    records = iter_sql_records(
        sql_conn_id="unit_sql", sql="SELECT * FROM attrs", parameters=None, attribute_types=None, fetch_size=2
    )
    assert next(records)["customer_uuid"] == "cus_0"
    assert not _is_closed(opened[0])

    records.close()

    assert _is_closed(opened[0])
    # An open read cursor would hold a lock, and this write would fail at once.
    writer = sqlite3.connect(tmp_path / "source.db", timeout=0)
    try:
        with writer:
            writer.execute("INSERT INTO attrs VALUES ('cus_new', 1)")
    finally:
        writer.close()


def test_a_connection_that_is_not_sql_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_NOT_SQL",
        json.dumps({"conn_type": "chartmogul", "host": "http://127.0.0.1:9", "password": "unit-test-key"}),
    )

    with pytest.raises(ChartMogulSourceError, match="not a SQL"):
        _sql("SELECT 1 AS customer_uuid", conn_id="not_sql")
