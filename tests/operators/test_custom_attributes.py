"""AddCustomAttributesOperator end to end: real HTTP to the project's server, real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import (
    AddCustomAttributesOperator,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json
from tests.postgres import airflow_connection_json

DS_A = "ds_00000000-0000-0000-0000-00000000000a"
DS_B = "ds_00000000-0000-0000-0000-00000000000b"


def run(op: AddCustomAttributesOperator) -> dict:
    return op.execute(context={})


def attrs(**values: object) -> list[dict]:
    types = {str: "String", int: "Integer", float: "Decimal", bool: "Boolean"}
    return [{"type": types[type(v)], "key": k, "value": v} for k, v in values.items()]


@pytest.fixture
def server(chartmogul_conn: ChartMogulServer) -> ChartMogulServer:
    return chartmogul_conn


def _writes(server: ChartMogulServer) -> list:
    return [r for r in server.requests if r.method in ("POST", "PUT", "DELETE")]


# ---- arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "exactly one of customers"),
        ({"customers": [], "sql": "SELECT 1", "sql_conn_id": "db"}, "exactly one of customers"),
        ({"sql": "SELECT 1"}, "sql_conn_id"),
        ({"customers": [], "sql_conn_id": "db"}, "only go with sql"),
        ({"customers": [], "mode": "upsert"}, "mode must be one of"),
        ({"customers": [], "clear": "remove"}, "needs mode='sync'"),
        ({"customers": [], "clear": "null"}, "clear must be one of"),
        ({"customers": [], "customer_lookup": "guess"}, "customer_lookup"),
        ({"customers": [], "max_failures": -1}, "max_failures"),
        ({"customers": [], "max_failures": 1.5}, "max_failures"),
        ({"customers": [], "fetch_size": 0}, "fetch_size"),
        ({"customers": [], "max_connections": 30}, "max_connections"),
        ({"customers": [], "max_requests_per_second": 0}, "max_requests_per_second"),
        ({"sql": "SELECT 1", "sql_conn_id": "db", "attribute_types": {"seats": "Float"}}, "Float"),
    ],
)
def test_bad_arguments_fail_at_dag_parse_time(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        AddCustomAttributesOperator(task_id="push", **kwargs)


def test_a_missing_connection_is_reported_as_missing_before_anything_is_read(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_chartmogul.exceptions import ChartMogulConfigurationError

    monkeypatch.delenv("AIRFLOW_CONN_CHARTMOGUL_PROD", raising=False)
    db = tmp_path / "rows.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE attrs (customer_uuid TEXT, seats INTEGER)")
        conn.execute("INSERT INTO attrs VALUES ('cus_1', 3)")
    conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_ROWS", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    dead = tmp_path / "dead.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD", json.dumps({"conn_type": "sqlite", "host": str(dead)}))
    op = AddCustomAttributesOperator(
        task_id="push",
        sql="SELECT * FROM attrs",
        sql_conn_id="rows",
        chartmogul_conn_id="chartmogul_prod",
        dead_letter_conn_id="dead",
        dead_letter_table="dl",
    )

    with pytest.raises(ChartMogulConfigurationError) as caught:
        run(op)

    assert str(caught.value) == (
        "The Airflow connection 'chartmogul_prod' does not exist, so nothing was read or sent: add a "
        "connection of type 'chartmogul' with that id and the API key as its password (Admin > "
        "Connections, or AIRFLOW_CONN_CHARTMOGUL_PROD), or set chartmogul_conn_id to the one to use"
    )
    assert not dead.exists(), "nothing is made before the connection is known to exist"


def test_inline_templates_render() -> None:
    op = AddCustomAttributesOperator(
        task_id="push",
        sql="SELECT * FROM attrs WHERE plan = '{{ params.plan }}' AND day = '{{ ds }}'",
        sql_conn_id="db",
        parameters={"since": "{{ ds }}"},
        source="airflow:{{ dag_id }}",
    )
    op.render_template_fields(context={"params": {"plan": "pro"}, "ds": "2026-11-29", "dag_id": "sync"})
    assert op.sql == "SELECT * FROM attrs WHERE plan = 'pro' AND day = '2026-11-29'"
    assert op.parameters == {"since": "2026-11-29"}
    assert op.source == "airflow:sync"


def test_sql_file_template_renders(tmp_path) -> None:
    from airflow_provider_chartmogul.version_compat import BaseOperator  # noqa: F401

    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG  # type: ignore[no-redef]

    (tmp_path / "select_customers.sql").write_text("SELECT * FROM attrs WHERE plan = '{{ params.plan }}'")
    with DAG("t", schedule=None, start_date=dt.datetime(2026, 1, 1), template_searchpath=[str(tmp_path)]):
        op = AddCustomAttributesOperator(task_id="push", sql="select_customers.sql", sql_conn_id="db")
    op.resolve_template_files()
    op.render_template_fields(context={"params": {"plan": "pro"}})
    assert op.sql == "SELECT * FROM attrs WHERE plan = 'pro'"


# ---- records from customers -----------------------------------------------------------------------


def test_every_identifier_kind_is_written(server: ChartMogulServer) -> None:
    by_uuid = server.add_customer(external_id="u1")
    by_ext = server.add_customer(external_id="e1", data_source_uuid=DS_A)
    by_ext_ds = server.add_customer(external_id="shared", data_source_uuid=DS_A)
    server.add_customer(external_id="shared", data_source_uuid=DS_B)
    by_email = server.add_customer(email="solo@example.com")
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            customers=[
                {"customer_uuid": by_uuid["uuid"], "custom": attrs(plan="pro")},
                {"external_id": "e1", "custom": attrs(seats=3)},
                {"external_id": "shared", "data_source_uuid": DS_A, "custom": attrs(cac=12.5)},
                {"email": "solo@example.com", "custom": attrs(pro=True)},
            ],
            source="airflow:test",
        )
    )
    assert (report["total"], report["succeeded"], report["failed"], report["skipped"]) == (4, 4, 0, 0)
    assert report["failures"] == []
    assert server.custom_attributes(by_uuid["uuid"]) == {"plan": "pro"}
    assert server.custom_attributes(by_ext["uuid"]) == {"seats": 3}
    assert server.custom_attributes(by_ext_ds["uuid"]) == {"cac": 12.5}
    assert server.custom_attributes(by_email["uuid"]) == {"pro": True}
    assert all(a["source"] == "airflow:test" for r in _writes(server) for a in r.body["custom"])
    # never through the by-email endpoint
    assert not any(r.path == "/v1/customers/attributes/custom" for r in server.requests)


def test_no_match_and_several_matches_are_reported_never_written(server: ChartMogulServer) -> None:
    twin_a = server.add_customer(email="twin@example.com")
    twin_b = server.add_customer(email="twin@example.com")
    server.add_customer(external_id="dup", data_source_uuid=DS_A)
    server.add_customer(external_id="dup", data_source_uuid=DS_B)
    good = server.add_customer(external_id="good")
    op = AddCustomAttributesOperator(
        task_id="push",
        customers=[
            {"email": "twin@example.com", "custom": attrs(plan="pro")},
            {"external_id": "missing", "custom": attrs(plan="pro")},
            {"external_id": "dup", "custom": attrs(plan="pro")},
            {"external_id": "good", "custom": attrs(plan="pro")},
        ],
        max_failures=3,
    )
    report = run(op)
    assert (report["total"], report["succeeded"], report["failed"]) == (4, 1, 3)
    failures = {f["customer"]: f for f in report["failures"]}
    twin = next(f for c, f in failures.items() if "twin@example.com" in c)
    assert twin["stage"] == "resolution"
    assert twin_a["uuid"] in twin["error"] and twin_b["uuid"] in twin["error"]
    assert "matches 2" in twin["error"]
    assert "no ChartMogul customer" in next(f["error"] for c, f in failures.items() if "missing" in c)
    dup = next(f for c, f in failures.items() if "dup" in c)
    assert "data_source_uuid" in dup["error"]
    assert server.custom_attributes(twin_a["uuid"]) == {}
    assert server.custom_attributes(twin_b["uuid"]) == {}
    assert server.custom_attributes(good["uuid"]) == {"plan": "pro"}
    assert len(_writes(server)) == 1


def test_bad_records_are_rejected_with_reasons_and_the_rest_go_through(server: ChartMogulServer) -> None:
    customers = [server.add_customer()["uuid"] for _ in range(3)]
    records = [
        {"customer_uuid": customers[0], "custom": attrs(plan="pro")},
        {"customer_uuid": customers[1], "custom": [{"type": "String", "key": "plan", "value": "x" * 300}]},
        "not a record",
        {"customer_uuid": "", "custom": attrs(plan="pro")},
        {"customer_uuid": customers[2], "custom": [{"type": "Boolean", "key": "pro", "value": "yes"}]},
        {"customer_uuid": customers[2], "custom": attrs(seats=4)},
    ]
    with pytest.raises(CustomAttributesPushError) as info:
        run(AddCustomAttributesOperator(task_id="push", customers=records))
    report = info.value.report
    assert (report["total"], report["succeeded"], report["failed"]) == (6, 2, 4)
    assert report["succeeded"] + report["failed"] + report["skipped"] == report["total"] == len(records)
    assert all(f["stage"] == "validation" for f in report["failures"])
    messages = " | ".join(f["error"] for f in report["failures"])
    assert "255" in messages and "'plan'" in messages
    assert "'pro'" in messages and "TRUE" in messages
    assert "record #2" in messages and "record #3" in messages
    assert len(_writes(server)) == 2
    assert server.custom_attributes(customers[2]) == {"seats": 4}
    assert "4 of 6 customers failed" in str(info.value)


def test_max_failures_lets_the_task_succeed(server: ChartMogulServer) -> None:
    ok = server.add_customer()["uuid"]
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            customers=[
                {"customer_uuid": ok, "custom": attrs(a=1)},
                {"customer_uuid": "cus_gone", "custom": attrs(a=1)},
            ],
            max_failures=1,
        )
    )
    assert (report["succeeded"], report["failed"]) == (1, 1)
    (failure,) = report["failures"]
    assert failure["status"] == 404
    assert failure["stage"] == "api"
    assert failure["record"] == {"customer_uuid": "cus_gone", "custom": attrs(a=1)}


def test_failure_message_names_the_first_customers_and_the_count(server: ChartMogulServer) -> None:
    records = [{"customer_uuid": f"cus_gone{i}", "custom": attrs(a=1)} for i in range(8)]
    with pytest.raises(CustomAttributesPushError) as info:
        run(AddCustomAttributesOperator(task_id="push", customers=records))
    message = str(info.value)
    assert "8 of 8 customers failed" in message
    assert "and 3 more" in message
    assert message.count("customer_uuid=cus_gone") == 5
    assert len(info.value.report["failures"]) == 8


def test_records_without_attributes_are_skipped(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]
    report = run(
        AddCustomAttributesOperator(task_id="push", customers=[{"customer_uuid": uuid, "custom": []}])
    )
    assert (report["total"], report["skipped"]) == (1, 1)
    assert _writes(server) == []


@pytest.mark.parametrize("form", ["json", "literal"])
def test_string_input_forms(server: ChartMogulServer, form: str) -> None:
    uuid = server.add_customer()["uuid"]
    records = [{"customer_uuid": uuid, "custom": attrs(pro=True)}]
    text = json.dumps(records) if form == "json" else repr(records)
    report = run(AddCustomAttributesOperator(task_id="push", customers=text))
    assert report["succeeded"] == 1
    assert server.custom_attributes(uuid) == {"pro": True}


def test_a_report_fed_back_replays_its_failures(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]
    server.fail_customer(uuid, status=500)
    first = run(
        AddCustomAttributesOperator(
            task_id="push", customers=[{"customer_uuid": uuid, "custom": attrs(seats=5)}], max_failures=1
        )
    )
    assert first["failed"] == 1 and first["failures"][0]["status"] == 500
    server.reset_failures() if hasattr(server, "reset_failures") else server.fail_customer(
        uuid, status=500, times=0
    )
    second = run(AddCustomAttributesOperator(task_id="retry", customers=json.loads(json.dumps(first))))
    assert (second["total"], second["succeeded"]) == (1, 1)
    assert server.custom_attributes(uuid) == {"seats": 5}


def test_bad_key_stops_the_run_at_once(server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(server, api_key="revoked"))
    records = [{"customer_uuid": server.add_customer()["uuid"], "custom": attrs(a=1)} for _ in range(200)]
    with pytest.raises(CustomAttributesPushError) as info:
        run(AddCustomAttributesOperator(task_id="push", customers=records))
    assert "No valid API key provided" in str(info.value)
    assert "password field" in str(info.value)
    assert len(server.requests) < 60, "it must not try every customer one by one"
    assert info.value.report["aborted"]


# ---- records from SQL -------------------------------------------------------------------------------

SQLITE_ROWS = [
    ("cus_a", "pro", 12, 99.5, 1, "2022-09-08 00:00:00", None),
    ("cus_b", "basic", None, None, 0, None, "Gabi"),
]


@pytest.fixture
def sqlite_conn(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[tuple]], str]:
    def make(ddl: str, rows: list[tuple]) -> str:
        path = tmp_path / "attrs.db"
        with sqlite3.connect(path) as db:
            db.execute(ddl)
            marks = ",".join("?" * len(rows[0]))
            db.executemany(f"INSERT INTO attrs VALUES ({marks})", rows)
        monkeypatch.setenv("AIRFLOW_CONN_ATTRS_DB", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        return "attrs_db"

    return make


def test_sqlite_source_writes_typed_attributes(server: ChartMogulServer, sqlite_conn) -> None:
    for uuid in ("cus_a", "cus_b"):
        server.add_customer(uuid=uuid)
    conn_id = sqlite_conn(
        "CREATE TABLE attrs (customer_uuid TEXT, plan TEXT, seats INTEGER, mrr REAL, pro INTEGER, "
        "since TEXT, salesRep TEXT)",
        SQLITE_ROWS,
    )
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            sql="SELECT * FROM attrs ORDER BY customer_uuid",
            sql_conn_id=conn_id,
            attribute_types={"pro": "Boolean", "since": "Timestamp"},
        )
    )
    assert (report["total"], report["succeeded"], report["failed"]) == (2, 2, 0)
    assert server.custom_attributes("cus_a") == {
        "plan": "pro",
        "seats": 12,
        "mrr": 99.5,
        "pro": True,
        "since": "2022-09-08T00:00:00.000Z",
    }
    # NULL leaves the attribute alone
    assert server.custom_attributes("cus_b") == {"plan": "basic", "pro": False, "salesRep": "Gabi"}
    assert server.definitions == {
        "plan": "String",
        "seats": "Integer",
        "mrr": "Decimal",
        "pro": "Boolean",
        "since": "Timestamp",
        "salesRep": "String",
    }


def test_sqlite_parameters_and_streaming_in_small_batches(server: ChartMogulServer, sqlite_conn) -> None:
    server.add_customers([{"uuid": f"cus_{i}"} for i in range(300)])
    rows = [(f"cus_{i}", "pro" if i % 2 else "basic", i) for i in range(300)]
    conn_id = sqlite_conn("CREATE TABLE attrs (customer_uuid TEXT, plan TEXT, seats INTEGER)", rows)
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            sql="SELECT customer_uuid, seats FROM attrs WHERE plan = ?",
            parameters=["pro"],
            sql_conn_id=conn_id,
            fetch_size=7,
        )
    )
    assert (report["total"], report["succeeded"]) == (150, 150)
    assert server.custom_attributes("cus_299") == {"seats": 299}
    assert server.custom_attributes("cus_298") == {}


def test_sql_without_identifier_column_is_a_clear_error(server: ChartMogulServer, sqlite_conn) -> None:
    conn_id = sqlite_conn("CREATE TABLE attrs (name TEXT, plan TEXT)", [("x", "pro")])
    with pytest.raises(Exception, match="identifier column"):
        run(AddCustomAttributesOperator(task_id="push", sql="SELECT * FROM attrs", sql_conn_id=conn_id))
    assert server.requests == []


def test_sql_rows_matched_by_external_id(server: ChartMogulServer, sqlite_conn) -> None:
    a = server.add_customer(external_id="acct-1", data_source_uuid=DS_A)
    b = server.add_customer(external_id="acct-1", data_source_uuid=DS_B)
    conn_id = sqlite_conn(
        "CREATE TABLE attrs (external_id TEXT, data_source_uuid TEXT, tier TEXT)",
        [("acct-1", DS_A, "gold"), ("acct-1", DS_B, "silver")],
    )
    report = run(AddCustomAttributesOperator(task_id="push", sql="SELECT * FROM attrs", sql_conn_id=conn_id))
    assert report["succeeded"] == 2
    assert server.custom_attributes(a["uuid"]) == {"tier": "gold"}
    assert server.custom_attributes(b["uuid"]) == {"tier": "silver"}


@pytest.fixture
def pg_conn(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str, list[tuple]], str]]:
    import psycopg2

    db = psycopg2.connect(postgres_dsn)
    db.autocommit = True
    tables: list[str] = []

    def make(table: str, ddl: str, rows: list[tuple]) -> str:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} ({ddl})")
            marks = ",".join(["%s"] * len(rows[0]))
            cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        tables.append(table)
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", airflow_connection_json(postgres_dsn))
        return "warehouse"

    yield make
    with db.cursor() as cur:
        for table in tables:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    db.close()


@pytest.mark.postgres
def test_postgres_source_infers_every_native_type(server: ChartMogulServer, pg_conn) -> None:
    server.add_customer(uuid="cus_pg1")
    server.add_customer(uuid="cus_pg2")
    conn_id = pg_conn(
        "attrs",
        "customer_uuid text, plan text, seats integer, big bigint, cac numeric(10,2), "
        "ratio double precision, "
        "pro boolean, converted date, seen timestamptz, naive timestamp",
        [
            (
                "cus_pg1",
                "pro",
                12,
                2**40,
                Decimal("213.50"),
                0.25,
                True,
                dt.date(2022, 9, 8),
                dt.datetime(2022, 9, 8, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                dt.datetime(2022, 9, 8, 12, 0),
            ),
            ("cus_pg2", None, None, None, None, None, False, None, None, None),
        ],
    )
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            sql="SELECT * FROM attrs ORDER BY customer_uuid",
            sql_conn_id=conn_id,
            fetch_size=1,
        )
    )
    assert (report["total"], report["succeeded"], report["failed"]) == (2, 2, 0), report["failures"]
    assert server.definitions == {
        "plan": "String",
        "seats": "Integer",
        "big": "Integer",
        "cac": "Decimal",
        "ratio": "Decimal",
        "pro": "Boolean",
        "converted": "Timestamp",
        "seen": "Timestamp",
        "naive": "Timestamp",
    }
    assert server.custom_attributes("cus_pg1") == {
        "plan": "pro",
        "seats": 12,
        "big": 2**40,
        "cac": 213.5,
        "ratio": 0.25,
        "pro": True,
        "converted": "2022-09-08T00:00:00.000Z",
        "seen": "2022-09-08T10:00:00.000Z",
        "naive": "2022-09-08T12:00:00.000Z",
    }
    assert server.custom_attributes("cus_pg2") == {"pro": False}


@pytest.mark.postgres
def test_postgres_named_parameters_and_server_side_cursor(server: ChartMogulServer, pg_conn) -> None:
    server.add_customers([{"uuid": f"cus_{i}"} for i in range(120)])
    conn_id = pg_conn(
        "seats", "customer_uuid text, plan text, seats int", [(f"cus_{i}", "pro", i) for i in range(120)]
    )
    report = run(
        AddCustomAttributesOperator(
            task_id="push",
            sql="SELECT customer_uuid, seats FROM seats WHERE plan = %(plan)s AND seats >= %(least)s",
            parameters={"plan": "pro", "least": 20},
            sql_conn_id=conn_id,
            fetch_size=25,
        )
    )
    assert (report["total"], report["succeeded"]) == (100, 100)
    assert server.custom_attributes("cus_119") == {"seats": 119}
    assert server.custom_attributes("cus_19") == {}


@pytest.mark.parametrize("native", [True, False])
def test_jinja_rendered_customers_native_or_not(server: ChartMogulServer, native: bool) -> None:
    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG  # type: ignore[no-redef]

    uuid = server.add_customer()["uuid"]
    records = [{"customer_uuid": uuid, "custom": attrs(seats=7, pro=True)}]
    with DAG(
        "native", schedule=None, start_date=dt.datetime(2026, 1, 1), render_template_as_native_obj=native
    ) as dag:
        op = AddCustomAttributesOperator(task_id="push", customers="{{ params.records }}")
    op.render_template_fields(context={"params": {"records": records}}, jinja_env=dag.get_template_env())
    assert isinstance(op.customers, list if native else str)
    report = run(op)
    assert report["succeeded"] == 1
    assert server.custom_attributes(uuid) == {"seats": 7, "pro": True}


SINCE = "2016-01-31 00:00:00 UTC"  # ChartMogul answers "2016-01-31T00:00:00.000Z": the same instant


def test_a_write_answered_200_with_other_values_fails_every_customer_as_verify(
    server: ChartMogulServer,
) -> None:
    """A proxy, or an API change: ChartMogul (here, the server's fault) answers 200 with a map that
    does not hold what was sent. Every such customer fails with stage ``verify``; no request more."""
    uuids = [server.add_customer()["uuid"] for _ in range(20)]
    for uuid in uuids[:15]:
        server.fail_customer(uuid, status=200, body={"custom": {"seats": 999}})
    records = [
        {
            "customer_uuid": uuid,
            "custom": [*attrs(seats=i), {"type": "Timestamp", "key": "since", "value": SINCE}],
        }
        for i, uuid in enumerate(uuids)
    ]

    with pytest.raises(CustomAttributesPushError) as caught:
        run(AddCustomAttributesOperator(task_id="push", customers=records))

    report = caught.value.report
    assert (report["succeeded"], report["failed"]) == (5, 15)
    assert {f["stage"] for f in report["failures"]} == {"verify"}
    by_uuid = {f["customer_uuid"]: f for f in report["failures"]}
    assert set(by_uuid) == set(uuids[:15])
    assert by_uuid[uuids[3]]["error"] == (
        "the write was answered but did not take: attribute 'seats': sent 3, ChartMogul holds 999; "
        f"attribute 'since': sent {SINCE!r}, not in ChartMogul's answer"
    )
    assert by_uuid[uuids[3]]["record"]["customer_uuid"] == uuids[3], "ready to replay"
    assert len(_writes(server)) == 20, "one write each, no extra request"
    assert server.custom_attributes(uuids[19]) == {"seats": 19, "since": "2016-01-31T00:00:00.000Z"}
