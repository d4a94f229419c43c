"""The example DAGs: they import cleanly, and each one runs end to end with ``dag.test()``.

The end-to-end tests (``@pytest.mark.db``) run in the temporary ``AIRFLOW_HOME`` that
``tests/conftest.py`` sets up, with a real metadata database (``airflow db migrate`` once per
session), against the project's ChartMogul-compatible server; connections come from environment
variables. They check the server's final state (which typed attributes landed on which customer)
and the operator's report (XCom). All ``dag.test()`` calls share this process: the first pays
Airflow's start-up (about 10 s), the next ones take about a second each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.testing.dag_runs import task_xcom
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.redis import RedisServer, redis_server  # noqa: F401 (a fixture)

try:  # Airflow >= 3.1
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.10 / 2.11 / 3.0
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
XCOM_DAG = "chartmogul_attributes_from_xcom"
SQL_DAG = "chartmogul_attributes_from_sql"
SHARDED_DAG = "chartmogul_attributes_sharded"
SHARDED_BUDGET_CONN = "chartmogul_budget_redis"
ASSET_DAGS = {"chartmogul_attributes_asset_producer", "chartmogul_attributes_asset_consumer"}
EXAMPLE_DAG_IDS = {XCOM_DAG, SQL_DAG, SHARDED_DAG, *ASSET_DAGS}

# The customers chartmogul_attributes_from_xcom computes attributes for, one per identifier kind.
XCOM_UUID = "cus_7e4dd3a4-1c6b-4b36-9e6c-3b0a5a0f2a11"
XCOM_EXTERNAL_ID = "acct-1042"
XCOM_EMAIL = "finance@globex.example"

TABLE_DDL = """
    CREATE TABLE customer_attributes (
        external_id  TEXT PRIMARY KEY,
        plan_tier    TEXT,
        seats        INTEGER,
        cac          NUMERIC,  -- SQLite hands back 1800 as int and 99.5 as float
        is_pro       INTEGER,  -- 0/1
        converted_at TEXT,     -- ISO 8601
        segment      TEXT
    )
"""
LONG_SEGMENT = "enterprise; " * 25  # 300 characters: ChartMogul refuses String values over 255


def _connection_env_vars() -> list[str]:
    return ["AIRFLOW_CONN_CHARTMOGUL_DEFAULT", "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB"]


# ---- importing ---------------------------------------------------------------------------------------


def test_every_example_file_imports_into_a_dagbag_without_connections_or_requests(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _connection_env_vars():
        monkeypatch.delenv(name, raising=False)
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS
    python_files = {path.resolve() for path in EXAMPLE_DAGS.glob("*.py")}
    assert {Path(dag.fileloc).resolve() for dag in bag.dags.values()} == python_files, (
        "every .py file in example_dags/ defines a DAG"
    )
    assert chartmogul_server.requests == [], "parsing a DAG file must not call ChartMogul"


def test_example_dags_are_documented_and_never_catch_up() -> None:
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    for dag_id in EXAMPLE_DAG_IDS:
        dag = bag.dags[dag_id]  # not get_dag(): that asks the metadata DB
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id}: its docstring says what it shows"
        assert dag.catchup is False, dag_id
        assert dag.start_date is not None and dag.start_date.year == 2025, dag_id
        assert "chartmogul" in dag.tags


def test_sharded_example_shares_one_account_wide_budget_instead_of_split_rates() -> None:
    """Every shard takes its requests from the Redis budget; none carries a hand-split rate."""
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    task = bag.dags[SHARDED_DAG].get_task("push_shard")
    kwargs = getattr(task, "partial_kwargs", None)
    assert kwargs is not None, "push_shard is a mapped task (.partial().expand())"
    assert kwargs["shared_budget_conn_id"] == SHARDED_BUDGET_CONN
    for split in ("max_requests_per_second", "max_connections", "max_active_tis_per_dagrun", "pool"):
        assert kwargs.get(split) in (None, "default_pool"), f"{split} is left to the shared budget"
    assert kwargs["customer_lookup"] == "per_customer", "a shard never lists the whole account again"


# ---- running: fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture
def server(
    airflow_db: None, chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> ChartMogulServer:
    """The ChartMogul-compatible server, with ``chartmogul_default`` pointing at it, no SQL connection."""
    monkeypatch.delenv("AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB", raising=False)
    return chartmogul_conn


@pytest.fixture
def example_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[tuple]], Path]]:
    """Make the ``customer_attributes`` table with the given rows; ``chartmogul_example_db`` points at it."""

    def make(rows: list[tuple]) -> Path:
        path = tmp_path / "example.db"
        with sqlite3.connect(path) as db:
            db.execute(TABLE_DDL)
            db.executemany("INSERT INTO customer_attributes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.close()
        monkeypatch.setenv(
            "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
        )
        return path

    yield make


def run_dag(dag: Any, **kwargs: Any) -> Any:
    """``dag.test()``; the DagRun it returns (Airflow 2.10+ and 3.x all return one)."""
    run = dag.test(**kwargs)
    assert run is not None, "dag.test() returned no DagRun"
    return run


def task_states(run: Any) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}


def xcom(run: Any, task_id: str, map_index: int = -1) -> Any:
    """The ``return_value`` XCom of one task instance of ``run``; fails the test when there is none."""
    value = task_xcom(run, task_id, map_index=map_index)
    assert value is not None, f"no XCom from {task_id}[{map_index}] in {run.run_id}"
    return value


def writes(server: ChartMogulServer) -> list[Any]:
    return [r for r in server.requests if r.method in ("POST", "PUT", "DELETE")]


def sources_sent(server: ChartMogulServer) -> set[str]:
    """The ``source`` of every attribute the writes sent (POST lists, PUT maps)."""
    sources = set()
    for request in writes(server):
        custom = request.body["custom"]
        entries = custom if isinstance(custom, list) else list(custom.values())
        sources |= {entry["source"] for entry in entries if isinstance(entry, dict)}
    return sources


# ---- chartmogul_attributes_from_xcom ---------------------------------------------------------------------


@pytest.mark.db
def test_xcom_example_writes_the_computed_attributes_and_logs_the_report(
    server: ChartMogulServer, dags: dict[str, Any]
) -> None:
    by_uuid = server.add_customer(uuid=XCOM_UUID)["uuid"]
    by_external_id = server.add_customer(external_id=XCOM_EXTERNAL_ID)["uuid"]
    by_email = server.add_customer(email=XCOM_EMAIL)["uuid"]
    bystander = server.add_customer(external_id="acct-0001", email="someone@else.example")["uuid"]

    run = run_dag(dags[XCOM_DAG])

    assert str(run.state) == "success"
    assert task_states(run) == {
        ("compute_attributes", -1): "success",
        ("push_attributes", -1): "success",
        ("log_report", -1): "success",
    }
    # 42 seats, $5,200, 610 logins in 30 days (14.5 per seat)
    assert server.custom_attributes(by_uuid) == {
        "plan_tier": "enterprise",
        "seats": 42,
        "cac": 5200.0,
        "churn_risk": "low",
        "at_risk": False,
        "converted_at": "2024-02-01T09:30:00.000Z",
    }
    # 8 seats, $1,150.50, 40 logins (5 per seat)
    assert server.custom_attributes(by_external_id) == {
        "plan_tier": "team",
        "seats": 8,
        "cac": 1150.5,
        "churn_risk": "medium",
        "at_risk": False,
        "converted_at": "2024-06-17T14:05:00.000Z",
    }
    # 2 seats, $310, 3 logins (1.5 per seat)
    assert server.custom_attributes(by_email) == {
        "plan_tier": "starter",
        "seats": 2,
        "cac": 310.0,
        "churn_risk": "high",
        "at_risk": True,
        "converted_at": "2025-01-08T00:00:00.000Z",
    }
    assert server.custom_attributes(bystander) == {}
    assert server.definitions == {
        "plan_tier": "String",
        "seats": "Integer",
        "cac": "Decimal",
        "churn_risk": "String",
        "at_risk": "Boolean",
        "converted_at": "Timestamp",
    }
    assert sources_sent(server) == {f"airflow:{XCOM_DAG}"}

    report = xcom(run, "push_attributes")
    assert (report["total"], report["succeeded"], report["failed"], report["skipped"]) == (3, 3, 0, 0)
    assert report["added"] == 3 * 6
    assert report["failures"] == []
    assert len(xcom(run, "compute_attributes")) == 3


@pytest.mark.db
def test_xcom_example_fails_the_run_when_a_customer_fails_and_keeps_the_report(
    server: ChartMogulServer, dags: dict[str, Any]
) -> None:
    """max_failures=0: an unknown customer fails the push task and the run; the others are written."""
    by_uuid = server.add_customer(uuid=XCOM_UUID)["uuid"]
    by_external_id = server.add_customer(external_id=XCOM_EXTERNAL_ID)["uuid"]  # no one has XCOM_EMAIL

    run = run_dag(dags[XCOM_DAG])

    assert str(run.state) == "failed", "a failed push must not be hidden by the downstream task"
    states = task_states(run)
    assert states[("push_attributes", -1)] == "failed"
    assert states[("log_report", -1)] == "upstream_failed"
    assert server.custom_attributes(by_uuid)["plan_tier"] == "enterprise"
    assert server.custom_attributes(by_external_id)["plan_tier"] == "team"

    report = xcom(run, "push_attributes")  # published although the task failed
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 2, 1)
    (failure,) = report["failures"]
    assert failure["customer"] == f"email={XCOM_EMAIL}"
    assert failure["stage"] == "resolution"
    assert failure["record"]["email"] == XCOM_EMAIL  # ready to replay


# ---- chartmogul_attributes_from_sql ---------------------------------------------------------------------

SQL_ROWS = [
    # external_id, plan_tier, seats, cac, is_pro, converted_at, segment
    ("acct-001", "enterprise", 40, 1800, 1, "2024-03-15 10:00:00", "enterprise"),
    ("acct-002", "team", 8, 99.5, 0, "2024-07-01T00:00:00Z", None),
    ("acct-003", "starter", None, None, 0, None, "smb"),  # NULLs leave attributes alone
    ("acct-004", "free", 0, None, 0, None, "smb"),  # below the default min_seats (1)
    ("acct-005", "team", 5, 250.0, 1, "2025-01-20 08:30:00", LONG_SEGMENT),  # refused: > 255 chars
    ("acct-999", "team", 3, 120.0, 0, None, "smb"),  # not a ChartMogul customer
]
# What acct-001 becomes in ChartMogul (tests/deployment checks the same rows read from PostgreSQL).
SQL_ACCT_001_ATTRIBUTES = {
    "plan_tier": "enterprise",
    "seats": 40,
    "cac": 1800.0,
    "pro": True,
    "converted_at": "2024-03-15T10:00:00.000Z",
    "segment": "enterprise",
}


@pytest.mark.db
def test_sql_example_syncs_the_table_reports_bad_rows_and_reruns_idempotently(
    server: ChartMogulServer, dags: dict[str, Any], example_db: Callable[[list[tuple]], Path]
) -> None:
    example_db(SQL_ROWS)
    uuids = {
        ext: server.add_customer(external_id=ext)["uuid"] for ext in (f"acct-00{i}" for i in range(1, 6))
    }

    run = run_dag(dags[SQL_DAG])

    assert str(run.state) == "success", "the two bad rows are within max_failures"
    assert task_states(run) == {("sync_customer_attributes", -1): "success"}
    assert server.custom_attributes(uuids["acct-001"]) == SQL_ACCT_001_ATTRIBUTES
    assert server.custom_attributes(uuids["acct-002"]) == {
        "plan_tier": "team",
        "seats": 8,
        "cac": 99.5,
        "pro": False,
        "converted_at": "2024-07-01T00:00:00.000Z",
    }
    assert server.custom_attributes(uuids["acct-003"]) == {
        "plan_tier": "starter",
        "pro": False,
        "segment": "smb",
    }
    assert server.custom_attributes(uuids["acct-004"]) == {}, "filtered out by {{ params.min_seats }}"
    assert server.custom_attributes(uuids["acct-005"]) == {}, "a record with a bad value is not sent at all"
    assert server.definitions == {
        "plan_tier": "String",
        "seats": "Integer",
        "cac": "Decimal",  # attribute_types: the first value (1800) alone would make it an Integer
        "pro": "Boolean",  # attribute_types: 0/1
        "converted_at": "Timestamp",  # attribute_types: text
        "segment": "String",
    }
    assert sources_sent(server) == {f"airflow:{SQL_DAG}"}

    report = xcom(run, "sync_customer_attributes")
    assert (report["total"], report["succeeded"], report["failed"], report["skipped"]) == (5, 3, 2, 0)
    assert report["succeeded"] + report["failed"] + report["skipped"] == report["total"]
    assert (report["added"], report["changed"]) == (6 + 5 + 3, 0)
    failures = {failure["record"]["external_id"]: failure for failure in report["failures"]}
    assert set(failures) == {"acct-005", "acct-999"}
    assert failures["acct-005"]["stage"] == "validation"
    assert "'segment'" in failures["acct-005"]["error"] and "255" in failures["acct-005"]["error"]
    assert failures["acct-999"]["stage"] == "resolution"
    assert "no ChartMogul customer" in failures["acct-999"]["error"]

    # A second run with min_seats=0: only acct-004 is new; the rest is unchanged, so not written again.
    server.clear_requests()
    rerun = run_dag(dags[SQL_DAG], run_conf={"min_seats": 0})

    assert str(rerun.state) == "success"
    report = xcom(rerun, "sync_customer_attributes")
    assert (report["total"], report["succeeded"], report["failed"]) == (6, 4, 2)
    assert (report["added"], report["changed"], report["unchanged"]) == (4, 0, 6 + 5 + 3)
    assert [r.path for r in writes(server)] == [f"/v1/customers/{uuids['acct-004']}/attributes/custom"]
    assert server.custom_attributes(uuids["acct-004"]) == {
        "plan_tier": "free",
        "seats": 0,
        "pro": False,
        "segment": "smb",
    }


# ---- chartmogul_attributes_sharded ---------------------------------------------------------------------


@pytest.fixture
def budget_redis(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:  # noqa: F811
    """The sharded example's ``chartmogul_budget_redis`` connection, to a real redis-server."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{SHARDED_BUDGET_CONN.upper()}",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port}),
    )
    redis_server.client().flushall()
    return redis_server


def _sharded_rows(count: int) -> list[tuple]:
    return [
        (f"acct-{i:04d}", "team" if i % 3 else "enterprise", i, None, i % 2, None, None)
        for i in range(1, count + 1)
    ]


@pytest.mark.db
def test_sharded_example_resolves_customers_in_one_listing_pass_and_writes_every_customer(
    server: ChartMogulServer,
    dags: dict[str, Any],
    example_db: Callable[[list[tuple]], Path],
    budget_redis: RedisServer,
) -> None:
    """150 customers and 300 bystanders (3 listing pages): one request per customer and 3 more."""
    rows = _sharded_rows(150)
    example_db(rows)
    uuids = {row[0]: server.add_customer(external_id=row[0])["uuid"] for row in rows}
    bystanders = [server.add_customer(external_id=f"other-{i}")["uuid"] for i in range(300)]
    server.configure(rate_limit=40, max_parallel=20)  # ChartMogul's account limits

    run = run_dag(dags[SHARDED_DAG])

    assert str(run.state) == "success"
    states = task_states(run)
    assert set(states.values()) == {"success"}
    shards = xcom(run, "split_into_shards")
    assert len(shards) == 3
    assert sorted(index for task_id, index in states if task_id == "push_shard") == [0, 1, 2]
    sent = [record["customer_uuid"] for shard in shards for record in shard]
    assert sorted(sent) == sorted(uuids.values()), "each customer is in exactly one shard, by uuid"
    assert all("external_id" not in record for shard in shards for record in shard)
    assert min(len(shard) for shard in shards) > 30, "the hash spreads the customers"

    for index, shard in enumerate(shards):
        report = xcom(run, "push_shard", map_index=index)
        assert (report["total"], report["succeeded"], report["failed"]) == (len(shard), len(shard), 0)
    assert xcom(run, "summarize") == {"shards": 3, "total": 150, "succeeded": 150, "failed": 0, "skipped": 0}

    for external_id, plan_tier, seats, _, is_pro, _, _ in rows:
        assert server.custom_attributes(uuids[external_id]) == {
            "plan_tier": plan_tier,
            "seats": seats,
            "pro": bool(is_pro),
        }
    assert all(server.custom_attributes(uuid) == {} for uuid in bystanders)
    # The cost: 450 customers listed at 200 a page, then one write per customer; no lookup.
    gets = [r for r in server.requests if r.method == "GET"]
    assert [r.path for r in gets] == ["/v1/customers"] * 3
    assert len(writes(server)) == 150
    stats = server.stats()
    assert (stats["rate_limited"], stats["parallel_rejected"]) == (0, 0)


@pytest.mark.db
def test_sharded_example_reports_a_customer_the_listing_did_not_resolve_in_its_shard(
    server: ChartMogulServer,
    dags: dict[str, Any],
    example_db: Callable[[list[tuple]], Path],
    budget_redis: RedisServer,
) -> None:
    """An unknown external id is looked up once by its shard, fails it with the reason; the rest land."""
    rows = _sharded_rows(6)
    rows.append(("acct-unknown", "team", 1, None, 0, None, None))
    example_db(rows)
    uuids = {row[0]: server.add_customer(external_id=row[0])["uuid"] for row in rows[:-1]}

    run = run_dag(dags[SHARDED_DAG])

    assert str(run.state) == "failed"
    shards = xcom(run, "split_into_shards")
    (unknown_shard,) = [i for i, shard in enumerate(shards) if any("external_id" in r for r in shard)]
    states = task_states(run)
    assert states[("push_shard", unknown_shard)] == "failed"
    others = [i for i in range(len(shards)) if i != unknown_shard]
    assert all(states[("push_shard", i)] == "success" for i in others)
    assert states[("summarize", -1)] == "upstream_failed"
    report = xcom(run, "push_shard", map_index=unknown_shard)
    (failure,) = report["failures"]
    assert failure["stage"] == "resolution" and failure["record"]["external_id"] == "acct-unknown"
    assert all(server.custom_attributes(uuid)["plan_tier"] for uuid in uuids.values())
    lookups = [r for r in server.requests if r.method == "GET" and r.query.get("external_id")]
    assert [r.query["external_id"] for r in lookups] == [["acct-unknown"]]


@pytest.mark.db
def test_sql_example_without_a_chartmogul_connection_says_so_and_reads_nothing(
    airflow_db: None,
    chartmogul_server: ChartMogulServer,
    dags: dict[str, Any],
    example_db: Callable[[list[tuple]], Path],
    monkeypatch: pytest.MonkeyPatch,
    task_log: Callable[[], str],
) -> None:
    """Found in a real deployment: a missing ``chartmogul_default`` was reported as "the task was
    interrupted" with a ``total: 0`` report although the table had rows."""
    monkeypatch.delenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", raising=False)
    example_db(SQL_ROWS)

    run = run_dag(dags[SQL_DAG])

    assert str(run.state) == "failed"
    assert task_states(run) == {("sync_customer_attributes", -1): "failed"}
    log = task_log()
    assert (
        "The Airflow connection 'chartmogul_default' does not exist, so nothing was read or sent: add "
        "a connection of type 'chartmogul' with that id and the API key as its password"
    ) in log, log[-3000:]
    assert "interrupted" not in log
    assert "Stopped:" not in log
    assert task_xcom(run, "sync_customer_attributes") is None, "no report of a run that never started"
    assert chartmogul_server.requests == []


def test_the_sql_example_says_which_extra_gives_its_sqlite_connection() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((EXAMPLE_DAGS.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["sqlite"] == ["apache-airflow-providers-sqlite"]
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert 'pip install "airflow-provider-chartmogul[sqlite]"' in bag.dags[SQL_DAG].doc_md
