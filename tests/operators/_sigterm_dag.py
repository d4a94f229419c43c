"""A DAG run with ``dag.test()`` by ``test_on_kill.py`` in a child process, which SIGTERMs it mid-push.

Environment: ``CUSTOMERS`` (how many ``cus_kill_NNNN`` records), ``REPORT_PATH`` (where the
downstream task writes the XCom it read), and the ``chartmogul_default`` and ``dead_letters``
connections.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

CUSTOMERS = int(os.environ.get("CUSTOMERS", "0"))

with DAG(dag_id="chartmogul_sigterm", schedule=None) as dag:
    push = AddCustomAttributesOperator(
        task_id="push",
        customers=[
            {
                "customer_uuid": f"cus_kill_{i:04d}",
                "custom": [{"type": "Integer", "key": "seats", "value": i}],
            }
            for i in range(CUSTOMERS)
        ],
        max_failures=CUSTOMERS,
        dead_letter_conn_id="dead_letters",
        dead_letter_table="chartmogul_failures",
    )

    @task(trigger_rule="all_done")
    def keep_report(report: object) -> None:
        Path(os.environ["REPORT_PATH"]).write_text(json.dumps(report), encoding="utf-8")

    keep_report(push.output)


if __name__ == "__main__":
    print("dag.test() starting", flush=True)
    dag.test()
