"""OpenLineage facets of AddCustomAttributesOperator: inputs from a real SQLite query or from the
upstream task of an XCom, the ChartMogul customers as output, and the run's counts on completion."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pendulum
import pytest

import airflow_provider_chartmogul.openlineage
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

from openlineage.client.serde import Serde

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.decorators import task  # type: ignore[no-redef]

START = pendulum.datetime(2025, 1, 1, tz="UTC")


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real SQLite database with two tables, as the ``warehouse`` connection."""
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (external_id TEXT, plan_id TEXT, seats INTEGER)")
        db.execute("CREATE TABLE plans (id TEXT, tier TEXT)")
        db.execute("INSERT INTO accounts VALUES ('acct-1', 'p1', 12), ('acct-2', 'p2', 3)")
        db.execute("INSERT INTO plans VALUES ('p1', 'team'), ('p2', 'starter')")
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


JOIN_SQL = "SELECT a.external_id, a.seats, p.tier FROM accounts a JOIN plans p ON p.id = a.plan_id"


def _names(datasets: list) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_sql_source_inputs_are_the_tables_the_query_reads(
    warehouse: Path, chartmogul_conn: ChartMogulServer
) -> None:
    op = AddCustomAttributesOperator(task_id="push", sql=JOIN_SQL, sql_conn_id="warehouse")

    lineage = op.get_openlineage_facets_on_start()

    assert lineage is not None
    assert sorted(_names(lineage.inputs)) == [
        (f"sqlite://{warehouse}", "main.accounts"),
        (f"sqlite://{warehouse}", "main.plans"),
    ]
    host = chartmogul_conn.url.split("://", 1)[1].rstrip("/")
    assert _names(lineage.outputs) == [(f"chartmogul://{host}", "customers")]
    assert lineage.job_facets["sql"].query == JOIN_SQL
    assert "chartmogul" not in lineage.run_facets, "no counts before the run"


def test_output_namespace_is_the_connections_api_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM_PROD", json.dumps({"conn_type": "chartmogul", "password": "sk_x_12345"})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM_PROXY",
        json.dumps(
            {"conn_type": "chartmogul", "host": "proxy.example.com/chartmogul/v1", "password": "k12345"}
        ),
    )
    ops = [
        AddCustomAttributesOperator(task_id=f"t{i}", customers=[], chartmogul_conn_id=conn_id)
        for i, conn_id in enumerate(("cm_prod", "cm_proxy"))
    ]
    outputs = [op.get_openlineage_facets_on_start().outputs for op in ops]  # type: ignore[union-attr]
    assert [_names(o) for o in outputs] == [
        [("chartmogul://api.chartmogul.com", "customers")],
        [("chartmogul://proxy.example.com/chartmogul", "customers")],
    ]


def test_xcom_source_input_names_the_upstream_task(chartmogul_conn: ChartMogulServer) -> None:
    with DAG("lineage_xcom", start_date=START, schedule=None):

        @task
        def compute() -> list:
            return []

        op = AddCustomAttributesOperator(task_id="push", customers=compute())
        literal = AddCustomAttributesOperator(task_id="literal", customers=[{"customer_uuid": "cus_1"}])
        literal.set_upstream(op)  # an ordering dependency is no input

    lineage = op.get_openlineage_facets_on_start()

    assert lineage is not None
    assert _names(lineage.inputs) == [("default", "lineage_xcom.compute")]
    assert literal.get_openlineage_facets_on_start().inputs == []  # type: ignore[union-attr]


def test_mapped_task_input_names_the_task_its_expand_input_comes_from(
    chartmogul_conn: ChartMogulServer,
) -> None:
    with DAG("lineage_mapped", start_date=START, schedule=None):

        @task
        def batches() -> list:
            return [[], []]

        mapped = AddCustomAttributesOperator.partial(task_id="push").expand(customers=batches())

    # What runs is an unmapped copy whose customers is one resolved batch.
    running = mapped.unmap({"customers": []})
    lineage = running.get_openlineage_facets_on_start()

    assert lineage is not None
    assert _names(lineage.inputs) == [("default", "lineage_mapped.batches")]


def test_on_complete_adds_the_counts_of_a_real_run(
    warehouse: Path, chartmogul_conn: ChartMogulServer
) -> None:
    chartmogul_conn.add_customer(external_id="acct-1")  # acct-2 is unknown to ChartMogul: it fails
    op = AddCustomAttributesOperator(
        task_id="push", sql=JOIN_SQL, sql_conn_id="warehouse", max_failures=1, customer_lookup="per_customer"
    )
    report = op.execute(context={})

    lineage = op.get_openlineage_facets_on_complete(task_instance=None)

    assert lineage is not None
    assert sorted(d.name for d in lineage.inputs) == ["main.accounts", "main.plans"]
    facet = lineage.run_facets["chartmogul"]
    assert (
        (facet.total, facet.succeeded, facet.failed, facet.skipped)
        == (2, 1, 1, 0)
        == (
            report["total"],
            report["succeeded"],
            report["failed"],
            report["skipped"],
        )
    )
    assert (
        (facet.attributesAdded, facet.mode, facet.dryRun)
        == (report["added"], "add", False)
        == (2, "add", False)
    )
    assert facet.requests == report["requests"]["requests"] > 0
    (output,) = lineage.outputs
    assert json.loads(Serde.to_json(output))["outputFacets"]["outputStatistics"]["rowCount"] == 1
    serialized = json.loads(Serde.to_json(facet))
    assert serialized["_schemaURL"].endswith("/docs/openlineage/ChartMogulRunFacet.json")
    schema = json.loads((Path(__file__).parents[2] / "docs/openlineage/ChartMogulRunFacet.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    properties = schema["$defs"]["ChartMogulRunFacet"]["allOf"][1]
    jsonschema.validate(serialized, {"type": "object", **properties})
    assert set(serialized) - {"_producer", "_schemaURL"} == set(properties["properties"])


def test_output_statistics_count_the_customers_written() -> None:
    from airflow_provider_chartmogul.openlineage.lineage import customers_written

    report = {"succeeded": 10, "customers_unchanged": 4, "dry_run": False}
    assert customers_written(report) == 6
    assert customers_written({"succeeded": 3}) == 3  # add mode: every succeeded customer was written
    assert customers_written({**report, "dry_run": True}) == 0


def test_no_output_statistics_before_the_run(chartmogul_conn: ChartMogulServer) -> None:
    op = AddCustomAttributesOperator(task_id="push", customers=[])

    (output,) = op.get_openlineage_facets_on_start().outputs  # type: ignore[union-attr]

    assert "outputStatistics" not in json.loads(Serde.to_json(output)).get("outputFacets", {})


def test_failed_run_still_reports_its_counts(chartmogul_conn: ChartMogulServer) -> None:
    op = AddCustomAttributesOperator(
        task_id="push",
        customers=[{"customer_uuid": "cus_missing", "custom": [{"type": "Integer", "key": "n", "value": 1}]}],
    )
    with pytest.raises(Exception, match="failed"):
        op.execute(context={})

    lineage = op.get_openlineage_facets_on_failure(task_instance=None)

    assert lineage is not None
    assert lineage.run_facets["chartmogul"].failed == 1


def test_without_the_openlineage_provider_there_is_no_lineage_and_the_push_still_works(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = chartmogul_conn.add_customer(external_id="acct-9")["uuid"]
    for name in [m for m in sys.modules if m.startswith("airflow.providers.openlineage")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "airflow_provider_chartmogul.openlineage.lineage", raising=False)
    monkeypatch.delattr(airflow_provider_chartmogul.openlineage, "lineage", raising=False)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)  # import raises ImportError
    op = AddCustomAttributesOperator(
        task_id="push",
        customers=[{"customer_uuid": uuid, "custom": [{"type": "Integer", "key": "n", "value": 1}]}],
    )

    assert op.execute(context={})["succeeded"] == 1
    assert op.get_openlineage_facets_on_start() is None
    assert op.get_openlineage_facets_on_complete(task_instance=None) is None
    assert chartmogul_conn.custom_attributes(uuid) == {"n": 1}
