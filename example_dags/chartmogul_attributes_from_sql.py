"""Keep ChartMogul custom attributes in sync with a database table, daily, through a ``.sql`` file.

What this example shows:

* ``AddCustomAttributesOperator(sql="customer_attributes.sql", sql_conn_id=...)``: every row of
  the query is one customer (found by its ``external_id``), every other column one attribute;
* the query lives in ``sql/customer_attributes.sql``, found through the DAG's
  ``template_searchpath`` and rendered with Jinja: it filters on ``{{ params.min_seats }}``, a
  DAG param you can change when you trigger a run;
* ``attribute_types`` for what SQLite cannot type: a Boolean stored as 0/1 and a Timestamp stored
  as text (other databases return real booleans and datetimes, which are typed on their own);
* ``mode="sync"``: each customer's current attributes are read first and only what differs is
  written, so a daily run of an unchanged table writes nothing;
* ``max_failures``: a few bad rows (a value ChartMogul would refuse, a customer it does not know)
  are reported with their reason and do not stop the others; the task only fails beyond that;
* ``source="airflow:{{ dag.dag_id }}"``, the source ChartMogul shows for the attributes.

Connections: ``chartmogul_default`` (type ``chartmogul``) and ``chartmogul_example_db`` (here a
``sqlite`` connection whose host is the database file path; the ``sqlite`` connection type comes
with ``apache-airflow-providers-sqlite``: ``pip install "airflow-provider-chartmogul[sqlite]"``.
Any DB-API connection works: PostgreSQL with the ``postgres`` extra, MySQL, Snowflake... with
their providers). Runs daily once unpaused, without catching up on past days.
``make demo`` runs this DAG against a local ChartMogul-compatible server.
"""

from __future__ import annotations

from pathlib import Path

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.10+
    from airflow import DAG  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]

with DAG(
    dag_id="chartmogul_attributes_from_sql",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,  # a new deployment runs once, not once per day since start_date
    # .sql files named by the operators are looked up here (relative to this file, so the DAG
    # folder can live anywhere).
    template_searchpath=[str(Path(__file__).parent / "sql")],
    params={
        "min_seats": Param(
            1, type="integer", minimum=0, description="Only customers with at least this many seats"
        ),
    },
    doc_md=__doc__,
    tags=["chartmogul", "example"],
) as dag:
    AddCustomAttributesOperator(
        task_id="sync_customer_attributes",
        sql="customer_attributes.sql",  # a .sql file: loaded and rendered as a Jinja template
        sql_conn_id="chartmogul_example_db",
        attribute_types={
            "pro": "Boolean",  # SQLite stores booleans as 0/1
            "converted_at": "Timestamp",  # SQLite stores dates as text
            "cac": "Decimal",  # even when a row holds a whole number such as 250
        },
        mode="sync",
        max_failures=5,
        source="airflow:{{ dag.dag_id }}",
        chartmogul_conn_id="chartmogul_default",
    )
