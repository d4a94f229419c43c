"""The customers Asset: its URI, and the events a push records, on Airflow's own outlet-event
accessors (what a task's ``context["outlet_events"]`` is)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_chartmogul.assets import (
    changed_something,
    customers_asset_uri,
    event_extra,
    record_asset_events,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.version_compat import Asset, AssetAlias
from tests.conftest import connection_json

try:  # Airflow 3
    from airflow.sdk.execution_time.context import OutletEventAccessors
except ImportError:  # Airflow 2.10+
    from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef,attr-defined]

CUSTOMERS = Asset(uri="chartmogul://api.chartmogul.com/customers")
ALIAS = AssetAlias(name="chartmogul-customers-changed")
REPORT = {
    "total": 3, "succeeded": 2, "failed": 1, "skipped": 0,
    "added": 4, "changed": 1, "unchanged": 2, "cleared": 0,
    "mode": "sync", "dry_run": False, "failures": [{"customer": "x"}],
}  # fmt: skip
UNCHANGED = {**REPORT, "added": 0, "changed": 0, "cleared": 0}
EXTRA = {
    "total": 3, "succeeded": 2, "failed": 1, "skipped": 0,
    "added": 4, "changed": 1, "unchanged": 2, "cleared": 0,
    "mode": "sync", "dry_run": False,
}  # fmt: skip


@pytest.fixture(autouse=True)
def _production_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", json.dumps({"conn_type": "chartmogul", "password": "sk_x_12345"})
    )


def _alias_events(events: OutletEventAccessors, alias: AssetAlias) -> list[tuple[str, dict]]:
    """(asset URI, extra) of the events added to ``alias``: attrs objects on Airflow 3, dicts
    (``dest_dataset_uri``) on Airflow 2."""
    accessor = events[alias]
    added = getattr(accessor, "asset_alias_events", None) or getattr(accessor, "dataset_alias_events", [])
    if added and isinstance(added[0], dict):
        return [(e["dest_dataset_uri"], e["extra"]) for e in added]
    return [(e.dest_asset_key.uri, e.extra) for e in added]


def test_the_asset_uri_is_the_connections_api_host_and_customers() -> None:
    assert customers_asset_uri("chartmogul_default") == CUSTOMERS.uri


def test_an_asset_outlets_event_carries_the_runs_counts() -> None:
    events = OutletEventAccessors()

    record_asset_events([CUSTOMERS], events, REPORT, chartmogul_conn_id="chartmogul_default")

    assert events[CUSTOMERS].extra == EXTRA
    json.dumps(events[CUSTOMERS].extra)  # an event's extra must be JSON


def test_an_alias_outlet_gets_the_customers_asset_event_only_when_the_run_changed_something() -> None:
    changed, unchanged, dry = OutletEventAccessors(), OutletEventAccessors(), OutletEventAccessors()

    record_asset_events([ALIAS], changed, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([ALIAS], unchanged, UNCHANGED, chartmogul_conn_id="chartmogul_default")
    record_asset_events([ALIAS], dry, {**REPORT, "dry_run": True}, chartmogul_conn_id="chartmogul_default")

    assert _alias_events(changed, ALIAS) == [(CUSTOMERS.uri, EXTRA)]
    assert _alias_events(unchanged, ALIAS) == []
    assert _alias_events(dry, ALIAS) == []


def test_a_clear_is_a_change_and_other_outlets_are_left_alone() -> None:
    assert changed_something({**UNCHANGED, "cleared": 1})
    assert not changed_something(UNCHANGED)
    events = OutletEventAccessors()
    other = Asset(uri="s3://bucket/attributes.parquet")

    record_asset_events(["not an asset"], events, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([], events, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([other], None, REPORT, chartmogul_conn_id="chartmogul_default")  # no task context

    assert len(events) == 0
    assert event_extra({}) == dict.fromkeys(EXTRA, 0) | {"mode": "", "dry_run": False}


# ---- a real run ----------------------------------------------------------------------------------

_ALIAS_DAG = """
import pendulum
from airflow.sdk import Asset, AssetAlias, dag
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

@dag(dag_id="alias_producer", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))
def alias_producer():
    AddCustomAttributesOperator(
        task_id="push",
        customers=[{"external_id": "acct-1", "custom": [{"type": "Integer", "key": "seats", "value": 3}]}],
        mode="sync",
        outlets=[AssetAlias("chartmogul-customers-changed")],
    )

@dag(dag_id="asset_producer", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))
def asset_producer():
    AddCustomAttributesOperator(
        task_id="push",
        customers=[{"external_id": "acct-1", "custom": [{"type": "Integer", "key": "seats", "value": 3}]}],
        mode="sync",
        outlets=[Asset("chartmogul-customers-every-run")],
    )

alias_producer()
asset_producer()
"""

_RUN = """
import json, sys
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
from sqlalchemy import select

bag = DagBag(dag_folder=sys.argv[1])
DagBundlesManager().sync_bundles_to_db()
sync_bag_to_db(bag, "dags-folder", None)
states = [str(bag.dags[dag_id].test().state) for dag_id in sys.argv[2:]]
with create_session() as session:
    events = [
        (asset.uri, event.extra)
        for event, asset in session.execute(
            select(AssetEvent, AssetModel)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .order_by(AssetEvent.id)
        )
    ]
print("RESULT", json.dumps({"states": states, "events": events}))
"""


@pytest.mark.db
def test_real_runs_record_events_with_counts_and_an_alias_none_for_a_run_that_changed_nothing(
    chartmogul_server: ChartMogulServer, tmp_path: Path
) -> None:
    pytest.importorskip("airflow.sdk", reason="the DAG file uses Airflow 3's names")
    uuid = chartmogul_server.add_customer(external_id="acct-1")["uuid"]
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "producers.py").write_text(_ALIAS_DAG)
    env = {
        **os.environ,
        # A metadata database of its own, with this DAG folder as its bundle.
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": connection_json(chartmogul_server),
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    # The first sync writes seats=3; the next two find it there and change nothing.
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(dags), "alias_producer", "alias_producer", "asset_producer"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])

    assert result["states"] == ["success", "success", "success"]
    assert chartmogul_server.custom_attributes(uuid) == {"seats": 3}
    host = chartmogul_server.url.split("://", 1)[1].rstrip("/")
    counts = {"total": 1, "succeeded": 1, "failed": 0, "skipped": 0, "mode": "sync", "dry_run": False}
    assert [tuple(event) for event in result["events"]] == [
        # The alias: an event for the customers Asset only for the run that changed something.
        (
            f"chartmogul://{host}/customers",
            {**counts, "added": 1, "changed": 0, "unchanged": 0, "cleared": 0},
        ),
        # An Asset outlet: Airflow's event for every successful run, the counts in its extra.
        (
            "chartmogul-customers-every-run",
            {**counts, "added": 0, "changed": 0, "unchanged": 1, "cleared": 0},
        ),
    ]
