"""A slow push from SQL with a dead-letter table: the deployment test marks it failed half-way.

Reads ``stop_customers`` (``external_id``, ``seats``) from ``chartmogul_example_db`` at 4
requests per second, so 200 customers take about a minute; failures (including the records a
stopped run never sent) go to the ``chartmogul_dead_letters`` table on the same connection.
"""

from __future__ import annotations

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10+
    from airflow import DAG  # type: ignore[no-redef]

with DAG(
    dag_id="chartmogul_deployment_stop",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["chartmogul", "test"],
) as dag:
    AddCustomAttributesOperator(
        task_id="slow_push",
        sql="SELECT external_id, seats FROM stop_customers ORDER BY external_id",
        sql_conn_id="chartmogul_example_db",
        dead_letter_conn_id="chartmogul_example_db",
        dead_letter_table="chartmogul_dead_letters",
        max_requests_per_second=4,
        max_connections=2,
        customer_lookup="listing",  # one listing request, then one write per customer
        retries=0,
        chartmogul_conn_id="chartmogul_default",
    )
