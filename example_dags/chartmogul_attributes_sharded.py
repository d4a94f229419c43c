"""Push many customers in parallel shards (dynamic task mapping) within ChartMogul's account limits.

What this example shows:

* ``load_records`` reads customers from a database and builds one record per customer, keyed by
  its ``external_id``;
* ``resolve_customer_uuids`` finds every customer's ChartMogul ``customer_uuid`` in **one pass
  over the customer listing** (200 customers per request), so the shards write straight to each
  customer and spend one request per customer, not two;
* ``split_into_shards`` splits the records into ``SHARDS`` lists by a stable hash of the
  customer's ID (a customer lands in the same shard on every run, so shard reports can be
  compared from run to run);
* ``AddCustomAttributesOperator.partial(...).expand(customers=shards)``: one mapped task instance
  per shard, all taking their requests from one account-wide budget on Redis;
* ``summarize`` adds up the reports of all shards (the mapped task's XCom) and logs the totals.

**What sharding buys, and what it does not.** ChartMogul allows 40 requests per second and 20
parallel connections *per account*, whichever API key, worker or task sends them. One task
already runs at about 38 customers/s, 96 % of that ceiling, so shards do not make a push faster:
all of them together get the same 40/s. Shard for

* isolation: a shard that fails (a bad batch, a worker lost) fails alone, and the others'
  customers are written;
* partial retries: clear and re-run the failed shard only; its report (with each failed record,
  ready to replay) stays in its XCom either way;
* very large inputs: no single task holds every record in memory or runs for hours, and a
  worker restart loses one shard's progress, not the whole run's.

**Why the customer lookups happen upstream.** A record with an ``external_id`` or ``email`` costs
a lookup request before its write unless the operator lists the whole account first
(``customer_lookup="listing"``, or ``"auto"`` above ``listing_threshold`` records). A shard of a
few hundred records stays under the threshold and would pay one lookup per customer, halving the
shards' rate; with ``customer_lookup="listing"`` every shard would list the *whole* account
again. Listing once upstream costs ``N / 200`` requests for ``N`` customers (6 for 1,200), and the
shards then carry ``customer_uuid``. A record that the listing does not resolve (no customer, or
an external id shared by several) keeps its ``external_id`` and its shard reports why it failed.

**Why one shared budget.** ChartMogul's limits belong to the account, and the shards run at the
same time in different processes or pods (LocalExecutor, Celery, Kubernetes), so the shards take
their requests from one account-wide budget on Redis (``shared_budget_conn_id``, see
docs/shared-budget.md): all of them together stay within 39 requests per second and 18
connections, each gets an equal share while they all run, and a shard that finishes early leaves
its share to the others. The budget is per *account*, not per DAG: other runs of this DAG, other
DAGs and backfills that push to the same account with the same budget share it too, so no pool or
hand-split rate is needed, and the number of shards is free. Should Redis be unreachable, each
shard goes on at a conservative rate and says so in its log and report.

Connections: ``chartmogul_default`` (type ``chartmogul``), ``chartmogul_budget_redis`` (type
``redis``, e.g. the Redis of a Celery deployment; needs ``airflow-provider-chartmogul[redis]``) and
``chartmogul_example_db`` (a DB-API connection holding the ``customer_attributes`` table). Trigger it by hand
(``schedule=None``). ``scripts/celery-deployment.py`` runs it on Celery with two workers.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from typing import Any

import pendulum

from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import BaseHook, dag, task
except ImportError:  # Airflow 2.10+
    from airflow.decorators import dag, task  # type: ignore[no-redef]
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

log = logging.getLogger(__name__)

#: How many shards: isolation and partial retries, not speed (see above).
SHARDS = 3

CHARTMOGUL_CONN_ID = "chartmogul_default"
#: The Redis connection holding the account-wide budget every shard shares.
BUDGET_CONN_ID = "chartmogul_budget_redis"
SOURCE_CONN_ID = "chartmogul_example_db"
SOURCE_QUERY = """
    SELECT external_id, plan_tier, seats, is_pro
    FROM customer_attributes
    ORDER BY external_id
"""


def shard_of(record: dict[str, Any], shards: int = SHARDS) -> int:
    """The shard a record goes to: a stable hash of its identifier (the same on every run)."""
    identifier = record.get("customer_uuid") or record.get("external_id") or record.get("email")
    return zlib.crc32(str(identifier).encode()) % shards


@dag(
    dag_id="chartmogul_attributes_sharded",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "example"],
)
def chartmogul_attributes_sharded() -> None:
    """Resolve every customer once, split the records into shards, push each shard in its own task.

    Every shard (and the listing) takes its requests from one account-wide budget on Redis, so all
    of them together stay within ChartMogul's limits per account, whatever the executor and however
    many run at once.
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
    def resolve_customer_uuids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Swap each ``external_id`` for the ``customer_uuid``, from one pass over the listing.

        One request per 200 customers of the account. An external id that matches no customer, or
        several, is left as it is: its shard reports the failure with the reason.
        """
        uuids: dict[str, list[str]] = {}
        with ChartMogulHook(CHARTMOGUL_CONN_ID, shared_budget_conn_id=BUDGET_CONN_ID) as hook:
            for customer in hook.iter_customers():
                ids = set(customer.get("external_ids") or []) | {customer.get("external_id")}
                for external_id in ids - {None}:
                    uuids.setdefault(str(external_id), []).append(customer["uuid"])
            pages = hook.stats.snapshot()["requests"]
        resolved = []
        for record in records:
            matches = uuids.get(record["external_id"], [])
            if len(matches) == 1:
                record = {"customer_uuid": matches[0], "custom": record["custom"]}
            resolved.append(record)
        found = sum("customer_uuid" in record for record in resolved)
        log.info(
            "Resolved %d of %d records with %d listing requests; %d left for their shard to report",
            found,
            len(records),
            pages,
            len(records) - found,
        )
        return resolved

    @task
    def split_into_shards(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """At most ``SHARDS`` non-empty lists; a customer's shard depends only on its ID."""
        shards: list[list[dict[str, Any]]] = [[] for _ in range(SHARDS)]
        for record in records:
            shards[shard_of(record)].append(record)
        shards = [shard for shard in shards if shard]
        log.info("Shard sizes: %s", [len(shard) for shard in shards])
        return shards

    push_shard = AddCustomAttributesOperator.partial(
        task_id="push_shard",
        # One budget for the whole account, shared with every other task that names it.
        shared_budget_conn_id=BUDGET_CONN_ID,
        # The few records the listing did not resolve are looked up one by one (and fail with
        # the reason); never list the whole account again from a shard.
        customer_lookup="per_customer",
        source="airflow:{{ dag.dag_id }}",
        chartmogul_conn_id=CHARTMOGUL_CONN_ID,
    ).expand(customers=split_into_shards(resolve_customer_uuids(load_records())))
    # The records travel through XCom (the metadata database): fine for tens of thousands of
    # customers. For much bigger tables, let each shard query its own slice instead (with a
    # customer_uuid column kept in the table), e.g.
    # .partial(sql="... WHERE shard = %(shard)s", sql_conn_id=..., ...)
    # .expand(parameters=[{"shard": n} for n in range(SHARDS)])

    # Runs when every shard succeeded. A shard that fails can be cleared and re-run on its own.
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
