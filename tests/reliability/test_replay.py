"""Replay: what failed can be pushed again, exactly, from the report or the dead-letter table, and
running the same DAG again is safe.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.push.records import parse_record
from airflow_provider_chartmogul.push.report import failed_records
from airflow_provider_chartmogul.testing.server import FAULT_KINDS, ChartMogulServer
from tests.conftest import connection_json
from tests.postgres import airflow_connection_json
from tests.reliability._support import (
    CUSTOM_PATH,
    RecordingTI,
    run_operator,
    stored_values,
    typed_record,
    uuid_of_custom_path,
)

FINE = range(30)
FAIL_500 = range(30, 35)
FAIL_422 = range(35, 38)
MISSING = 38  # not in ChartMogul yet: 404
INVALID = 39


def _uuid(i: int) -> str:
    return f"cus_rp_{i:02d}"


def _record(i: int) -> Any:
    if i == INVALID:
        return {"customer_uuid": _uuid(i), "custom": [{"type": "Boolean", "key": "pro", "value": "yes"}]}
    record = typed_record(_uuid(i), i)
    if i in FAIL_500:
        # Python values a task may hand over; the report must keep them in a replayable shape
        record["custom"][1]["value"] = Decimal(i)  # Integer
        record["custom"][2]["value"] = Decimal(f"{i}.25")  # Decimal
        record["custom"][4]["value"] = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=i)
    return record


FAILING = [*FAIL_500, *FAIL_422, MISSING]


@pytest.fixture
def server(chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> ChartMogulServer:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server, max_retries=1, retry_budget=1)
    )
    chartmogul_server.add_customers([{"uuid": _uuid(i)} for i in range(40) if i != MISSING])
    for i in FAIL_500:
        chartmogul_server.fail_customer(_uuid(i), status=500)
    for i in FAIL_422:
        chartmogul_server.fail_customer(
            _uuid(i), status=422, body={"code": 422, "message": "Try again later", "param": None}
        )
    return chartmogul_server


def _repair(server: ChartMogulServer) -> None:
    for i in [*FAIL_500, *FAIL_422]:
        server.fail_customer(_uuid(i), times=0)
    server.add_customer(uuid=_uuid(MISSING))


def _first_run(**kwargs: Any) -> tuple[dict[str, Any], RecordingTI]:
    ti = RecordingTI()
    report, error = run_operator(customers=[_record(i) for i in range(40)], context={"ti": ti}, **kwargs)
    assert error is not None and "10 of 40 customers failed" in str(error)
    assert (report["total"], report["succeeded"], report["failed"]) == (40, 30, 10)
    return report, ti


def _written_paths(server: ChartMogulServer) -> list[str]:
    return sorted(r.path for r in server.requests if r.method == "POST" and r.status == 200)


def _assert_all_valid_written(server: ChartMogulServer) -> None:
    for i in range(40):
        expected = {} if i == INVALID else stored_values(i)
        assert server.custom_attributes(_uuid(i)) == expected, _uuid(i)


@pytest.mark.parametrize("form", ["xcom-report", "failure-records", "report-as-json-string"])
def test_report_fed_back_replays_exactly_the_failed_records(server: ChartMogulServer, form: str) -> None:
    report, ti = _first_run()
    xcom_report = json.loads(ti.xcom["return_value"])  # what a downstream task pulls
    assert xcom_report["failures"] == json.loads(json.dumps(report["failures"]))
    by_customer = {f["customer_uuid"] or f["customer"]: f for f in xcom_report["failures"]}
    assert by_customer[_uuid(30)]["status"] == 500 and by_customer[_uuid(35)]["status"] == 422
    assert by_customer[_uuid(MISSING)]["status"] == 404
    for failure in xcom_report["failures"]:
        if failure["stage"] != "validation":
            parse_record(failure["record"], index=0)  # in the shape the operator accepts
    # values a task handed over as Decimal / datetime come back as plain JSON of the same meaning
    assert by_customer[_uuid(30)]["record"]["custom"][4]["value"].startswith("2022-01-31T00:00:00")

    _repair(server)
    server.clear_requests()
    customers: Any = {
        "xcom-report": xcom_report,
        "failure-records": failed_records(xcom_report),
        "report-as-json-string": ti.xcom["return_value"],
    }[form]
    replay, error = run_operator(task_id="replay", customers=customers, max_failures=1)

    assert error is None
    assert (replay["total"], replay["succeeded"], replay["failed"]) == (10, 9, 1)
    (still_invalid,) = replay["failures"]
    assert still_invalid["stage"] == "validation" and "'pro'" in still_invalid["error"]
    assert _written_paths(server) == sorted(CUSTOM_PATH.format(_uuid(i)) for i in FAILING)
    assert len(server.requests) == len(FAILING), "only the failed customers are sent again, once each"
    _assert_all_valid_written(server)


# ---- dead-letter table ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_dead_letter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], list]]:
    path = tmp_path / "dead_letter.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTER", json.dumps({"conn_type": "sqlite", "host": str(path)}))

    def rows(query: str) -> list:
        with sqlite3.connect(path) as db:
            found = db.execute(query).fetchall()
        db.close()
        return found

    yield rows


@pytest.fixture
def postgres_dead_letter(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], list]]:
    import psycopg2

    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTER", airflow_connection_json(postgres_dsn))
    db = psycopg2.connect(postgres_dsn)
    db.autocommit = True

    def rows(query: str) -> list:
        with db.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall() if cursor.description else []

    yield rows
    db.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], ids=["sqlite", "postgres"]
)
def test_dead_letter_table_gets_one_replayable_row_per_failure(
    server: ChartMogulServer, request: pytest.FixtureRequest, backend: str
) -> None:
    rows: Callable[[str], list] = request.getfixturevalue(f"{backend}_dead_letter")
    table = f"cm_dead_letter_{uuid_module.uuid4().hex[:8]}"
    try:
        report, _ = _first_run(dead_letter_conn_id="dead_letter", dead_letter_table=table)
        found = rows(
            f"SELECT customer, customer_uuid, stage, status, error, record, run_id, task_id FROM {table}"
        )
        assert len(found) == report["failed"] == 10
        expected = sorted(
            (f["customer"], f["customer_uuid"], f["stage"], f["status"], f["error"])
            for f in report["failures"]
        )
        assert sorted(tuple(row[:5]) for row in found) == expected
        assert {row[6] for row in found} == {RecordingTI.run_id}
        assert {row[7] for row in found} == {"push"}

        _repair(server)
        server.clear_requests()
        replay, _ = run_operator(
            task_id="replay", customers=[json.loads(row[5]) for row in found], max_failures=1
        )
        assert (replay["total"], replay["succeeded"], replay["failed"]) == (10, 9, 1)
        assert _written_paths(server) == sorted(CUSTOM_PATH.format(_uuid(i)) for i in FAILING)
        _assert_all_valid_written(server)
    finally:
        if backend == "postgres":
            rows(f"DROP TABLE IF EXISTS {table}")


# ---- running the same DAG again ------------------------------------------------------------------

RERUN_CUSTOMERS = 200


@pytest.fixture
def faulty_server(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChartMogulServer]:
    """10 % of requests faulted (1 % of each kind), retries that absorb them. The timeout is 3 s
    (a "slow" answer takes 4): the server runs in this process, and a whole 200-customer listing
    page must fit in one attempt's deadline while the client's threads compete with it; the 30 s
    budget lets a loaded machine's timeouts be retried too (the tests count writes, not time)."""
    server = chartmogul_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(
            server,
            timeout=3,
            max_retries=8,
            retry_budget=30,
            max_requests_per_second=1000,
            max_connections=20,
        ),
    )
    customers = []
    for i in range(RERUN_CUSTOMERS):
        customers.append(
            {"uuid": f"cus_rr_{i:03d}", "external_id": f"acct-{i}", "email": f"c{i}@example.com"}
        )
    server.add_customers(customers)
    server.configure(faults={kind: 0.01 for kind in FAULT_KINDS}, slow_seconds=4.0, fault_seed=5)
    yield server
    server.configure(slow_seconds=5.0, faults=None)


def _rerun_input() -> list[dict[str, Any]]:
    records = []
    for i in range(RERUN_CUSTOMERS):
        record = typed_record(f"cus_rr_{i:03d}", i)
        if i % 10 == 1:  # some customers found by external id, some by email
            del record["customer_uuid"]
            record["external_id"] = f"acct-{i}"
        elif i % 10 == 2:
            del record["customer_uuid"]
            record["email"] = f"c{i}@example.com"
        records.append(record)
    return records


def _settle(server: ChartMogulServer) -> None:
    """Wait for answers the server still holds ("slow" faults are logged when it gives up on them)."""
    deadline = time.monotonic() + 10
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)


def _state(server: ChartMogulServer) -> dict[str, dict[str, Any]]:
    return {f"cus_rr_{i:03d}": server.custom_attributes(f"cus_rr_{i:03d}") for i in range(RERUN_CUSTOMERS)}


def _applied_writes(server: ChartMogulServer) -> dict[str, Any]:
    """uuid -> body of the write that was applied (faulted requests change nothing)."""
    applied = {}
    for r in server.requests:
        if r.method in ("POST", "PUT", "DELETE") and r.status == 200 and r.fault is None:
            uuid = uuid_of_custom_path(r.path)
            assert uuid not in applied, f"{uuid} written twice in one run"
            applied[uuid] = r.body
    return applied


def test_second_sync_run_of_the_same_input_sends_zero_writes(faulty_server: ChartMogulServer) -> None:
    first, _ = run_operator(customers=_rerun_input(), mode="sync")
    assert (first["succeeded"], first["failed"]) == (RERUN_CUSTOMERS, 0), first["failures"]
    _settle(faulty_server)
    assert len(_applied_writes(faulty_server)) == RERUN_CUSTOMERS
    state = _state(faulty_server)
    assert state == {f"cus_rr_{i:03d}": stored_values(i) for i in range(RERUN_CUSTOMERS)}

    faulty_server.clear_requests()
    second, _ = run_operator(task_id="again", customers=_rerun_input(), mode="sync")
    _settle(faulty_server)
    assert (second["succeeded"], second["failed"]) == (RERUN_CUSTOMERS, 0), second["failures"]
    assert (second["added"], second["changed"], second["unchanged"]) == (0, 0, 5 * RERUN_CUSTOMERS)
    assert [r for r in faulty_server.requests if r.method != "GET"] == [], "a re-run wrote"
    assert any(r.fault for r in faulty_server.requests), "the second run met faults too"
    assert _state(faulty_server) == state


def test_second_add_run_writes_the_same_values(faulty_server: ChartMogulServer) -> None:
    first, _ = run_operator(customers=_rerun_input())
    assert (first["succeeded"], first["failed"]) == (RERUN_CUSTOMERS, 0), first["failures"]
    _settle(faulty_server)
    first_writes = _applied_writes(faulty_server)
    state = _state(faulty_server)
    definitions = faulty_server.definitions

    faulty_server.clear_requests()
    second, _ = run_operator(task_id="again", customers=_rerun_input())
    _settle(faulty_server)
    assert (second["succeeded"], second["failed"]) == (RERUN_CUSTOMERS, 0), second["failures"]
    assert _applied_writes(faulty_server) == first_writes, "the re-run wrote different values"
    assert {r.status for r in faulty_server.requests if r.fault is None} == {200}, "a conflicting write"
    assert _state(faulty_server) == state
    assert faulty_server.definitions == definitions


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def test_report_and_dead_letter_rows_are_strict_json_even_for_nan_input(
    chartmogul_conn: ChartMogulServer, sqlite_dead_letter: Callable[[str], list]
) -> None:
    chartmogul_conn.add_customer(uuid="cus_nan")
    records = [
        {"customer_uuid": "cus_nan", "custom": [{"type": "Decimal", "key": "mrr", "value": float("nan")}]}
    ]
    report, _ = run_operator(
        customers=records, max_failures=1, dead_letter_conn_id="dead_letter", dead_letter_table="dl"
    )
    assert report["failures"][0]["stage"] == "validation"
    (row,) = sqlite_dead_letter("SELECT record FROM dl")
    json.loads(row[0], parse_constant=_refuse_constant)
    json.dumps(report, allow_nan=False)
