"""Push many customers in parallel shards (dynamic task mapping) within ChartMogul's account limits.

What this example shows:

* ``load_records`` reads customers from a database and builds one record per customer;
* ``split_into_shards`` splits the records into at most ``SHARDS`` lists, by a stable hash of the
  customer's ID (a customer lands in the same shard on every run, so shard logs and reports can
  be compared from run to run); a failed shard can be cleared and re-run on its own;
* ``AddCustomAttributesOperator.partial(...).expand(customers=shards)``: one mapped task instance
  per shard, each with its share of the account's request budget;
* ``summarize`` adds up the reports of all shards (the mapped task's XCom) and logs the totals.

Why the shares: ChartMogul allows 40 requests per second and 20 parallel connections **per
account**, whichever API key or worker sends them. Every task instance has its own client-side
limiter and they do not talk to each other, so with the LocalExecutor, Celery or Kubernetes
several shards run at the same time, in different processes or pods, and their rates add up. The
budget is therefore split statically: each shard may send ``36 / SHARDS`` requests per second over
``16 // SHARDS`` connections, and ``max_active_tis_per_dagrun=SHARDS`` makes sure no more than
``SHARDS`` of them run at once. The sum stays at 36/s and 16 connections, under 40/s and 20,
leaving room for other users of the API. Should a limit still be hit, the hook slows down and
retries on 429/503.

``max_active_tis_per_dagrun`` only counts this DAG run. If other runs of this DAG, or other DAGs,
use the same ChartMogul account at the same time, put all those tasks in one Airflow pool instead,
with one slot per share::

    airflow pools set chartmogul 4 "ChartMogul account: 4 shares of 9 req/s"

and add ``pool="chartmogul"`` to ``partial()`` (the pool must exist, or the tasks never start).

Connections: ``chartmogul_default`` (type ``chartmogul``) and ``chartmogul_example_db`` (a
DB-API connection holding the ``customer_attributes`` table; ``sqlite`` here). Trigger it by hand
(``schedule=None``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from typing import Any

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import BaseHook, dag, task
except ImportError:  # Airflow 2.10+
    from airflow.decorators import dag, task  # type: ignore[no-redef]
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

log = logging.getLogger(__name__)

#: ChartMogul's limits, per account.
ACCOUNT_REQUESTS_PER_SECOND = 40
ACCOUNT_CONNECTIONS = 20
#: What this DAG allows itself, leaving some room to other users of the same account.
BUDGET_REQUESTS_PER_SECOND = ACCOUNT_REQUESTS_PER_SECOND - 4  # 36
BUDGET_CONNECTIONS = ACCOUNT_CONNECTIONS - 4  # 16
#: How many shards, i.e. how many task instances may push at the same time.
SHARDS = 4
#: Each shard's share of the budget: 9 requests per second over 4 connections.
SHARD_REQUESTS_PER_SECOND = BUDGET_REQUESTS_PER_SECOND / SHARDS
SHARD_CONNECTIONS = BUDGET_CONNECTIONS // SHARDS

SOURCE_CONN_ID = "chartmogul_example_db"
SOURCE_QUERY = """
    SELECT external_id, plan_tier, seats, is_pro
    FROM customer_attributes
    ORDER BY external_id
"""


@dag(
    dag_id="chartmogul_attributes_sharded",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "example"],
)
def chartmogul_attributes_sharded() -> None:
    """Split customer records into shards and push each shard in its own mapped task instance.

    Each shard gets ``36 / SHARDS`` requests per second and ``16 // SHARDS`` connections, and at
    most ``SHARDS`` shards run at once, so all of them together stay under ChartMogul's 40
    requests per second and 20 connections per account, whatever the executor.
    """

    @task
    def load_records() -> list[dict[str, Any]]:
        """One record per database row: the customer's ``external_id`` and its typed attributes."""
        hook = BaseHook.get_connection(SOURCE_CONN_ID).get_hook()
        records = []
        for external_id, plan_tier, seats, is_pro in hook.get_records(SOURCE_QUERY):
            custom = []
            if plan_tier is not None:  # NULL: leave the attribute as it is
                custom.append({"type": "String", "key": "plan_tier", "value": plan_tier})
            if seats is not None:
                custom.append({"type": "Integer", "key": "seats", "value": seats})
            if is_pro is not None:
                custom.append({"type": "Boolean", "key": "pro", "value": bool(is_pro)})
            records.append({"external_id": str(external_id), "custom": custom})
        log.info("Loaded %d customer records", len(records))
        return records

    @task
    def split_into_shards(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """At most ``SHARDS`` non-empty lists; a customer's shard depends only on its ID."""
        shards: list[list[dict[str, Any]]] = [[] for _ in range(SHARDS)]
        for record in records:
            shards[zlib.crc32(record["external_id"].encode()) % SHARDS].append(record)
        shards = [shard for shard in shards if shard]
        log.info("Shard sizes: %s", [len(shard) for shard in shards])
        return shards

    push_shard = AddCustomAttributesOperator.partial(
        task_id="push_shard",
        # This shard's share of the account's 40 requests/s and 20 connections (see above).
        max_requests_per_second=SHARD_REQUESTS_PER_SECOND,
        max_connections=SHARD_CONNECTIONS,
        # Never more shards at once than the budget was split into, even if more are mapped.
        max_active_tis_per_dagrun=SHARDS,
        # pool="chartmogul",  # to share the budget with other DAGs (see the docstring)
        source="airflow:{{ dag.dag_id }}",
        chartmogul_conn_id="chartmogul_default",
    ).expand(customers=split_into_shards(load_records()))
    # The records travel through XCom (the metadata database): fine for thousands of customers.
    # For much bigger tables, let each shard query its own slice instead, e.g.
    # .partial(sql="... WHERE customer_id % 4 = :shard", sql_conn_id=..., ...)
    # .expand(parameters=[{"shard": n} for n in range(SHARDS)])

    # Runs when every shard succeeded. A shard that fails can be cleared and re-run on its own;
    # its report (with each failed record, ready to replay) stays in its XCom either way.
    @task
    def summarize(reports: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Add up the shards' reports (one per map index) and log every failed customer."""
        totals = {"shards": 0, "total": 0, "succeeded": 0, "failed": 0, "skipped": 0}
        for report in reports:
            totals["shards"] += 1
            for key in ("total", "succeeded", "failed", "skipped"):
                totals[key] += report[key]
            for failure in report["failures"]:
                log.warning("FAILED %s: %s", failure["customer"], failure["error"])
        log.info("All shards: %s", totals)
        return totals

    summarize(push_shard.output)


chartmogul_attributes_sharded()
