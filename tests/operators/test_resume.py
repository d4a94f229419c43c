"""A retry resumes: Airflow's own retries of one task instance, through ``dag.test()``'s task runner
(in a child process with a DAGs folder of its own), on Airflow 3.3's task state store; on older
Airflow (no store) the same DAG's retry succeeds by sending everything again.

What each try sent comes from the test server's request log; what each try did, from the report
(XCom) a downstream task writes to a file. Waits are gates on events; no bound on time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

AIRFLOW_VERSION = tuple(int(p) for p in importlib.metadata.version("apache-airflow").split(".")[:2])
HAS_STATE_STORE = AIRFLOW_VERSION >= (3, 3)
needs_state_store = pytest.mark.skipif(
    not HAS_STATE_STORE, reason="the task state store is new in Airflow 3.3"
)

DAG_FILE = """
import datetime as dt
import json
import os
from pathlib import Path

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

CUSTOMERS = int(os.environ["CUSTOMERS"])
SEATS = {"type": "Integer", "key": "seats"}
TIMEOUT = float(os.environ.get("TIMEOUT_SECONDS") or 0)

with DAG(dag_id="chartmogul_resume", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    push = AddCustomAttributesOperator(
        task_id="push",
        customers=[
            {"customer_uuid": f"cus_resume_{i:04d}", "custom": [SEATS | {"value": i}]}
            for i in range(CUSTOMERS)
        ],
        retries=int(os.environ["RETRIES"]),
        retry_delay=dt.timedelta(0),
        execution_timeout=dt.timedelta(seconds=TIMEOUT) if TIMEOUT else None,
        resume=os.environ.get("RESUME", "1") == "1",
    )

    @task(trigger_rule="all_done")
    def keep_report(report):
        Path(os.environ["REPORT_PATH"]).write_text(json.dumps(report), encoding="utf-8")

    keep_report(push.output)

if __name__ == "__main__":
    print("state:", dag.test().state, flush=True)
"""


def _uuid(i: int) -> str:
    return f"cus_resume_{i:04d}"


def _run_dag(tmp_path: Path, server: ChartMogulServer, **env: Any) -> tuple[str, dict[str, Any]]:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    (dags / "chartmogul_resume.py").write_text(DAG_FILE)
    report_path = tmp_path / "report.json"
    child_env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "REPORT_PATH": str(report_path),
        **{key: str(value) for key, value in env.items()},
    }
    done = subprocess.run(
        [sys.executable, str(dags / "chartmogul_resume.py")],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert report_path.exists(), output[-4000:]
    return output, json.loads(report_path.read_text())


def _writes(server: ChartMogulServer) -> Counter[str]:
    """How many write requests reached each customer (answered or not)."""
    return Counter(r.path.split("/")[3] for r in server.requests if r.method == "POST")


def _failing_in_try_1(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, customers: int, *, max_retries: int
) -> set[str]:
    """``customers`` customers on the server; every 30th answers 500 on every attempt of the
    first try (``max_retries`` + 1 attempts), then accepts. The uuids of those that fail."""
    server.add_customers([{"uuid": _uuid(i)} for i in range(customers)])
    failing = {_uuid(i) for i in range(0, customers, 30)}
    for uuid in failing:
        server.fail_customer(uuid, status=500, times=max_retries + 1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_retries=max_retries, max_requests_per_second=1000, max_connections=10),
    )
    return failing


@pytest.mark.db
@needs_state_store
def test_a_retry_after_failures_sends_only_what_failed(
    airflow_db: None, chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """1,000 customers, 34 of which answer 500 on every attempt of try 1: the task fails
    (max_failures=0), Airflow retries it, and try 2 sends those 34 and nothing else. (The
    3,000-customer SIGKILL of the issue runs in tests/deployment.)"""
    customers = 1000
    server = chartmogul_server
    attempts = 4  # the connection's max_retries=3, plus the first attempt
    failing = _failing_in_try_1(server, monkeypatch, customers, max_retries=attempts - 1)

    output, report = _run_dag(tmp_path, server, CUSTOMERS=customers, RETRIES=1)

    assert "state: success" in output, output[-4000:]
    writes = _writes(server)
    assert set(writes) == {_uuid(i) for i in range(customers)}, "every customer was sent"
    again = {uuid for uuid, count in writes.items() if count > (attempts + 1 if uuid in failing else 1)}
    assert again == set(), f"{len(again)} customers answered in try 1 were sent again"
    assert all(writes[uuid] == attempts + 1 for uuid in failing)
    assert all(server.custom_attributes(_uuid(i)) == {"seats": i} for i in range(customers))
    # try 2's report: the 34 it sent, and the 966 try 1 answered
    assert len(failing) == 34
    assert (report["total"], report["succeeded"], report["failed"]) == (34, 34, 0)
    assert report["resumed"] == {"from_try": 1, "watermark": 0, "done_earlier": 966}
    assert report["total"] + report["resumed"]["done_earlier"] == customers


@pytest.mark.db
@needs_state_store
def test_tries_cut_short_by_execution_timeout_each_carry_on_where_the_last_stopped(
    airflow_db: None, chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without resume every try would send the same first customers again and none would finish;
    with it each try goes on from the last one's progress, until the push is complete."""
    customers = 400
    server = chartmogul_server
    server.add_customers([{"uuid": _uuid(i)} for i in range(customers)])
    server.configure(latency=0.05)
    connections = 2
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, max_requests_per_second=1000, max_connections=connections),
    )

    output, report = _run_dag(tmp_path, server, CUSTOMERS=customers, RETRIES=20, TIMEOUT_SECONDS=3)

    assert "state: success" in output, output[-4000:]
    tries = report["resumed"]["from_try"] + 1
    assert tries >= 2, "the push did not need a retry: the test shows nothing"
    writes = _writes(server)
    assert set(writes) == {_uuid(i) for i in range(customers)}
    # each stop may leave the requests then in flight unanswered: those (and only those) go again
    assert sum(writes.values()) - customers <= (tries - 1) * connections, writes.most_common(5)
    assert all(server.custom_attributes(_uuid(i)) == {"seats": i} for i in range(customers))
    assert report["total"] + report["resumed"]["done_earlier"] == customers
    assert "ran past its execution_timeout" in output
    assert "fix the connection" not in output


# Not marked ``db`` although it needs the metadata database: the version matrix (scripts/test-matrix.sh)
# leaves ``db`` tests out, and this is the test that must run on every Airflow version.
def test_a_failed_try_succeeds_on_airflow_s_retry_on_every_version(
    airflow_db: None, chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The DAG above, 300 customers, 10 of which answer 500 on every attempt of try 1: the task
    fails, Airflow retries it and the retry succeeds. On 3.3+ it sends the 10 failures only; before
    3.3 there is no task state store and it sends all 300 again, which is safe: writes are upserts
    (each customer ends with the values sent, once)."""
    customers = 300
    server = chartmogul_server
    attempts = 2  # the connection's max_retries=1, plus the first attempt
    failing = _failing_in_try_1(server, monkeypatch, customers, max_retries=attempts - 1)

    output, report = _run_dag(tmp_path, server, CUSTOMERS=customers, RETRIES=1)

    assert "state: success" in output, output[-4000:]
    writes = _writes(server)
    assert all(server.custom_attributes(_uuid(i)) == {"seats": i} for i in range(customers))
    assert all(writes[uuid] == attempts + 1 for uuid in failing), "failed twice in try 1, written in try 2"
    answered_in_try_1 = {_uuid(i) for i in range(customers)} - failing
    sent_again = {uuid for uuid in answered_in_try_1 if writes[uuid] > 1}
    if HAS_STATE_STORE:
        assert sent_again == set()
        assert (report["total"], report["succeeded"], report["failed"]) == (10, 10, 0)
        assert report["resumed"] == {"from_try": 1, "watermark": 0, "done_earlier": 290}
    else:  # no task state store: the retry sends every record again
        assert sent_again == answered_in_try_1
        assert all(writes[uuid] == 2 for uuid in answered_in_try_1)
        assert (report["total"], report["succeeded"], report["failed"]) == (customers, customers, 0)
        assert "resumed" not in report
