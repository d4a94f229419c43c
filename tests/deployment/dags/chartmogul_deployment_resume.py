"""Two pushes the deployment test interrupts, to see Airflow's own retries resume them.

* ``chartmogul_deployment_resume``: 3,000 customers at the default 39 requests per second (about
  77 s); the test SIGKILLs the task's process half-way and Airflow retries it once.
* ``chartmogul_deployment_timeout``: 2,000 customers, each try cut short by a 10 s
  ``execution_timeout``; Airflow retries until the push is complete.

Each try writes its process id to ``$CHARTMOGUL_DEPLOYMENT_PID_DIR/<dag_id>.<try>.pid`` (from
``on_execute_callback``, which runs in the task's process), so the test knows what to kill.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pendulum

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10+
    from airflow import DAG  # type: ignore[no-redef]

RESUME_CUSTOMERS = 3000
TIMEOUT_CUSTOMERS = 2000


def write_pid(context: Any) -> None:
    ti = context["ti"]
    pid_dir = Path(os.environ["CHARTMOGUL_DEPLOYMENT_PID_DIR"])
    (pid_dir / f"{ti.dag_id}.{ti.try_number}.pid").write_text(str(os.getpid()), encoding="ascii")


def push_dag(dag_id: str, prefix: str, count: int, *, retries: int, **push: Any) -> DAG:
    """A DAG of one task, ``push``: ``count`` customers ``<prefix>0000``... (``seats`` their
    position), retried ``retries`` times a second apart; ``push``: more operator arguments."""
    customers = [
        {"customer_uuid": f"{prefix}{i:04d}", "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i in range(count)
    ]
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        tags=["chartmogul", "test"],
    ) as dag:
        AddCustomAttributesOperator(
            task_id="push",
            customers=customers,
            retries=retries,
            retry_delay=dt.timedelta(seconds=1),
            on_execute_callback=write_pid,
            **push,
        )
    return dag


resume_dag = push_dag("chartmogul_deployment_resume", "cus_kill_", RESUME_CUSTOMERS, retries=1)
timeout_dag = push_dag(
    "chartmogul_deployment_timeout",
    "cus_timeout_",
    TIMEOUT_CUSTOMERS,
    retries=8,
    max_requests_per_second=100,
    execution_timeout=dt.timedelta(seconds=10),
)
