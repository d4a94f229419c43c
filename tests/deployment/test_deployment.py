"""The example DAGs in a real Airflow 3.3 deployment: API server, scheduler and DAG processor with
the LocalExecutor on PostgreSQL, runs started with ``airflow dags trigger``, results read back from
the REST API (``/api/v2``, with a token from the simple auth manager).

What ``dag.test()`` cannot show: the tasks run in processes of their own under the supervisor,
connections come from the environment of the components, XComs and logs go where a deployment
keeps them, and "Mark as failed" reaches the running task as SIGTERM.

Slow (a few minutes) and needs PostgreSQL's server binaries: skipped unless
``CHARTMOGUL_DEPLOYMENT_TEST=1`` (``scripts/deployment-test.sh`` sets it; ``.ci/run`` calls that).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.testing.process import ServerProcess
from tests.deployment.airflow_deployment import (
    ROOT,
    AirflowDeployment,
    PostgresCluster,
    airflow_connection_json,
    scratch_dir,
    wait_for,
)
from tests.example_dags.test_example_dags import (
    SQL_ACCT_001_ATTRIBUTES,
    SQL_DAG,
    SQL_ROWS,
    XCOM_DAG,
    XCOM_EMAIL,
    XCOM_EXTERNAL_ID,
    XCOM_UUID,
)

pytestmark = [
    pytest.mark.deployment,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not os.environ.get("CHARTMOGUL_DEPLOYMENT_TEST"),
        reason="a real Airflow deployment: set CHARTMOGUL_DEPLOYMENT_TEST=1 (scripts/deployment-test.sh)",
    ),
]

STOP_DAG = "chartmogul_deployment_stop"
# Only known to this run's server; must never appear in a log file.
API_KEY = f"sk_deploy_{secrets.token_hex(16)}"
STOP_CUSTOMERS = 200


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = scratch_dir("chartmogul-deployment-")
    yield path
    artifacts = ROOT / ".artifacts" / "deployment-logs"
    shutil.rmtree(artifacts, ignore_errors=True)
    if (path / "airflow" / "logs").exists():  # for CI: what the components and tasks logged
        shutil.copytree(path / "airflow" / "logs", artifacts)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(scratch: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(scratch / "postgres")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def data_dsn(postgres: PostgresCluster) -> str:
    """The database the example DAGs read (``customer_attributes``) and write dead letters to."""
    import psycopg2

    dsn = postgres.create_database("chartmogul_data")
    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE customer_attributes (external_id TEXT PRIMARY KEY, plan_tier TEXT,"
            " seats INTEGER, cac NUMERIC, is_pro INTEGER, converted_at TEXT, segment TEXT)"
        )
        cursor.executemany("INSERT INTO customer_attributes VALUES (%s, %s, %s, %s, %s, %s, %s)", SQL_ROWS)
        cursor.execute("CREATE TABLE stop_customers (external_id TEXT PRIMARY KEY, seats INTEGER)")
        cursor.executemany(
            "INSERT INTO stop_customers VALUES (%s, %s)",
            [(f"stop-{i:04d}", i) for i in range(STOP_CUSTOMERS)],
        )
    db.close()
    return dsn


@pytest.fixture(scope="module")
def server(scratch: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(api_key=API_KEY, latency=0.02, log_path=scratch / "chartmogul-server.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def airflow(
    scratch: Path, postgres: PostgresCluster, data_dsn: str, server: ServerProcess
) -> Iterator[AirflowDeployment]:
    dags = scratch / "dags"
    dags.mkdir()
    for name in (f"{XCOM_DAG}.py", f"{SQL_DAG}.py"):
        shutil.copy(ROOT / "example_dags" / name, dags / name)
    shutil.copytree(ROOT / "example_dags" / "sql", dags / "sql")
    shutil.copy(Path(__file__).parent / "dags" / f"{STOP_DAG}.py", dags)
    chartmogul = {"conn_type": "chartmogul", "host": server.url, "password": API_KEY, "extra": {}}
    deployment = AirflowDeployment(
        home=scratch / "airflow",
        python=sys.executable,
        metadata_dsn=postgres.create_database("airflow"),
        dags_folder=dags,
        executor="LocalExecutor",
        env={
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(chartmogul),
            "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB": airflow_connection_json(data_dsn),
        },
    )
    try:
        deployment.airflow("db", "migrate", timeout=300)
        deployment.start_core()
        deployment.wait_for_dags([XCOM_DAG, SQL_DAG, STOP_DAG])
        yield deployment
    finally:
        deployment.stop()


def states(airflow: AirflowDeployment, dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    return {key: str(ti["state"]) for key, ti in airflow.task_instances(dag_id, run_id).items()}


def test_xcom_example_runs_and_its_report_is_in_xcom(
    airflow: AirflowDeployment, server: ServerProcess
) -> None:
    by_uuid, by_external_id, by_email = server.add_customers(
        [{"uuid": XCOM_UUID}, {"external_id": XCOM_EXTERNAL_ID}, {"email": XCOM_EMAIL}]
    )

    run_id = airflow.trigger(XCOM_DAG, "deployment-xcom")
    assert airflow.wait_for_run(XCOM_DAG, run_id) == "success"

    assert states(airflow, XCOM_DAG, run_id) == {
        ("compute_attributes", -1): "success",
        ("push_attributes", -1): "success",
        ("log_report", -1): "success",
    }
    report = airflow.xcom(XCOM_DAG, run_id, "push_attributes")
    assert (report["total"], report["succeeded"], report["failed"], report["skipped"]) == (3, 3, 0, 0)
    assert report["added"] == 18
    attributes = server.custom_attributes()
    assert attributes[by_uuid]["plan_tier"] == "enterprise"
    assert attributes[by_external_id]["plan_tier"] == "team"
    assert attributes[by_email]["at_risk"] is True


def test_sql_example_reads_postgres_and_reports_the_bad_rows(
    airflow: AirflowDeployment, server: ServerProcess
) -> None:
    # The DAG is @daily: unpaused, the scheduler started its latest run on its own. Let that one
    # finish before the customers exist, so it cannot write what this run is checked on.
    for run in airflow.api("GET", f"/dags/{SQL_DAG}/dagRuns")["dag_runs"]:
        airflow.wait_for_run(SQL_DAG, run["dag_run_id"])
    uuids = dict(
        zip(
            [f"acct-00{i}" for i in range(1, 6)],
            server.add_customers([{"external_id": f"acct-00{i}"} for i in range(1, 6)]),
            strict=True,
        )
    )

    run_id = airflow.trigger(SQL_DAG, "deployment-sql", conf={"min_seats": 1})
    assert airflow.wait_for_run(SQL_DAG, run_id) == "success", "two bad rows are within max_failures"

    assert states(airflow, SQL_DAG, run_id) == {("sync_customer_attributes", -1): "success"}
    report = airflow.xcom(SQL_DAG, run_id, "sync_customer_attributes")
    assert (report["total"], report["succeeded"], report["failed"], report["skipped"]) == (5, 3, 2, 0)
    failures = {failure["record"]["external_id"]: failure["stage"] for failure in report["failures"]}
    assert failures == {"acct-005": "validation", "acct-999": "resolution"}
    attributes = server.custom_attributes()
    assert attributes[uuids["acct-001"]] == SQL_ACCT_001_ATTRIBUTES
    assert attributes[uuids["acct-004"]] == {}, "filtered out by min_seats"
    assert attributes[uuids["acct-005"]] == {}, "a record with a bad value is not sent"


# Needs the operator's on_kill -> hook.cancel() (bbd49f2). Without it the task goes on until the
# supervisor's SIGKILL, about 15 s after the mark, with no report in XCom and no dead letters.
def test_a_task_marked_failed_mid_push_stops_and_leaves_its_report_and_dead_letters(
    airflow: AirflowDeployment, server: ServerProcess, data_dsn: str
) -> None:
    import psycopg2

    uuids = server.add_customers([{"external_id": f"stop-{i:04d}"} for i in range(STOP_CUSTOMERS)])
    server.clear_request_log()
    server.configure(latency=0.3)  # a slow server: 4 req/s over 2 connections, about a minute
    try:
        run_id = airflow.trigger(STOP_DAG, "deployment-stop")

        def writes() -> list[dict[str, Any]]:
            return [r for r in server.request_log() if r["method"] == "POST"]

        wait_for(lambda: len(writes()) >= 20, timeout=180, interval=0.5, what="the push to be under way")
        airflow.set_task_state(STOP_DAG, run_id, "slow_push", "failed")
        marked_at = time.monotonic()  # the server's clock too: CLOCK_MONOTONIC is system-wide

        # Requests stop: the log stops growing, soon after the mark.
        def quiet_for_5_s() -> bool:
            log = server.request_log()
            return bool(log) and time.monotonic() - max(r["started"] for r in log) > 5

        wait_for(quiet_for_5_s, timeout=60, interval=1.0, what="requests to stop")
        sent = writes()
        last = max(r["started"] for r in sent)
        # Without on_kill the supervisor's SIGKILL stops it, about 15 s after the mark here.
        assert last - marked_at < 12, f"a request arrived {last - marked_at:.1f} s after the mark"
        assert len(sent) < STOP_CUSTOMERS / 2, f"{len(sent)} of {STOP_CUSTOMERS} written: it did not stop"
    finally:
        server.configure(latency=0.02)

    assert airflow.wait_for_run(STOP_DAG, run_id) == "failed"
    assert states(airflow, STOP_DAG, run_id) == {("slow_push", -1): "failed"}
    # The partial report reached XCom before the task exited ...
    report = airflow.xcom(STOP_DAG, run_id, "slow_push")
    assert report["aborted"], report
    assert report["total"] == STOP_CUSTOMERS
    assert report["succeeded"] + report["failed"] + report["skipped"] == STOP_CUSTOMERS
    ours = set(uuids)
    written = {uuid for uuid, custom in server.custom_attributes().items() if custom and uuid in ours}
    assert report["succeeded"] == len(written), "the report counts exactly what reached ChartMogul"
    assert report["failed"] >= STOP_CUSTOMERS / 2
    # ... and so did every failure, one dead-letter row each, with its record to replay.
    with psycopg2.connect(data_dsn) as db, db.cursor() as cursor:
        cursor.execute("SELECT customer, record FROM chartmogul_dead_letters WHERE run_id = %s", (run_id,))
        rows = cursor.fetchall()
    db.close()
    assert len(rows) == report["failed"]
    dead = {json.loads(record)["external_id"] for _, record in rows}
    assert len(dead) == report["failed"], "one row per failed customer"
    uuid_of = {f"stop-{i:04d}": uuid for i, uuid in enumerate(uuids)}
    assert not {uuid_of[external_id] for external_id in dead} & written, "a dead letter was written"


def test_the_api_key_is_in_no_log_file(airflow: AirflowDeployment) -> None:
    """Runs last: every task log, component log and DAG-processor log written so far."""
    files = airflow.log_files()
    task_logs = [path for path in files if "dag_id=" in str(path)]
    assert len(task_logs) >= 4, f"expected the runs' task logs under {airflow.logs}: {files}"
    assert any(b"push_attributes" in path.read_bytes() for path in task_logs)
    leaked = [str(path) for path in files if API_KEY.encode() in path.read_bytes()]
    assert leaked == []
