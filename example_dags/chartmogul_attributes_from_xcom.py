"""Push attributes that an upstream Python task computed (via XCom) onto ChartMogul customers.

What this example shows:

* a ``@task`` that computes custom attributes (plan tier, seats, CAC, churn risk, an at-risk flag
  and the conversion timestamp) for a few customers and returns them as a list of records;
* ``AddCustomAttributesOperator(customers=<that task's XComArg>)`` writing them, with each customer
  identified the way your data knows it: by ChartMogul ``customer_uuid``, by ``external_id`` (the
  customer's ID in your billing system) or by ``email``;
* a downstream ``@task`` that reads the operator's report (its XCom) and logs it: the counts, and
  every customer that failed with the reason (up to ``max_failures`` may fail without failing the
  task). Beyond ``max_failures`` the push task fails, naming the first failed customers in its
  error; the whole report is still in its XCom, and this task does not run (it keeps the default
  trigger rule: with ``"all_done"`` it would run, succeed, and so mark the DAG run successful).

Connection: ``chartmogul_default`` (type ``chartmogul``, the API key in the password field).
Trigger it by hand (``schedule=None``).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.10+
    from airflow.decorators import dag, task  # type: ignore[no-redef]

log = logging.getLogger(__name__)

# Stand-in for what your pipeline knows about each customer: product usage, CRM data, a model's
# output... "customer" says how to find the customer in ChartMogul: exactly one of customer_uuid,
# external_id (with data_source_uuid if several data sources may share it) or email.
ACCOUNTS: list[dict[str, Any]] = [
    {
        "customer": {"customer_uuid": "cus_7e4dd3a4-1c6b-4b36-9e6c-3b0a5a0f2a11"},
        "seats": 42,
        "acquisition_spend_usd": 5200.0,
        "logins_last_30_days": 610,
        "converted_at": "2024-02-01T09:30:00Z",
    },
    {
        "customer": {"external_id": "acct-1042"},
        "seats": 8,
        "acquisition_spend_usd": 1150.5,
        "logins_last_30_days": 40,
        "converted_at": "2024-06-17T14:05:00Z",
    },
    {
        "customer": {"email": "finance@globex.example"},
        "seats": 2,
        "acquisition_spend_usd": 310.0,
        "logins_last_30_days": 3,
        "converted_at": "2025-01-08T00:00:00Z",
    },
]


def plan_tier(seats: int) -> str:
    """The plan tier a seat count puts a customer in."""
    if seats >= 25:
        return "enterprise"
    if seats >= 5:
        return "team"
    return "starter"


def churn_risk(logins_per_seat: float) -> str:
    """A (deliberately simple) churn-risk band from monthly logins per seat."""
    if logins_per_seat >= 10:
        return "low"
    if logins_per_seat >= 3:
        return "medium"
    return "high"


@dag(
    dag_id="chartmogul_attributes_from_xcom",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "example"],
)
def chartmogul_attributes_from_xcom() -> None:
    """Compute attributes in a ``@task``, push them from its XCom, then log the run's report.

    ``compute_attributes`` returns one record per customer; ``push_attributes`` writes them with
    ``AddCustomAttributesOperator(customers=compute_attributes())``; ``log_report`` reads the
    operator's report (the XCom it returns) and logs the counts and every failure.
    """

    @task
    def compute_attributes() -> list[dict[str, Any]]:
        """One record per customer: its identifier plus typed attributes (the seed call's body)."""
        records: list[dict[str, Any]] = []
        for account in ACCOUNTS:
            seats = account["seats"]
            risk = churn_risk(account["logins_last_30_days"] / seats)
            records.append(
                {
                    **account["customer"],  # the identifier
                    # Types are ChartMogul's: String, Integer, Decimal, Boolean, Timestamp.
                    "custom": [
                        {"type": "String", "key": "plan_tier", "value": plan_tier(seats)},
                        {"type": "Integer", "key": "seats", "value": seats},
                        {"type": "Decimal", "key": "cac", "value": account["acquisition_spend_usd"]},
                        {"type": "String", "key": "churn_risk", "value": risk},
                        {"type": "Boolean", "key": "at_risk", "value": risk == "high"},
                        {"type": "Timestamp", "key": "converted_at", "value": account["converted_at"]},
                    ],
                }
            )
        return records

    push_attributes = AddCustomAttributesOperator(
        task_id="push_attributes",
        customers=compute_attributes(),  # an XComArg: resolved to the list when the task runs
        source="airflow:{{ dag.dag_id }}",  # shown as the attributes' source in ChartMogul
        chartmogul_conn_id="chartmogul_default",
        max_failures=0,  # a hand-picked list: any customer that fails should fail the task
    )

    @task
    def log_report(report: dict[str, Any]) -> None:
        """Log the push report: counts, then one line per failed customer with the reason."""
        log.info(
            "%s customers: %s succeeded, %s failed, %s skipped; attributes added %s, changed %s",
            report["total"],
            report["succeeded"],
            report["failed"],
            report["skipped"],
            report["added"],
            report["changed"],
        )
        for failure in report["failures"]:
            log.warning(
                "FAILED %s (stage %s, HTTP %s): %s",
                failure["customer"],
                failure["stage"],
                failure["status"],
                failure["error"],
            )

    log_report(push_attributes.output)


chartmogul_attributes_from_xcom()
