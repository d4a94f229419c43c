"""Stop early when hopeless: a bad key (401) or a read-only key (403) stops the whole run at once.

Retrying other customers cannot help when ChartMogul refuses the key, so the run must stop after
the requests already in flight, say what to fix, and leave a report that says ``aborted``.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_chartmogul.testing.server import ChartMogulServer
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
    assert report["total"] == report["failed"] == CUSTOMERS, "every record is in the report"
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
    assert report["total"] == CUSTOMERS
    assert len(report["failures"]) == CUSTOMERS
