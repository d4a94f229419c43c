"""Partial failures never stop a healthy run: customers that always answer 500, answers whose
status line trickles, one 403 among many writes. And ChartMogul down still stops a run.

The circuit breaker's thresholds are shrunk (``open_after`` 0.3 s instead of 10 s) so that a
breaker that opens on a few failing customers would open within these small runs; what is
asserted is the run's outcome, never how long it took.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from airflow_provider_chartmogul.client import engine as engine_module
from airflow_provider_chartmogul.client.flow import CircuitBreaker
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json
from tests.reliability._support import CUSTOM_PATH, run_operator, typed_record


@pytest.fixture(autouse=True)
def quick_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        engine_module, "CircuitBreaker", functools.partial(CircuitBreaker, open_after=0.3, min_failures=3)
    )


def _seed(server: ChartMogulServer, count: int, prefix: str) -> list[dict[str, Any]]:
    uuids = [f"cus_{prefix}_{i:04d}" for i in range(count)]
    server.add_customers([{"uuid": uuid} for uuid in uuids])
    return [typed_record(uuid, i) for i, uuid in enumerate(uuids)]


def _connect(server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    settings: dict[str, Any] = {"max_retries": 2, "retry_budget": 10, "max_requests_per_second": 1000}
    settings.update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(server, **settings))


def _written(server: ChartMogulServer) -> set[str]:
    return {r.path for r in server.requests if r.method == "POST" and r.status == 200}


def test_customers_at_the_head_that_always_answer_500_fail_and_the_rest_is_written(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _seed(chartmogul_server, 530, "head")
    for record in records[:30]:
        chartmogul_server.fault_customer(record["customer_uuid"], "500")
    _connect(chartmogul_server, monkeypatch)

    report, error = run_operator(customers=records, max_failures=30)

    assert error is None, str(error)
    assert report["succeeded"] == 500 and report["failed"] == 30 and not report.get("aborted")
    failed = {f["customer_uuid"] for f in report["failures"]}
    assert failed == {r["customer_uuid"] for r in records[:30]}
    assert all(f["status"] == 500 for f in report["failures"])
    assert _written(chartmogul_server) == {CUSTOM_PATH.format(r["customer_uuid"]) for r in records[30:]}


def test_customers_at_the_tail_that_always_answer_500_do_not_stop_the_run(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _seed(chartmogul_server, 500, "tail")
    for record in records[-3:]:
        chartmogul_server.fault_customer(record["customer_uuid"], "500")
    # Long retries: the three keep failing well after the last healthy write.
    _connect(chartmogul_server, monkeypatch, max_retries=5, retry_budget=30)

    report, error = run_operator(customers=records, max_failures=3)

    assert error is None, str(error)
    assert report["succeeded"] == 497 and report["failed"] == 3 and not report.get("aborted")
    pings = [r for r in chartmogul_server.requests if r.path == "/v1/ping"]
    assert pings, "the breaker asked ChartMogul whether it was up instead of stopping the run"


def test_answers_whose_status_line_trickles_fail_their_customers_and_free_their_connections(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    chartmogul_server.configure(trickle_seconds=0.5)  # a minute and more for each head
    records = _seed(chartmogul_server, 40, "slow")
    slow = {r["customer_uuid"] for r in records[::4]}
    for uuid in slow:
        chartmogul_server.fault_customer(uuid, "trickle_head")
    _connect(chartmogul_server, monkeypatch, timeout=2, max_retries=1, retry_budget=5, max_connections=4)

    report, error = run_operator(customers=records, max_failures=10)

    assert error is None, str(error)
    assert report["succeeded"] == 30 and report["failed"] == 10
    assert {f["customer_uuid"] for f in report["failures"]} == slow
    assert all("no whole answer within the 2 s timeout" in f["error"] for f in report["failures"])
    # Every trickle that has ended ended because the client hung up, not because it was done.
    assert all(t["hung_up"] for t in chartmogul_server.stats()["trickles"])


def test_a_403_after_earlier_writes_fails_that_customer_only(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _seed(chartmogul_server, 100, "fw")
    blocked = records[60]["customer_uuid"]
    chartmogul_server.fail_customer(
        blocked, 403, body="<html><title>403 Forbidden</title>Request blocked</html>"
    )
    _connect(chartmogul_server, monkeypatch, max_connections=2)

    report, error = run_operator(customers=records, max_failures=1)

    assert error is None, str(error)
    assert report["succeeded"] == 99 and report["failed"] == 1 and not report.get("aborted")
    (failure,) = report["failures"]
    assert failure["customer_uuid"] == blocked and failure["status"] == 403


def test_a_403_on_the_first_write_stops_the_run(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _seed(chartmogul_server, 20, "first")
    chartmogul_server.fail_customer(records[0]["customer_uuid"], 403)
    _connect(chartmogul_server, monkeypatch, max_connections=1)

    report, error = run_operator(customers=records, max_failures=20)

    assert error is not None and "HTTP 403" in str(error)
    assert report["aborted"] and report["succeeded"] == 0
    assert report["total"] + report.get("records_not_read", 0) == 20


def test_chartmogul_answering_500_to_everything_still_stops_the_run(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _seed(chartmogul_server, 300, "down")
    chartmogul_server.configure(faults={"500": 1.0})
    _connect(chartmogul_server, monkeypatch)

    report, error = run_operator(customers=records, max_failures=300)

    assert error is not None and report["aborted"]
    assert "ChartMogul has answered nothing successfully" in report["aborted"]
    assert report["succeeded"] == 0
    assert report["total"] + report.get("records_not_read", 0) == 300, "every record is reported"
