"""The sharded example DAG on Airflow 3.3.2's CeleryExecutor with two workers, and the rate it gets.

``python3 scripts/celery-deployment.py [--customers 4000]`` (from any Python 3 with ``uv``, or
``pip`` to install it): it makes ``.venv-celery`` with Airflow 3.3.2, this package and the
``celery`` dependency group (``apache-airflow-providers-celery``, ``redis``) if missing, re-runs
itself there, then, everything on 127.0.0.1 in one scratch directory:

1. a throw-away PostgreSQL cluster (metadata database, Celery result backend, and the example's
   ``customer_attributes`` table with one row per customer);
2. Redis (the Celery broker);
3. the project's ChartMogul-compatible server with ChartMogul's limits (``--rate-limit 40
   --max-parallel 20 --latency 0.15``), seeded with the customers;
4. ``airflow db migrate``, the API server, the scheduler, the DAG processor and two Celery
   workers (2 slots each);
5. ``airflow dags trigger chartmogul_attributes_sharded``, waits for the run, and prints, from the
   server's request log (server-side times): customers per second over the push (first write
   sent to last write answered) and over the whole run, the share of the 40/s ceiling, the most
   requests in any one-second window, and the 429/503 counts.

Everything is stopped at the end, also on Ctrl-C or SIGTERM. Exit status 0 when the run succeeded
with every customer written, at least 90 % of 40/s over the push, and no 429/503.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-celery"
VENV_PYTHON = VENV / "bin" / "python"
AIRFLOW_VERSION = "3.3.2"
DAG_ID = "chartmogul_attributes_sharded"
CEILING = 40.0
TARGET = 0.9


def ensure_venv() -> None:
    """Make .venv-celery (uv: a few seconds) and re-run this script with its interpreter."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PYTHON.exists() or not (VENV / ".installed").exists():
        uv = [sys.executable, "-m", "uv"]
        if subprocess.run([*uv, "--version"], capture_output=True).returncode != 0:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "uv"], check=True)
        subprocess.run([*uv, "venv", "--allow-existing", "--quiet", "-p", "3.11", str(VENV)], check=True)
        subprocess.run(
            [
                *uv,
                "pip",
                "install",
                "--quiet",
                "-p",
                str(VENV_PYTHON),
                f"apache-airflow=={AIRFLOW_VERSION}",
                "-e",
                ".[postgres]",
                "--group",
                "celery",
            ],
            check=True,
            cwd=ROOT,
        )
        (VENV / ".installed").touch()
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])


class Redis:
    """``redis-server`` on a loopback port, no persistence."""

    def __init__(self, log: Path, port: int) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return f"redis://127.0.0.1:{self.port}/0"
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"redis-server did not start; see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def max_in_one_second(starts: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    starts = sorted(starts)
    return max((bisect.bisect_left(starts, t + 1.0) - i for i, t in enumerate(starts)), default=0)


def write_table(dsn: str, count: int) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as db, db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE customer_attributes (external_id TEXT PRIMARY KEY, plan_tier TEXT,"
            " seats INTEGER, is_pro BOOLEAN)"
        )
        cursor.executemany(
            "INSERT INTO customer_attributes VALUES (%s, %s, %s, %s)",
            [
                (f"acct-{i:05d}", ("starter", "team", "enterprise")[i % 3], i % 50, i % 2 == 0)
                for i in range(count)
            ],
        )
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=4000, help="customers to push (default 4000)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    parser.add_argument(
        "--server-nice",
        type=int,
        default=10 if os.geteuid() == 0 else 0,
        help="run the ChartMogul server at this much higher priority (root only; default 10 as root)",
    )
    args = parser.parse_args()
    if args.customers < 1000:
        parser.error("--customers: at least 1000")
    ensure_venv()

    sys.path.insert(0, str(ROOT))
    from airflow_provider_chartmogul.testing.process import ServerProcess
    from tests.deployment.airflow_deployment import (
        AirflowDeployment,
        PostgresCluster,
        airflow_connection_json,
        free_port,
        scratch_dir,
        wait_for,
    )

    # SIGTERM (CI's timeout, kill) unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    scratch = scratch_dir("chartmogul-celery-")
    print(f"Scratch directory: {scratch}", flush=True)
    api_key = f"sk_celery_{secrets.token_hex(16)}"
    postgres = PostgresCluster(scratch / "postgres")
    redis = Redis(scratch / "redis.log", free_port())
    server = ServerProcess(
        api_key=api_key,
        latency=0.15,
        rate_limit=CEILING,
        max_parallel=20,
        log_path=scratch / "chartmogul-server.log",
    )
    deployment: AirflowDeployment | None = None
    try:
        postgres.start()
        metadata = postgres.create_database("airflow")
        data = postgres.create_database("chartmogul_data")
        write_table(data, args.customers)
        broker = redis.start()
        server.start()
        if args.server_nice:
            # The server stands for ChartMogul, which does not share the workers' CPU: give it the
            # cores first, or its own scheduling delays bunch requests into a one-second window.
            for tid in os.listdir(f"/proc/{server.pid}/task"):
                os.setpriority(os.PRIO_PROCESS, int(tid), -args.server_nice)
        server.seed({"external_id": f"acct-{i:05d}"} for i in range(args.customers))
        print(f"ChartMogul-compatible server: {server.describe()}, {args.customers} customers", flush=True)

        dags = scratch / "dags"
        dags.mkdir()
        shutil.copy(ROOT / "example_dags" / f"{DAG_ID}.py", dags)
        chartmogul = {"conn_type": "chartmogul", "host": server.url, "password": api_key, "extra": {}}
        deployment = AirflowDeployment(
            home=scratch / "airflow",
            python=sys.executable,
            metadata_dsn=metadata,
            dags_folder=dags,
            executor="CeleryExecutor",
            env={
                "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(chartmogul),
                "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB": airflow_connection_json(data),
                "AIRFLOW__CELERY__BROKER_URL": broker,
                # The sharded example's account-wide budget, on the broker's Redis (database 1).
                "AIRFLOW_CONN_CHARTMOGUL_BUDGET_REDIS": json.dumps(
                    {"conn_type": "redis", "host": "127.0.0.1", "port": redis.port, "extra": {"db": 1}}
                ),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                # Parse the one DAG file once, not every 30 s during the push.
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            },
        )
        print("airflow db migrate ...", flush=True)
        deployment.airflow("db", "migrate", timeout=600)
        print("Starting the API server, scheduler, DAG processor and 2 Celery workers ...", flush=True)
        deployment.start_core()
        for n in (1, 2):
            deployment.start(
                f"celery-worker-{n}",
                "celery",
                "worker",
                "--concurrency",
                "2",
                "--celery-hostname",
                f"worker{n}@%h",
                "--skip-serve-logs",
            )
        for n in (1, 2):
            log = deployment.component_logs / f"celery-worker-{n}.log"
            wait_for(
                lambda log=log: b" ready." in log.read_bytes(),
                timeout=180,
                what=f"Celery worker {n} to be ready",
            )
        deployment.wait_for_dags([DAG_ID])
        server.clear_request_log()
        before = server.stats()

        run_id = deployment.trigger(DAG_ID, f"celery-{int(time.time())}")
        print(f"Triggered {DAG_ID} run {run_id}; waiting ...", flush=True)
        state = deployment.wait_for_run(DAG_ID, run_id, timeout=900)
        tis = deployment.task_instances(DAG_ID, run_id)
        summary = deployment.xcom(DAG_ID, run_id, "summarize") if state == "success" else None

        log = server.admin("GET", "requests?bodies=0")
        (scratch / "requests.json").write_text(json.dumps(log), encoding="utf-8")
        after = server.stats()
        writes = [r for r in log if r["method"] == "POST" and r["path"].endswith("/attributes/custom")]
        written = [r for r in writes if r["status"] in (200, 201)]
        listing = [r for r in log if r["method"] == "GET"]
        rate_limited = after["rate_limited"] - before["rate_limited"]
        rejected = after["parallel_rejected"] - before["parallel_rejected"]
        print(f"\nRun {run_id}: {state}")
        for (task_id, index), ti in sorted(tis.items()):
            shard = f"[{index}]" if index >= 0 else ""
            print(f"  {task_id}{shard:<4} {ti['state']:<8} on {ti.get('hostname') or '?'}")
        if summary is not None:
            print(f"  summarize: {summary}")
        if not written:
            print("No customer was written.")
            return 1
        push_start = min(r["started"] for r in writes)
        push_end = max(r["ended"] for r in writes)
        run_start = min(r["started"] for r in log)
        push_rate = len(written) / (push_end - push_start)
        run_rate = len(written) / (push_end - run_start)
        print(
            f"\nServer's request log (server-side times): {len(log)} requests, {len(listing)} listing "
            f"requests, {len(written)} customers written (of {args.customers})"
        )
        print(
            f"  push:  {len(written)} customers in {push_end - push_start:.1f} s"
            f" = {push_rate:.1f} customers/s"
            f" = {push_rate / CEILING:.1%} of the {CEILING:.0f}/s ceiling"
        )
        print(
            f"  whole run, from the first listing request: {push_end - run_start:.1f} s = {run_rate:.1f}"
            f" customers/s ({run_rate / CEILING:.1%})"
        )
        print(f"  most requests in any one-second window: {max_in_one_second([r['started'] for r in log])}")
        print(f"  429 (rate limit): {rate_limited}   503 (too many connections): {rejected}")
        pushed_back = [r["started"] - push_start for r in log if r["status"] in (429, 503)]
        if pushed_back:
            print(f"  429/503 at (s into the push): {', '.join(f'{t:.1f}' for t in pushed_back)}")
        print(f"  most requests in flight at once: {after.get('max_in_flight', '?')}")
        print(f"Total time of this script: {time.monotonic() - started:.0f} s")
        ok = (
            state == "success"
            and len(written) == args.customers
            and push_rate >= TARGET * CEILING
            and rate_limited == 0
            and rejected == 0
        )
        print("OK" if ok else f"NOT OK: the target is >= {TARGET:.0%} of {CEILING:.0f}/s with 0 x 429/503")
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("Interrupted: stopping everything", file=sys.stderr)
        return 130
    finally:
        if deployment is not None:
            deployment.stop()
        server.stop()
        redis.stop()
        postgres.stop()
        if args.keep:
            print(f"Kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
