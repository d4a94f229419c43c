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


def customers(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"customer_uuid": f"{prefix}{i:04d}", "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i in range(count)
    ]


def write_pid(context: Any) -> None:
    ti = context["ti"]
    pid_dir = Path(os.environ["CHARTMOGUL_DEPLOYMENT_PID_DIR"])
    (pid_dir / f"{ti.dag_id}.{ti.try_number}.pid").write_text(str(os.getpid()), encoding="ascii")


with DAG(
    dag_id="chartmogul_deployment_resume",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "test"],
):
    AddCustomAttributesOperator(
        task_id="push",
        customers=customers("cus_kill_", RESUME_CUSTOMERS),
        retries=1,
        retry_delay=dt.timedelta(seconds=1),
        on_execute_callback=write_pid,
    )

with DAG(
    dag_id="chartmogul_deployment_timeout",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["chartmogul", "test"],
):
    AddCustomAttributesOperator(
        task_id="push",
        customers=customers("cus_timeout_", TIMEOUT_CUSTOMERS),
        max_requests_per_second=100,
        execution_timeout=dt.timedelta(seconds=10),
        retries=8,
        retry_delay=dt.timedelta(seconds=1),
        on_execute_callback=write_pid,
    )
