"""Stopping a push: ``on_kill`` from another thread, ``execution_timeout``, and a real task runner's SIGTERM.

Each stop must end the run quickly, start no request after it (beyond the few already handed a send
slot), and leave a report that names every record: written, failed, or not attempted. Times are
the test server's own arrival times (``time.monotonic()`` in this process) against the moment the
stop was issued; the bounds are generous, the counts exact.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import (
    AddCustomAttributesOperator,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json
from tests.reliability._support import CUSTOM_PATH, RecordingTI, typed_record

CUSTOMERS = 2000
WORKERS = 10
# A request handed its send slot just before the stop may still go out; none may start later.
LATE_BOUND = 0.5
# execute raises within about 2 s of a stop (typically under 1 s here); a run that waited for its
# queued work would take about 50 s. The margin keeps a loaded CI machine from failing the test.
RAISE_BOUND = 3.0


def _uuid(i: int) -> str:
    return f"cus_kill_{i:04d}"


@pytest.fixture
def server(chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> ChartMogulServer:
    chartmogul_server.add_customers([{"uuid": _uuid(i)} for i in range(CUSTOMERS)])
    chartmogul_server.configure(latency=0.15)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_server, max_connections=WORKERS, max_requests_per_second=40),
    )
    return chartmogul_server


@pytest.fixture
def dead_letter_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dead_letters.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTERS", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def _operator(*, dead_letters: bool = True) -> AddCustomAttributesOperator:
    return AddCustomAttributesOperator(
        task_id="push",
        customers=[typed_record(_uuid(i), i) for i in range(CUSTOMERS)],
        max_failures=CUSTOMERS,
        dead_letter_conn_id="dead_letters" if dead_letters else None,
        dead_letter_table="chartmogul_failures" if dead_letters else None,
    )


def _wait_for_requests(server: ChartMogulServer, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.requests) < count:
        assert time.monotonic() < deadline, "the push did not start"
        time.sleep(0.01)


def dead_letters(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM chartmogul_failures").fetchone()[0])


def check_partial_report(
    server: ChartMogulServer, report: dict[str, Any], stopped_at: float, dead_letter_db: Path | None
) -> None:
    """Every record accounted for, the report matching the server, nothing started after the stop."""
    requests = server.requests
    late = [r for r in requests if r.started > stopped_at]
    assert len(late) <= WORKERS, f"{len(late)} requests started after the stop"
    assert all(r.started <= stopped_at + LATE_BOUND for r in requests), (
        "a request started long after the stop"
    )
    assert len(requests) < CUSTOMERS / 2, "the run went on"

    written = {r.path for r in requests if r.method == "POST" and r.status == 200}
    assert report["aborted"] and "stopped" in report["aborted"]
    # Read and reported, or (a list has a length) counted as not read: never read after the stop.
    unread = report.get("records_not_read") or 0
    assert report["total"] + unread == CUSTOMERS, "every record is in the report"
    assert report["input_complete"] == (unread == 0)
    assert report["succeeded"] == len(written)
    assert report["succeeded"] + report["failed"] == report["total"]
    not_attempted = [f for f in report["failures"] if f["stage"] == "aborted"]
    assert report["not_attempted"] == len(not_attempted)
    assert report["not_attempted"] + unread >= CUSTOMERS - len(requests)
    assert all(f["record"]["customer_uuid"] for f in not_attempted), "ready to replay"
    for i in range(CUSTOMERS):
        uuid = _uuid(i)
        assert bool(server.custom_attributes(uuid)) == (CUSTOM_PATH.format(uuid) in written)
    if dead_letter_db is not None:
        assert dead_letters(dead_letter_db) == report["failed"]


def test_on_kill_from_another_thread_stops_the_run(server: ChartMogulServer, task_log) -> None:
    # No dead-letter table here: writing ~2,000 rows through DbApiHook.insert_rows takes about a
    # second on its own, and this test times the engine (the other tests check the table).
    operator = _operator(dead_letters=False)
    ti = RecordingTI()
    stopped: dict[str, float] = {}

    def kill() -> None:
        _wait_for_requests(server, 60)
        stopped["at"] = time.monotonic()
        operator.on_kill()

    killer = threading.Thread(target=kill)
    killer.start()
    with pytest.raises(CustomAttributesPushError) as caught:
        operator.execute(context={"ti": ti})
    raised_at = time.monotonic()
    killer.join()

    assert raised_at - stopped["at"] < RAISE_BOUND, "execute did not raise soon after on_kill"
    report = caught.value.report
    message = str(caught.value)
    assert message.startswith(
        "Stopped: the task was stopped (on_kill: marked failed or cleared, or its worker shut down). "
        f"Nothing more was sent; {report['not_attempted']} customers not attempted are listed in the "
        "report (XCom); clear the task to finish the push (re-running is safe). "
        f"{report['total']} customers: "
    ), message
    assert "fix the connection" not in message
    check_partial_report(server, report, stopped["at"], None)
    assert json.loads(ti.xcom["return_value"]) == json.loads(json.dumps(report))
    assert message in task_log()


def test_execution_timeout_stops_the_run(server: ChartMogulServer, dead_letter_db: Path, task_log) -> None:
    """What the task runner does on ``execution_timeout``: ``AirflowTaskTimeout`` raised in the main
    thread by Airflow's own ``timeout`` (SIGALRM), then ``on_kill()``."""
    try:
        from airflow.sdk.exceptions import AirflowTaskTimeout
        from airflow.sdk.execution_time.timeout import timeout
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowTaskTimeout  # type: ignore[no-redef]
        from airflow.utils.timeout import timeout  # type: ignore[no-redef]

    operator = _operator()
    operator.execution_timeout = dt.timedelta(seconds=2)
    ti = RecordingTI()
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        try:
            with timeout(2):
                operator.execute(context={"ti": ti})
        except AirflowTaskTimeout:
            operator.on_kill()
            raise
    raised_at = time.monotonic()
    timed_out_at = started + 2

    assert raised_at - timed_out_at < RAISE_BOUND, "the run waited for its queued work"
    report = json.loads(ti.xcom["return_value"])
    assert "AirflowTaskTimeout" in report["aborted"]
    check_partial_report(
        server, {**report, "aborted": "stopped: " + report["aborted"]}, timed_out_at, dead_letter_db
    )
    log = task_log()
    assert (
        "Stopped: the task ran past its execution_timeout (0:00:02). Nothing more was sent; "
        f"{report['not_attempted']} customers not attempted are listed in the report (XCom, and the "
        "dead-letter table); Airflow retries it if it has retries left; if every try runs out of "
        f"time, raise execution_timeout or split the input over several tasks. {report['total']} customers: "
    ) in log, log[-3000:]
    assert "fix the connection" not in log


def test_on_kill_before_the_run_starts_sends_nothing(server: ChartMogulServer, dead_letter_db: Path) -> None:
    operator = _operator()
    operator.on_kill()
    with pytest.raises(CustomAttributesPushError) as caught:
        operator.execute(context={})
    assert server.requests == []
    report = caught.value.report
    assert report["not_attempted"] + report["records_not_read"] == CUSTOMERS
    assert report["input_complete"] is False


# ---- a real task runner ----------------------------------------------------------------------------

SIGTERM_DAG = Path(__file__).with_name("_sigterm_dag.py")


@pytest.fixture
def child_env(server: ChartMogulServer, dead_letter_db: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a child process running the DAG with ``dag.test()``: the session's
    Airflow home (migrated), a DAGs folder holding only that DAG, and the connections."""
    import os
    import shutil
    import subprocess
    import sys

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(SIGTERM_DAG, dags / SIGTERM_DAG.name)
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "CUSTOMERS": str(CUSTOMERS),
        "REPORT_PATH": str(tmp_path / "report.json"),
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    return env


@pytest.mark.db
@pytest.mark.skipif(
    int(importlib.metadata.version("apache-airflow").split(".")[0]) < 3,
    reason="Airflow 3's task runner path; Airflow 2 raises AirflowTaskTerminated (the interrupted test)",
)
def test_sigterm_through_the_task_runner_stops_the_run(
    server: ChartMogulServer, dead_letter_db: Path, child_env: dict[str, str], tmp_path: Path
) -> None:
    """Airflow 3's task runner answers SIGTERM by calling ``on_kill()`` and not raising (Airflow 2
    raises ``AirflowTaskTerminated`` in the main thread instead: the interrupted path above)."""
    import signal
    import subprocess
    import sys

    output = tmp_path / "child.log"
    with output.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, str(tmp_path / "dags" / SIGTERM_DAG.name)],
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_requests(server, 60, timeout=120)
            stopped_at = time.monotonic()
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
    log = output.read_text()

    assert "Stopped: the task was stopped (on_kill: marked failed or cleared" in log, log[-3000:]
    assert "clear the task to finish the push" in log
    assert "fix the connection" not in log
    assert "CustomAttributesPushError" in log, "the task failed"
    report = json.loads((tmp_path / "report.json").read_text())  # the XCom, read by a downstream task
    check_partial_report(server, report, stopped_at, dead_letter_db)
