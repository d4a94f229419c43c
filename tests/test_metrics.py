"""Metrics: what ChartMogulMetrics sends, read off a real StatsD UDP socket on loopback, through
Airflow's own StatsD logger; and a real ``dag.test()`` run with ``[metrics] statsd_on``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_chartmogul.client import classify
from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.client.send_control import SendControl
from airflow_provider_chartmogul.metrics import (
    REQUEST_OUTCOMES,
    ChartMogulMetrics,
    RequestMetrics,
    RunCounts,
    task_tags,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

TAGS = {"dag_id": "nightly", "task_id": "push"}


class StatsdListener:
    """A StatsD server as far as a test needs one: a UDP socket on 127.0.0.1 that keeps every line."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def lines(self, *, until: str | None = None, wait: float = 60.0) -> list[str]:
        """Every line received; with ``until``, keeps reading (up to ``wait`` s) until a line
        starting with it arrives, else only what is already queued."""
        got: list[str] = []
        self.sock.settimeout(wait if until else 0.5)
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return got
            got.extend(line for line in data.decode().splitlines() if line)
            if until and any(line.startswith(until) for line in got):
                self.sock.settimeout(0.5)  # what was sent with it is queued already
                until = None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


def _airflow_statsd_logger(monkeypatch: pytest.MonkeyPatch, port: int, *, influxdb_tags: bool) -> object:
    """Airflow's own StatsD logger, configured through ``[metrics]`` as a deployment would."""
    pytest.importorskip("statsd")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", str(influxdb_tags))
    try:  # Airflow 3.3+
        from airflow.sdk.observability.metrics.statsd_logger import get_statsd_logger
    except ImportError:  # Airflow 2.10+, 3.0 to 3.2
        from airflow.metrics.statsd_logger import get_statsd_logger  # type: ignore[no-redef]
    import inspect

    # Airflow 2.x declares the factory as get_statsd_logger(cls), bound to its Stats, and never
    # reads cls; 3.x takes no argument.
    if inspect.signature(get_statsd_logger).parameters:
        return get_statsd_logger(None)  # type: ignore[call-arg]
    return get_statsd_logger()


def test_every_metric_reaches_statsd_under_the_chartmogul_prefix(
    statsd: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = ChartMogulMetrics(
        TAGS, stats=_airflow_statsd_logger(monkeypatch, statsd.port, influxdb_tags=False)
    )  # type: ignore[arg-type]

    for outcome in REQUEST_OUTCOMES:
        metrics.request_finished(outcome, 0.25)
    metrics.send_rate(39.0)
    metrics.run_finished(
        RunCounts(written=7, failed=2, skipped=1, unchanged=3, added=12, changed=4, cleared=0)
    )
    lines = statsd.lines(until="airflow.chartmogul.attributes.cleared")

    counters = [line for line in lines if line.endswith("|c")]
    assert counters == [f"airflow.chartmogul.requests.{outcome}:1|c" for outcome in REQUEST_OUTCOMES] + [
        "airflow.chartmogul.customers.written:7|c",
        "airflow.chartmogul.customers.failed:2|c",
        "airflow.chartmogul.customers.skipped:1|c",
        "airflow.chartmogul.customers.unchanged:3|c",
        "airflow.chartmogul.attributes.added:12|c",
        "airflow.chartmogul.attributes.changed:4|c",
        "airflow.chartmogul.attributes.cleared:0|c",
    ]
    timers = [line for line in lines if line.endswith("|ms")]
    assert timers == ["airflow.chartmogul.request.duration:250.000000|ms"] * len(REQUEST_OUTCOMES)
    assert [line for line in lines if line.endswith("|g")] == ["airflow.chartmogul.send_rate:39.0|g"]


def test_tags_are_dag_id_and_task_id_where_the_backend_takes_tags(
    statsd: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain StatsD has no tags (the names alone, summed over tasks); with Airflow's
    ``statsd_influxdb_enabled`` the tags ride on the name, as Airflow's own task metrics do."""
    metrics = ChartMogulMetrics(
        TAGS, stats=_airflow_statsd_logger(monkeypatch, statsd.port, influxdb_tags=True)
    )  # type: ignore[arg-type]

    metrics.request_finished("rate_limited", 0.1)

    assert statsd.lines(until="airflow.chartmogul.request.duration") == [
        "airflow.chartmogul.requests.rate_limited,dag_id=nightly,task_id=push:1|c",
        "airflow.chartmogul.request.duration,dag_id=nightly,task_id=push:100.000000|ms",
    ]


def test_the_send_rate_is_sent_when_it_moves_by_a_tenth_or_more(
    statsd: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = ChartMogulMetrics(stats=_airflow_statsd_logger(monkeypatch, statsd.port, influxdb_tags=False))  # type: ignore[arg-type]

    for rate in (39.0, 39.0, 38.95, 31.2, 31.25, 35.0):
        metrics.send_rate(rate)
    metrics.run_finished(RunCounts(0, 0, 0, 0, 0, 0, 0))  # a marker: everything before it has arrived

    lines = statsd.lines(until="airflow.chartmogul.attributes.cleared")
    assert [line for line in lines if line.endswith("|g")] == [
        "airflow.chartmogul.send_rate:39.0|g",
        "airflow.chartmogul.send_rate:31.2|g",
        "airflow.chartmogul.send_rate:35.0|g",
    ]


def test_the_engines_causes_are_the_metrics_outcomes() -> None:
    """One vocabulary: every cause the engine's classifier gives has its counter."""
    assert set(typing.get_args(classify.Cause)) == set(REQUEST_OUTCOMES)


def test_request_metrics_hear_every_answer_of_the_send_control(
    statsd: StatsdListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the engine uses it: a gate of the send control, told each attempt's classified outcome;
    the latency runs from the attempt's send slot to its answer, on the send control's clock."""
    now = [100.0]

    def wait(event: object, timeout: float | None) -> None:  # a wait for a send slot moves the clock on
        now[0] += timeout if timeout is not None else 0.01

    limiter = RateLimiter(39, clock=lambda: now[0], wait=wait)
    metrics = ChartMogulMetrics(stats=_airflow_statsd_logger(monkeypatch, statsd.port, influxdb_tags=False))  # type: ignore[arg-type]
    flow = SendControl(
        concurrency=ConcurrencyLimit(10),
        rate=limiter,
        gates=[RequestMetrics(metrics, send_rate=lambda: limiter.rate)],
        clock=lambda: now[0],
    )

    for outcome, seconds in ((classify.OK, 0.2), (classify.THROTTLED, 0.05), (classify.TIMEOUT, 2.0)):
        ticket = flow.on_sending_request()
        assert ticket is not None
        now[0] = ticket.sent_at + seconds
        flow.on_receiving_response(ticket, outcome)
        ticket.release()
    metrics.run_finished(RunCounts(0, 0, 0, 0, 0, 0, 0))  # a marker: everything before it has arrived

    lines = [
        line
        for line in statsd.lines(until="airflow.chartmogul.attributes.cleared")
        if "customers" not in line and "attributes" not in line
    ]
    assert lines[:3] == [
        "airflow.chartmogul.requests.ok:1|c",
        "airflow.chartmogul.request.duration:200.000000|ms",
        "airflow.chartmogul.send_rate:39.0|g",
    ]
    assert lines[3:5] == [
        "airflow.chartmogul.requests.rate_limited:1|c",
        "airflow.chartmogul.request.duration:50.000000|ms",
    ]
    # The 429 cut the send rate: the gauge follows it down (and a timeout does not move it).
    gauges = [float(line.split(":")[1].removesuffix("|g")) for line in lines if line.endswith("|g")]
    assert gauges == [39.0, pytest.approx(limiter.rate, abs=0.01)]
    assert limiter.rate < 38
    assert "airflow.chartmogul.requests.timeout:1|c" in lines
    assert "airflow.chartmogul.request.duration:2000.000000|ms" in lines


def test_an_unknown_outcome_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown request outcome '418'; one of ok, rate_limited"):
        ChartMogulMetrics().request_finished("418", 0.1)  # type: ignore[arg-type]


def test_run_counts_from_a_report() -> None:
    report = {
        "succeeded": 10,
        "failed": 2,
        "skipped": 1,
        "added": 5,
        "changed": 3,
        "unchanged": 9,
        "cleared": 1,
    }

    assert RunCounts.from_report(report, unchanged_customers=4) == RunCounts(
        written=6, failed=2, skipped=1, unchanged=4, added=5, changed=3, cleared=1
    )
    # A dry run writes nothing: what it would have written is not counted as written.
    assert RunCounts.from_report({**report, "dry_run": True}, unchanged_customers=4) == RunCounts(
        written=0, failed=2, skipped=1, unchanged=0, added=0, changed=0, cleared=0
    )


def test_task_tags_outside_a_task_are_none_and_inside_come_from_the_task_instance() -> None:
    class TaskInstance:
        dag_id, task_id = "nightly", "push"

    assert task_tags() == {}
    assert task_tags({"ti": TaskInstance()}) == TAGS


def test_without_airflow_metrics_configured_nothing_is_sent_and_nothing_fails() -> None:
    metrics = ChartMogulMetrics(TAGS)  # Airflow's Stats, which is a no-op until [metrics] turns it on

    metrics.request_finished("ok", 0.01)
    metrics.send_rate(10.0)
    metrics.run_finished(RunCounts(1, 0, 0, 0, 1, 0, 0))


# ---- a real run --------------------------------------------------------------------------------------

_RUN_DAG = textwrap.dedent(
    """
    import json, sys
    from tests.example_dags.test_example_dags import EXAMPLE_DAGS, DagBag
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "chartmogul_attributes_asset.py"))
    run = bag.dags["chartmogul_attributes_asset_producer"].test()
    print("RESULT", json.dumps({"state": str(run.state)}))
    """
)


@pytest.mark.db
def test_a_real_run_with_statsd_on_sends_the_push_tasks_metrics(
    chartmogul_server: ChartMogulServer, statsd: StatsdListener, tmp_path: Path
) -> None:
    pytest.importorskip("statsd")
    pytest.importorskip("airflow.sdk", reason="Airflow 2 sends metrics from its own task runner only")
    for external_id in ("acct-2001", "acct-2002"):
        chartmogul_server.add_customer(external_id=external_id)
    env = {
        **os.environ,
        # A metadata database of its own: the run's Asset event must not reach other tests.
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": connection_json(chartmogul_server),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_DAG],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout.split("RESULT ", 1)[1]) == {"state": "success"}

    ours = [line for line in statsd.lines() if line.startswith("airflow.chartmogul.")]
    tags = ",dag_id=chartmogul_attributes_asset_producer,task_id=push_attributes"
    # Two lookups by external_id and two writes, all answered 200.
    assert ours.count(f"airflow.chartmogul.requests.ok{tags}:1|c") == 4, ours
    assert len([line for line in ours if line.startswith(f"airflow.chartmogul.request.duration{tags}:")]) == 4
    assert any(line.startswith(f"airflow.chartmogul.send_rate{tags}:") for line in ours), ours
    for line in (
        f"airflow.chartmogul.customers.written{tags}:2|c",
        f"airflow.chartmogul.customers.failed{tags}:0|c",
        f"airflow.chartmogul.attributes.added{tags}:6|c",
    ):
        assert line in ours, ours
