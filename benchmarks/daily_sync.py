"""The daily sync, measured on its own: ``python benchmarks/daily_sync.py [--customers N]``.

An account of N customers (default 100,000), each holding three attributes; N records by
``customer_uuid`` of which 5 % change one value; ``mode="sync"`` (the listing gives every
customer's current attributes); the server at ChartMogul's limits (40 requests/s, 20 in
parallel, 150 ms latency) in a process of its own. Prints the wall time, the requests the
server answered (listing pages and writes), and 429/503 counts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import API_KEY, customer_uuid, seed_custom
from _server import ServerProcess, status_count, write_seed_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--changed-every", type=int, default=20, help="1 record in N changes (5 %%)")
    args = parser.parse_args()
    count = args.customers

    with tempfile.TemporaryDirectory() as tmp:
        seed = write_seed_file(
            Path(tmp) / "seed.json",
            [
                {
                    "uuid": customer_uuid(i),
                    "external_id": f"ext-{i:07d}",
                    "custom": {a["key"]: a["value"] for a in seed_custom(i)},
                }
                for i in range(count)
            ],
        )
        server = ServerProcess(
            api_key=API_KEY,
            latency=0.15,
            rate_limit=40,
            max_parallel=20,
            record_requests=False,
            seed_file=seed,
            log_path=Path(tmp) / "server.log",
        )
        with server:
            os.environ["AIRFLOW_CONN_CHARTMOGUL_DEFAULT"] = json.dumps(
                {"conn_type": "chartmogul", "host": server.url, "password": API_KEY}
            )
            from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

            records = []
            for i in range(count):
                custom = seed_custom(i)
                if i % args.changed_every == 0:
                    custom[1] = {**custom[1], "value": custom[1]["value"] + 1000}
                records.append({"customer_uuid": customer_uuid(i), "custom": custom})
            operator = AddCustomAttributesOperator(task_id="daily_sync", customers=records, mode="sync")
            started = time.perf_counter()
            report = operator.execute(context={})
            wall = time.perf_counter() - started
            stats = server.stats()
    changed = (count + args.changed_every - 1) // args.changed_every
    print(
        json.dumps(
            {
                "customers": count,
                "changed": changed,
                "wall_seconds": round(wall, 1),
                "server_requests": stats.get("total"),
                "answered_429": status_count(stats, 429),
                "answered_503": status_count(stats, 503),
                "succeeded": report["succeeded"],
                "skipped": report["skipped"],
                "failed": report["failed"],
                "changed_attributes": report["changed"],
                "client_requests": report["requests"]["requests"],
                "customer_lookup": report["customer_lookup"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
