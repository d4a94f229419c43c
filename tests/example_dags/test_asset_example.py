"""The Asset example: the push task produces the ChartMogul customers Asset, a second DAG is
scheduled on it, and a real run records the Asset event (and OpenLineage events) it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json
from tests.example_dags.test_example_dags import EXAMPLE_DAGS, DagBag

PRODUCER = "chartmogul_attributes_asset_producer"
CONSUMER = "chartmogul_attributes_asset_consumer"
ASSET_URI = "chartmogul://api.chartmogul.com/customers"


def _asset_uris(condition: Any) -> set[str]:
    """URIs an Asset/Dataset schedule condition (or a single Asset) depends on, on 2.x and 3.x."""
    uri = getattr(condition, "uri", None)
    if uri is not None:
        return {uri}
    uris: set[str] = set()
    for member in getattr(condition, "objects", ()):
        uris |= _asset_uris(member)
    return uris


def test_producer_outlet_and_consumer_schedule_are_the_same_asset() -> None:
    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "chartmogul_attributes_asset.py"))
    assert bag.import_errors == {}
    assert {PRODUCER, CONSUMER} <= set(bag.dag_ids)
    push = bag.dags[PRODUCER].get_task("push_attributes")
    assert [outlet.uri for outlet in push.outlets] == [ASSET_URI]
    assert push.upstream_task_ids == {"compute_attributes"}
    timetable = bag.dags[CONSUMER].timetable
    condition = getattr(timetable, "asset_condition", None) or getattr(timetable, "dataset_condition", None)
    assert condition is not None, f"{CONSUMER} is not scheduled on an Asset: {timetable!r}"
    assert _asset_uris(condition) == {ASSET_URI}


_RUN_PRODUCER = """
import json, sys
from tests.example_dags.test_example_dags import EXAMPLE_DAGS, DagBag
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import sync_bag_to_db
bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "chartmogul_attributes_asset.py"))
# The consumer must be in the metadata DB for an Asset event to queue a run of it.
DagBundlesManager().sync_bundles_to_db()
sync_bag_to_db(bag, "dags-folder", None)
run = bag.dags[sys.argv[1]].test()
print("RESULT", json.dumps({"state": str(run.state), "run_id": run.run_id}))
"""


def _run_in_fresh_process(dag_id: str, env: dict[str, str]) -> dict[str, Any]:
    """``dag.test()`` in a new interpreter: the OpenLineage listener reads its transport at start-up."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN_PRODUCER, dag_id],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(result.removeprefix("RESULT "))


@pytest.mark.db
def test_a_successful_push_records_the_asset_event_queues_the_consumer_and_emits_lineage(
    airflow_db: None,
    chartmogul_server: ChartMogulServer,
    tmp_path: Path,
) -> None:
    pytest.importorskip("airflow.sdk", reason="the run's checks read Airflow 3's asset tables")
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uuids = [chartmogul_server.add_customer(external_id=e)["uuid"] for e in ("acct-2001", "acct-2002")]
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": connection_json(chartmogul_server),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "chartmogul-tests",
        # Asset events queue runs of unpaused consumers only.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    run = _run_in_fresh_process(PRODUCER, env)

    assert run["state"] == "success"
    assert [chartmogul_server.custom_attributes(uuid) for uuid in uuids] == [
        {"seats": 30, "nps": 9, "promoter": True},
        {"seats": 4, "nps": 6, "promoter": False},
    ]
    with create_session() as session:
        asset = session.scalars(select(AssetModel).where(AssetModel.uri == ASSET_URI)).one()
        events = session.scalars(select(AssetEvent).where(AssetEvent.asset_id == asset.id)).all()
        assert [(e.source_dag_id, e.source_run_id, e.source_task_id) for e in events] == [
            (PRODUCER, run["run_id"], "push_attributes")
        ]
        queued = session.scalars(select(AssetDagRunQueue).where(AssetDagRunQueue.asset_id == asset.id)).all()
        assert [q.target_dag_id for q in queued] == [CONSUMER]

    lineage = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    push_events = {e["eventType"]: e for e in lineage if e["job"]["name"] == f"{PRODUCER}.push_attributes"}
    assert {"START", "COMPLETE"} <= set(push_events), [(e["eventType"], e["job"]["name"]) for e in lineage]
    complete = push_events["COMPLETE"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("chartmogul-tests", f"{PRODUCER}.compute_attributes")
    ]
    host = chartmogul_server.url.split("://", 1)[1].rstrip("/")
    assert (f"chartmogul://{host}", "customers") in {(d["namespace"], d["name"]) for d in complete["outputs"]}
    facet = complete["run"]["facets"]["chartmogul"]
    assert (facet["total"], facet["succeeded"], facet["failed"], facet["attributesAdded"]) == (2, 2, 0, 6)
    assert facet["_schemaURL"].endswith("ChartMogulRunFacet.json")
