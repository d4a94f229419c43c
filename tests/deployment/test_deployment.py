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

import datetime as dt
import json
import math
import os
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
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
RESUME_FILE = "chartmogul_deployment_resume"
RESUME_DAG, TIMEOUT_DAG = "chartmogul_deployment_resume", "chartmogul_deployment_timeout"
RESUME_CUSTOMERS, TIMEOUT_CUSTOMERS = 3000, 2000  # as in dags/chartmogul_deployment_resume.py
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
    shutil.copy(Path(__file__).parent / "dags" / f"{RESUME_FILE}.py", dags)
    (scratch / "pids").mkdir()
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
            "CHARTMOGUL_DEPLOYMENT_PID_DIR": str(scratch / "pids"),
        },
    )
    try:
        deployment.airflow("db", "migrate", timeout=300)
        deployment.start_core()
        deployment.wait_for_dags([XCOM_DAG, SQL_DAG, STOP_DAG, RESUME_DAG, TIMEOUT_DAG])
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


def post_writes(server: ServerProcess) -> list[dict[str, Any]]:
    """The write requests (``POST .../customers/<uuid>/attributes/custom``) in the request log."""
    return [r for r in server.admin("GET", "requests?bodies=0") if r["method"] == "POST"]


def customer_of(write: dict[str, Any]) -> str:
    return str(write["path"].split("/")[3])


def test_a_push_killed_half_way_resumes_on_airflow_s_retry_and_sends_almost_nothing_twice(
    airflow: AirflowDeployment, server: ServerProcess, scratch: Path
) -> None:
    """SIGKILL to the task's process (no on_kill, no last checkpoint): the retry skips what the
    killed try's last checkpoint says was answered; only what was answered after it goes again."""
    uuids = [f"cus_kill_{i:04d}" for i in range(RESUME_CUSTOMERS)]
    server.add_customers([{"uuid": uuid} for uuid in uuids])
    server.clear_request_log()

    run_id = airflow.trigger(RESUME_DAG, "deployment-resume")
    wait_for(
        lambda: len(post_writes(server)) >= RESUME_CUSTOMERS / 2,
        timeout=240,
        interval=0.5,
        what="half the customers to be written",
    )
    pid = int((scratch / "pids" / f"{RESUME_DAG}.1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()  # the server's clock too: CLOCK_MONOTONIC is system-wide

    assert airflow.wait_for_run(RESUME_DAG, run_id, timeout=300) == "success"
    ti = airflow.task_instances(RESUME_DAG, run_id)[("push", -1)]
    assert (ti["state"], ti["try_number"]) == ("success", 2)

    writes = post_writes(server)
    answered_before = {customer_of(w) for w in writes if w["status"] == 200 and w["ended"] < killed_at}
    assert len(answered_before) >= RESUME_CUSTOMERS / 2 - 50, "the kill came before half way"
    sent_after = Counter(customer_of(w) for w in writes if w["started"] > killed_at)
    again = answered_before & set(sent_after)
    print(
        f"\nresume after SIGKILL: {len(answered_before)} answered before the kill, "
        f"{len(again)} of them sent again ({len(again) / RESUME_CUSTOMERS:.2%} of the input); "
        f"try 2 sent {sum(sent_after.values())}"
    )
    assert len(again) <= RESUME_CUSTOMERS // 100, f"{len(again)} answered customers were sent again"
    assert set(sent_after) | answered_before == set(uuids), "a customer was never written"
    attributes = server.custom_attributes()
    assert all(attributes[uuid] == {"seats": i} for i, uuid in enumerate(uuids))

    report = airflow.xcom(RESUME_DAG, run_id, "push")
    assert report["resumed"]["from_try"] == 1, report["resumed"]
    assert report["total"] + report["resumed"]["done_earlier"] == RESUME_CUSTOMERS
    assert (report["succeeded"], report["failed"]) == (report["total"], 0)


def utc_seconds(iso: str) -> float:
    """An Airflow API date (ISO 8601, ``Z`` or ``+00:00``) as seconds since the epoch."""
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def split_by_try(writes: list[dict[str, Any]], tries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``writes`` by the try whose ``start_date``..``end_date`` holds their arrival.

    The server stamps a request with ``time.monotonic()``, Airflow a try with the wall clock; both
    are this machine's clocks, and the offset between them is read here once.

    :raises AssertionError: when a write lies in no try's span (the split would be a guess).
    """
    offset = time.time() - time.monotonic()
    spans = [(utc_seconds(ti["start_date"]), utc_seconds(ti["end_date"])) for ti in tries]
    per_try: list[list[dict[str, Any]]] = [[] for _ in spans]
    for write in writes:
        arrived = write["started"] + offset
        index = next((i for i, (start, end) in enumerate(spans) if start <= arrived <= end), None)
        assert index is not None, f"a write arrived at {arrived:.3f}, in no try's span {spans}"
        per_try[index].append(write)
    return per_try


def test_tries_cut_short_by_execution_timeout_finish_the_push_between_them(
    airflow: AirflowDeployment, server: ServerProcess
) -> None:
    """Each try stops after 10 s; without resume every one would send the same first customers
    again and none would finish. With it the tries share the push out."""
    uuids = [f"cus_timeout_{i:04d}" for i in range(TIMEOUT_CUSTOMERS)]
    server.add_customers([{"uuid": uuid} for uuid in uuids])
    server.clear_request_log()

    run_id = airflow.trigger(TIMEOUT_DAG, "deployment-timeout")
    assert airflow.wait_for_run(TIMEOUT_DAG, run_id, timeout=400) == "success"
    tries = airflow.tries(TIMEOUT_DAG, run_id, "push")
    assert tries[-1]["state"] == "success", tries
    assert len(tries) >= 2, "the push did not need a retry: the test shows nothing"

    writes = post_writes(server)
    per_try = split_by_try(writes, tries)
    seen: set[str] = set()
    new_per_try, sent_per_try = [], [len(w) for w in per_try]
    for try_writes in per_try:
        customers = {customer_of(w) for w in try_writes}
        new_per_try.append(len(customers - seen))
        seen |= customers
    print(
        f"\nexecution_timeout=10s: {len(tries)} tries, new customers per try {new_per_try}, "
        f"sent per try {sent_per_try}, {len(writes)} sent for {TIMEOUT_CUSTOMERS}"
    )
    assert seen == set(uuids)
    # Every try that ran out of time moved the push on; the number of tries is what those shares
    # need: ceil(2,000 / customers per try), counted with the smallest share.
    assert all(new_per_try), new_per_try
    assert len(tries) <= math.ceil(TIMEOUT_CUSTOMERS / min(new_per_try[:-1])), new_per_try
    assert len(tries) >= math.ceil(TIMEOUT_CUSTOMERS / max(new_per_try)), new_per_try
    # A stop leaves the requests then in flight (at most max_connections, 10) unanswered: those
    # (and only those) go again.
    twice = Counter(map(customer_of, writes)).most_common(5)
    assert len(writes) - TIMEOUT_CUSTOMERS <= (len(tries) - 1) * 10, twice
    report = airflow.xcom(TIMEOUT_DAG, run_id, "push")
    assert report["resumed"]["from_try"] == len(tries) - 1, report["resumed"]
    assert report["total"] + report["resumed"]["done_earlier"] == TIMEOUT_CUSTOMERS
    attributes = server.custom_attributes()
    assert all(attributes[uuid] == {"seats": i} for i, uuid in enumerate(uuids))


def test_the_api_key_is_in_no_log_file(airflow: AirflowDeployment) -> None:
    """Runs last: every task log, component log and DAG-processor log written so far."""
    files = airflow.log_files()
    task_logs = [path for path in files if "dag_id=" in str(path)]
    assert len(task_logs) >= 4, f"expected the runs' task logs under {airflow.logs}: {files}"
    assert any(b"push_attributes" in path.read_bytes() for path in task_logs)
    leaked = [str(path) for path in files if API_KEY.encode() in path.read_bytes()]
    assert leaked == []
