"""React to "attributes updated": the push task is an Asset's producer, another DAG its consumer.

What this example shows:

* ``chartmogul_attributes_asset_producer``: a ``@task`` computes attributes and
  ``AddCustomAttributesOperator`` pushes them with ``outlets=[CUSTOMER_ATTRIBUTES]``. When the push
  succeeds (no more than ``max_failures`` customers failed), Airflow records an event on the Asset
  ``chartmogul://api.chartmogul.com/customers``;
* ``chartmogul_attributes_asset_consumer``: scheduled on that Asset (``schedule=[CUSTOMER_ATTRIBUTES]``),
  so the scheduler starts it after every successful push, with no sensor and no polling. Its task
  reads the triggering event, i.e. which DAG run updated the customers, and is where you would
  refresh a segment, a dashboard or a CRM sync that depends on the attributes.

With the ``openlineage`` extra installed, the push task also reports OpenLineage lineage: the
upstream task as its input, the account's ``customers`` as its output, and the run's counts.

Connection: ``chartmogul_default`` (type ``chartmogul``, the API key in the password field).
The producer is triggered by hand (``schedule=None``).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import Asset, dag, task
except ImportError:  # Airflow 2.10+: Assets were called Datasets
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef,assignment]
    from airflow.decorators import dag, task  # type: ignore[no-redef]

log = logging.getLogger(__name__)

# One Asset for the account's customers, the same URI as the push task's OpenLineage output.
CUSTOMER_ATTRIBUTES = Asset("chartmogul://api.chartmogul.com/customers")

ACCOUNTS: list[dict[str, Any]] = [
    {"external_id": "acct-2001", "seats": 30, "nps": 9},
    {"external_id": "acct-2002", "seats": 4, "nps": 6},
]


@dag(
    dag_id="chartmogul_attributes_asset_producer",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "example", "asset"],
)
def chartmogul_attributes_asset_producer() -> None:
    """Compute attributes, push them, and mark the ChartMogul customers Asset as updated.

    ``push_attributes`` has ``outlets=[CUSTOMER_ATTRIBUTES]``: each successful push records an
    Asset event, which schedules ``chartmogul_attributes_asset_consumer``. A push that fails
    (more than ``max_failures`` customers failed) records none, so the consumer does not run on
    attributes that did not land.
    """

    @task
    def compute_attributes() -> list[dict[str, Any]]:
        return [
            {
                "external_id": account["external_id"],
                "custom": [
                    {"type": "Integer", "key": "seats", "value": account["seats"]},
                    {"type": "Integer", "key": "nps", "value": account["nps"]},
                    {"type": "Boolean", "key": "promoter", "value": account["nps"] >= 9},
                ],
            }
            for account in ACCOUNTS
        ]

    AddCustomAttributesOperator(
        task_id="push_attributes",
        customers=compute_attributes(),
        source="airflow:{{ dag.dag_id }}",
        chartmogul_conn_id="chartmogul_default",
        max_failures=0,
        outlets=[CUSTOMER_ATTRIBUTES],
    )


@dag(
    dag_id="chartmogul_attributes_asset_consumer",
    schedule=[CUSTOMER_ATTRIBUTES],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "example", "asset"],
)
def chartmogul_attributes_asset_consumer() -> None:
    """Runs after every successful push to the ChartMogul customers Asset.

    ``after_attributes_updated`` logs the Asset events that triggered the run (Airflow 3:
    ``triggering_asset_events``; Airflow 2: ``triggering_dataset_events``): the producing DAG, run
    and task of each. Replace its body with what depends on the attributes being current.
    """

    @task
    def after_attributes_updated(**context: Any) -> list[str]:
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        producers = []
        for asset, asset_events in events.items():
            for event in asset_events:
                producer = f"{event.source_dag_id}/{event.source_run_id}/{event.source_task_id}"
                log.info("%s updated by %s", getattr(asset, "uri", asset), producer)
                producers.append(producer)
        return producers

    after_attributes_updated()


chartmogul_attributes_asset_producer()
chartmogul_attributes_asset_consumer()
