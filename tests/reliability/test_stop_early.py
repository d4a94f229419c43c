"""Stop early when hopeless: a bad key (401) or a read-only key (403) stops the whole run at once;
and stop fast with input unread.

Retrying other customers cannot help when ChartMogul refuses the key, so the run must stop after
the requests already in flight, say what to fix, and leave a report that says ``aborted``. A stop
does not read the rest of the input: the report counts it (a list has a length) or says that the
input was not read to the end (``input_complete: false``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.version_compat import AirflowTaskTimeout
from tests.conftest import READ_ONLY_KEY, connection_json
from tests.reliability._support import CUSTOM_PATH, RecordingTI, run_operator, typed_record

CUSTOMERS = 1000
WORKERS = 10
# The engine queues at most 4 records per worker and runs one per worker: once the first refusal
# is back, at most that many requests can have been started.
MOST_REQUESTS = 5 * WORKERS


def _records() -> list[dict]:
    return [typed_record(f"cus_stop_{i:04d}", i) for i in range(CUSTOMERS)]


@pytest.fixture
def server(chartmogul_server: ChartMogulServer) -> ChartMogulServer:
    chartmogul_server.add_customers([{"uuid": f"cus_stop_{i:04d}"} for i in range(CUSTOMERS)])
    return chartmogul_server


@pytest.mark.parametrize(
    ("api_key", "status", "what_to_fix"),
    [
        ("sk_revoked_0000_SECRET", 401, "check the API key in the connection's password field"),
        (READ_ONLY_KEY, 403, "writing custom attributes needs a read-write key"),
    ],
    ids=["401-bad-key", "403-read-only-key"],
)
def test_refused_key_stops_the_run_at_once(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, api_key: str, status: int, what_to_fix: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, api_key=api_key, max_connections=WORKERS, max_requests_per_second=1000),
    )
    ti = RecordingTI()
    started = time.monotonic()
    report, error = run_operator(customers=_records(), max_failures=CUSTOMERS, context={"ti": ti})
    elapsed = time.monotonic() - started

    assert error is not None, "a refused key fails the task, whatever max_failures says"
    message = str(error)
    assert message.startswith("Stopped: ")
    assert f"HTTP {status}" in message
    assert what_to_fix in message
    assert "fix the connection and re-run" in message

    requests = server.requests
    assert 1 <= len(requests) <= MOST_REQUESTS, f"{len(requests)} requests for {CUSTOMERS} customers"
    assert {r.status for r in requests} == {status}
    assert len({r.path for r in requests}) == len(requests), "a refused request is not retried"
    assert elapsed < 10
    assert all(not server.custom_attributes(f"cus_stop_{i:04d}") for i in range(CUSTOMERS))

    assert report["aborted"] and f"HTTP {status}" in report["aborted"]
    assert report["succeeded"] == 0
    assert {f["stage"] for f in report["failures"]} <= {"api", "aborted"}
    refused = [f for f in report["failures"] if f["stage"] == "api"]
    assert len(refused) == len(requests)
    assert all(f["status"] == status for f in refused)
    assert all(
        f["error"].startswith("not attempted: the run stopped (") and what_to_fix in f["error"]
        for f in report["failures"]
        if f["stage"] == "aborted"
    )
    assert report["total"] == report["failed"], "every record read is in the report"
    assert report["input_complete"] is False
    assert report["total"] + report["records_not_read"] == CUSTOMERS, "the rest is counted"
    # the report reached XCom although the task failed
    assert json.loads(ti.xcom["return_value"]) == json.loads(json.dumps(report))


def test_key_revoked_mid_run_stops_and_keeps_what_was_written(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_connections=WORKERS, max_requests_per_second=1000),
    )
    server.fail_customer("cus_stop_0300", status=401)
    report, error = run_operator(customers=_records(), max_failures=CUSTOMERS)

    assert error is not None and "HTTP 401" in str(error)
    assert report["aborted"]
    written = {r.path for r in server.requests if r.status == 200 and r.method == "POST" and r.fault is None}
    assert report["succeeded"] == len(written) >= 250
    requests = sorted(server.requests, key=lambda r: r.started)
    first_refusal = next(r for r in requests if r.status == 401)
    late = [r for r in requests if r.started > first_refusal.ended]
    assert len(late) <= MOST_REQUESTS, "requests kept going after the key was refused"
    for i in range(CUSTOMERS):
        uuid = f"cus_stop_{i:04d}"
        assert bool(server.custom_attributes(uuid)) == (CUSTOM_PATH.format(uuid) in written)


def test_after_an_abort_every_input_record_is_in_the_report(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, api_key=READ_ONLY_KEY, max_connections=WORKERS),
    )
    report, _ = run_operator(customers=_records(), max_failures=CUSTOMERS)
    assert report["total"] == len(report["failures"])
    assert report["total"] + report["records_not_read"] == CUSTOMERS


# ---------------------------------------------------------------------------------------------
# A stop with input unread: counted (or said to be unread), never read to the end
# ---------------------------------------------------------------------------------------------

LARGE_INPUT = 50_000
WAIT_SECONDS = 30.0


def _small_record(i: int) -> dict:
    return {
        "customer_uuid": f"cus_stop_{i % CUSTOMERS:04d}",
        "custom": [{"type": "Integer", "key": "seats", "value": i}],
    }


def _kill_after_writes(
    server: ChartMogulServer, operator: AddCustomAttributesOperator, writes: int
) -> threading.Thread:
    """A thread that calls ``operator.on_kill()`` once the server has received ``writes`` requests."""

    def kill() -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(server.requests) < writes and time.monotonic() < deadline:
            time.sleep(0.01)
        operator.on_kill()

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    return killer


def _execute(operator: AddCustomAttributesOperator, ti: RecordingTI) -> dict:
    with pytest.raises(CustomAttributesPushError) as caught:
        operator.execute(context={"ti": ti})
    assert json.loads(ti.xcom["return_value"]) == json.loads(json.dumps(caught.value.report))
    return caught.value.report


def test_a_stop_counts_a_large_unread_list_without_reading_it(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_connections=WORKERS, max_requests_per_second=200),
    )
    records = [_small_record(i) for i in range(LARGE_INPUT)]
    operator = AddCustomAttributesOperator(task_id="push", customers=records, max_failures=LARGE_INPUT)
    killer = _kill_after_writes(server, operator, 20)
    report = _execute(operator, RecordingTI())
    killer.join(WAIT_SECONDS)

    assert report["aborted"]
    assert report["input_complete"] is False
    # Only what was read is in the report; the rest is counted from the list's length.
    assert report["total"] < LARGE_INPUT // 2
    assert report["total"] + report["records_not_read"] == LARGE_INPUT
    assert report["succeeded"] + report["failed"] == report["total"]


def test_a_stop_leaves_a_large_query_unread_and_says_so(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE attrs (customer_uuid TEXT, seats INTEGER)")
        db.executemany(
            "INSERT INTO attrs VALUES (?, ?)",
            ((f"cus_stop_{i % CUSTOMERS:04d}", i) for i in range(LARGE_INPUT)),
        )
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_connections=WORKERS, max_requests_per_second=200),
    )
    operator = AddCustomAttributesOperator(
        task_id="push",
        sql="SELECT customer_uuid, seats FROM attrs",
        sql_conn_id="source",
        max_failures=LARGE_INPUT,
    )
    killer = _kill_after_writes(server, operator, 20)
    report = _execute(operator, RecordingTI())
    killer.join(WAIT_SECONDS)

    assert report["input_complete"] is False
    assert report["records_not_read"] is None  # a query's length is not known without reading it
    assert report["total"] < LARGE_INPUT // 2
    # The query was closed unread: the database is not locked by a cursor left open.
    with sqlite3.connect(database, timeout=0) as db:
        db.execute("DELETE FROM attrs")
    db.close()


def test_a_timeout_while_a_slow_upstream_is_read_says_the_input_was_not_read_to_the_end(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_connections=WORKERS, max_requests_per_second=1000),
    )

    def upstream() -> Iterator[dict]:
        for i in range(100):
            if i == 19:
                # What Airflow's execution_timeout raises in the thread that is reading.
                raise AirflowTaskTimeout("Timeout, PID: 1234")
            yield _small_record(i)

    ti = RecordingTI()
    operator = AddCustomAttributesOperator(task_id="push", customers=upstream())
    with pytest.raises(AirflowTaskTimeout):
        operator.execute(context={"ti": ti})

    report = json.loads(ti.xcom["return_value"])
    assert report["total"] == 19
    assert report["input_complete"] is False
    assert report["records_not_read"] is None
    assert "AirflowTaskTimeout" in report["aborted"]


def test_a_stop_while_sync_writes_are_in_flight_keeps_their_answers(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.configure(latency=0.2)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_connections=WORKERS, max_requests_per_second=1000),
    )
    records = [_small_record(i) for i in range(CUSTOMERS)]
    operator = AddCustomAttributesOperator(
        task_id="push", customers=records, mode="sync", customer_lookup="listing", max_failures=CUSTOMERS
    )
    killer = _kill_after_writes(server, operator, 30)
    report = _execute(operator, RecordingTI())
    killer.join(WAIT_SECONDS)

    assert report["aborted"]
    # The writes in flight at the stop came back into the customer index, which was still open.
    assert not [f for f in report["failures"] if "unexpected error" in (f["error"] or "")]
    assert report["succeeded"] >= 1
    assert report["total"] + report.get("records_not_read", 0) == CUSTOMERS
