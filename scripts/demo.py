"""``make demo``: run the SQL example DAG end to end against a local ChartMogul-compatible server.

What it does, all under ``.demo/`` (git-ignored, safe to delete):

1. writes a sample SQLite database (``customers.db``) with custom attributes for 20 customers: a
   mix of plans, seats, CAC, a pro flag and conversion dates, a few NULLs, one customer on 0 seats
   (left out by the query's ``min_seats`` param) and one row with a bad value (a 300-character
   segment, which ChartMogul refuses);
2. starts ``python -m airflow_provider_chartmogul.testing.server`` seeded with those customers
   (through ``testing.process.ServerProcess``; its log goes to ``.demo/chartmogul-server.log``);
3. migrates an Airflow metadata database in ``.demo/airflow`` (first run only);
4. runs ``example_dags/chartmogul_attributes_from_sql.py`` with ``dag.test()`` in a subprocess
   (Airflow's own output goes to ``.demo/dag-run.log``; the DAG run, its task states and the
   operator's report (XCom) are written to ``.demo/dag-run.json``);
5. prints a table of every customer, built from the server's final state and the report, and
   the run's summary; stops the server.

Exit status 0 when the run behaved as expected: the task succeeded, the bad row was reported
with its reason, and every other selected customer got exactly its attributes.

Internal use: ``demo.py --run-dag DAG_ID --output FILE`` is the subprocess of step 4.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_chartmogul.testing.dag_runs import task_xcom
from airflow_provider_chartmogul.testing.process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
AIRFLOW_HOME = DEMO / "airflow"
DATABASE = DEMO / "customers.db"
SEED_FILE = DEMO / "chartmogul-customers.json"
RUN_LOG = DEMO / "dag-run.log"
RUN_RESULT = DEMO / "dag-run.json"
MIGRATE_LOG = DEMO / "db-migrate.log"
SERVER_LOG = DEMO / "chartmogul-server.log"
MIGRATED_STAMP = AIRFLOW_HOME / ".migrated"

DAG_ID = "chartmogul_attributes_from_sql"
TASK_ID = "sync_customer_attributes"
MIN_SEATS = 1  # the DAG's "min_seats" param default, used by sql/customer_attributes.sql
API_KEY = "sk_demo_local_only_0123456789"  # only known to the local server started below

# (external_id, company, plan_tier, seats, cac, is_pro, converted_at, segment)
TOO_LONG_SEGMENT = "Mid-market retail chain; " * 12  # 300 characters: over ChartMogul's 255
CUSTOMERS: list[tuple[Any, ...]] = [
    ("acct-0001", "Acme Corp", "enterprise", 120, 4800, 1, "2023-11-02 09:15:00", "enterprise"),
    ("acct-0002", "Globex", "team", 12, 950.5, 1, "2024-01-15T10:00:00Z", "mid-market"),
    ("acct-0003", "Initech", "starter", 3, 180.0, 0, "2024-02-29 00:00:00", "smb"),
    ("acct-0004", "Umbrella", "enterprise", 85, 6200.0, 1, "2023-06-30 18:45:00", "enterprise"),
    ("acct-0005", "Hooli", "team", 25, 1325.75, 1, "2024-04-01 08:00:00", "mid-market"),
    ("acct-0006", "Vandelay Industries", "starter", 2, 95.0, 0, None, "smb"),
    ("acct-0007", "Stark Industries", "enterprise", 300, 12500.0, 1, "2022-09-08 12:00:00", "enterprise"),
    ("acct-0008", "Wayne Enterprises", "team", 18, None, 1, "2024-05-20 14:30:00", "mid-market"),
    ("acct-0009", "Soylent", "starter", None, 140.0, 0, "2024-06-11 07:00:00", None),
    ("acct-0010", "Tyrell Corp", "team", 9, 610.0, 0, "2024-07-04 16:20:00", "smb"),
    ("acct-0011", "Cyberdyne", "free", 0, None, 0, None, "smb"),
    ("acct-0012", "Wonka Industries", "team", 14, 880.0, 1, "2024-08-19 11:11:00", "mid-market"),
    ("acct-0013", "Oscorp", "enterprise", 64, 5100.0, 1, "2023-03-03 03:30:00", "enterprise"),
    ("acct-0014", "Massive Dynamic", "team", 7, 415.25, 0, "2024-09-09 09:09:00", TOO_LONG_SEGMENT),
    ("acct-0015", "Aperture Science", "starter", 4, 210.0, 0, "2024-10-10 10:10:00", "smb"),
    ("acct-0016", "Gringotts", "enterprise", 40, 3900.0, 1, "2023-12-24 23:59:00", "enterprise"),
    ("acct-0017", "Monsters Inc", "team", 11, 720.0, 1, "2025-01-06 13:00:00", "mid-market"),
    ("acct-0018", "Pied Piper", "starter", 5, 150.0, 0, "2025-02-14 09:00:00", "smb"),
    ("acct-0019", "Dunder Mifflin", "team", 16, 990.0, 1, "2025-03-01 00:00:00", "mid-market"),
    ("acct-0020", "Prestige Worldwide", "starter", 1, 60.0, 0, "2025-03-15 17:45:00", "smb"),
]
BAD_ROWS = {"acct-0014": "segment"}  # external_id -> the attribute whose value ChartMogul refuses
COLUMNS = ("external_id", "company", "plan_tier", "seats", "cac", "is_pro", "converted_at", "segment")
ATTRIBUTE_TYPES = {  # what each column should become in ChartMogul (the query renames is_pro)
    "plan_tier": "String",
    "seats": "Integer",
    "cac": "Decimal",
    "pro": "Boolean",
    "converted_at": "Timestamp",
    "segment": "String",
}


# ---- step 1: the sample data -------------------------------------------------------------------------


def write_sample_database(path: Path) -> None:
    """The ``customer_attributes`` table the example's SQL reads (recreated on every run)."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(
            """
            CREATE TABLE customer_attributes (
                external_id  TEXT PRIMARY KEY,  -- the customer's id in the billing system
                company      TEXT,              -- not selected by the query
                plan_tier    TEXT,
                seats        INTEGER,
                cac          NUMERIC,           -- customer acquisition cost, USD
                is_pro       INTEGER,           -- 0/1: SQLite has no BOOLEAN
                converted_at TEXT,              -- ISO 8601: SQLite has no TIMESTAMP
                segment      TEXT
            )
            """
        )
        db.executemany("INSERT INTO customer_attributes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", CUSTOMERS)
    db.close()


def write_seed_file(path: Path) -> None:
    """The server's customers: the same external ids, no custom attributes yet."""
    seed = [
        {"external_id": row[0], "name": row[1], "email": f"billing@{slug(row[1])}.example"}
        for row in CUSTOMERS
    ]
    path.write_text(json.dumps(seed, indent=1), encoding="utf-8")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---- steps 3 and 4: Airflow --------------------------------------------------------------------------


def airflow_env(server_url: str) -> dict[str, str]:
    """The environment of the Airflow subprocesses: demo home, example DAGs, env-var connections."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": json.dumps(
                {
                    "conn_type": "chartmogul",
                    "host": server_url,
                    "password": API_KEY,
                    "extra": {"timeout": 10, "max_retries": 3},
                }
            ),
            "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB": json.dumps({"conn_type": "sqlite", "host": str(DATABASE)}),
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


def needs_migration() -> bool:
    """Whether the demo database is missing or was migrated by another Airflow version."""
    stamp = MIGRATED_STAMP.read_text() if MIGRATED_STAMP.exists() else ""
    return not (AIRFLOW_HOME / "airflow.db").exists() or stamp != f"apache-airflow {airflow_version()}"


def migrate(env: dict[str, str]) -> float:
    """``airflow db migrate``, quietly (its output goes to MIGRATE_LOG); returns the seconds taken."""
    started = time.monotonic()
    with MIGRATE_LOG.open("w", encoding="utf-8") as log:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=log, stderr=log, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed (exit {result.returncode}); see {rel(MIGRATE_LOG)}")
    MIGRATED_STAMP.write_text(f"apache-airflow {airflow_version()}")
    return time.monotonic() - started


def run_dag_subprocess(env: dict[str, str]) -> dict[str, Any]:
    """Run the DAG with ``dag.test()`` in a child process; its Airflow output goes to RUN_LOG."""
    RUN_RESULT.unlink(missing_ok=True)
    with RUN_LOG.open("w", encoding="utf-8") as log:
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--run-dag", DAG_ID, "--output", str(RUN_RESULT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0 or not RUN_RESULT.exists():
        raise RuntimeError(f"running the DAG failed (exit {result.returncode}):\n{tail(RUN_LOG, 25)}")
    return json.loads(RUN_RESULT.read_text(encoding="utf-8"))


def run_dag_child(dag_id: str, output: Path) -> int:
    """In the child process (Airflow env already set): ``dag.test()``, then save the outcome."""
    try:  # Airflow >= 3.1
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.10 / 2.11 / 3.0
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors or dag_id not in bag.dags:
        print(f"cannot load {dag_id}: {bag.import_errors}", file=sys.stderr)
        return 1
    run = bag.dags[dag_id].test()
    outcome = {
        "dag_id": dag_id,
        "run_id": run.run_id,
        "state": state_name(run.state),
        "tasks": {ti.task_id: state_name(ti.state) for ti in run.get_task_instances()},
        "report": task_xcom(run, TASK_ID),
    }
    output.write_text(json.dumps(outcome, indent=1, default=str), encoding="utf-8")
    return 0


def state_name(state: Any) -> str:
    return str(getattr(state, "value", state))


# ---- step 5: the report ------------------------------------------------------------------------------


def expected_attributes(row: tuple[Any, ...]) -> dict[str, Any]:
    """What a row should become in ChartMogul, as the server stores it (NULLs left out)."""
    values = dict(zip(COLUMNS, row, strict=True))
    expected: dict[str, Any] = {}
    for column, key in (("plan_tier", "plan_tier"), ("seats", "seats"), ("segment", "segment")):
        if values[column] is not None:
            expected[key] = values[column]
    if values["cac"] is not None:
        expected["cac"] = float(values["cac"])
    if values["is_pro"] is not None:
        expected["pro"] = bool(values["is_pro"])
    if values["converted_at"] is not None:
        when = dt.datetime.fromisoformat(values["converted_at"].replace("Z", "+00:00"))
        when = (
            when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
        )
        expected["converted_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return expected


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith(".000Z"):
        return value[: -len(".000Z")] + "Z"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def customer_table(server: ServerProcess, report: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """One row per sample customer, and the differences from what was expected (empty: all good)."""
    held = {c["external_id"]: c["attributes"]["custom"] for c in server.admin("GET", "customers")}
    failures = {
        (failure.get("record") or {}).get("external_id"): failure for failure in report.get("failures") or []
    }
    rows: list[list[str]] = []
    problems: list[str] = []
    for row in CUSTOMERS:
        external_id, company, seats = row[0], row[1], row[3]
        custom = held.get(external_id, {})
        selected = seats is None or seats >= MIN_SEATS
        if external_id in failures:
            failure = failures[external_id]
            detail = f"{failure['stage']}: {error_text(failure['error'])}"
            rows.append([external_id, company, "FAILED", detail])
            if external_id not in BAD_ROWS:
                problems.append(f"{external_id} failed unexpectedly: {failure['error']}")
            if custom:
                problems.append(f"{external_id} failed but has attributes {custom}")
        elif not selected:
            rows.append([external_id, company, "not selected", f"seats={seats} < min_seats={MIN_SEATS}"])
            if custom:
                problems.append(f"{external_id} was not selected but has attributes {custom}")
        else:
            shown = " ".join(f"{key}={show_value(value)}" for key, value in custom.items())
            rows.append([external_id, company, "written", shown or "(nothing)"])
            if external_id in BAD_ROWS:
                problems.append(f"{external_id} has a bad {BAD_ROWS[external_id]} but was not reported")
            elif custom != expected_attributes(row):
                problems.append(
                    f"{external_id}: ChartMogul holds {custom}, expected {expected_attributes(row)}"
                )
    return rows, problems


def error_text(error: str) -> str:
    """The reason without the record label the operator puts in front of it."""
    text = re.sub(r"^record #\d+ \([^)]*\): ", "", error)
    return text if len(text) <= 200 else text[:197] + "..."


def format_table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header) - 1)]
    lines = []
    for cells in [list(header), ["-" * w for w in widths] + ["-" * len(header[-1])], *rows]:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
            + "  "
            + cells[-1]
        )
    return "\n".join("  " + line.rstrip() for line in lines)


def summary_line(report: dict[str, Any]) -> str:
    return (
        f"{report['total']} customers: {report['succeeded']} succeeded, {report['failed']} failed, "
        f"{report['skipped']} skipped; attributes added {report['added']}, changed {report['changed']}, "
        f"unchanged {report['unchanged']}, cleared {report['cleared']}"
    )


def operator_log_lines(path: Path) -> list[str]:
    """The operator's own lines from the task log (what the Airflow UI would show for the task)."""
    pattern = re.compile(r"\[(\w+)\s*\] (.*?) \[airflow\.task\.operators\.airflow_provider_chartmogul")
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = pattern.search(line)
        if match:
            message = match.group(2)
            lines.append(f"{match.group(1):<7} {message if len(message) <= 150 else message[:147] + '...'}")
    return lines


def tail(path: Path, count: int) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:])


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- main --------------------------------------------------------------------------------------------


def demo() -> int:
    started = time.monotonic()
    print(f"ChartMogul provider demo: {DAG_ID} against a local ChartMogul-compatible server\n")
    DEMO.mkdir(exist_ok=True)
    AIRFLOW_HOME.mkdir(exist_ok=True)
    write_sample_database(DATABASE)
    write_seed_file(SEED_FILE)
    print(f"  sample database   {rel(DATABASE)}: table customer_attributes, {len(CUSTOMERS)} customers")

    server = ServerProcess(  # ChartMogul's limits per account
        api_key=API_KEY, rate_limit=40, max_parallel=20, seed_file=SEED_FILE, log_path=SERVER_LOG
    )
    try:
        server.start()
        print(f"  ChartMogul server {server.url} (local, seeded with the same {len(CUSTOMERS)} customers)")
        env = airflow_env(server.url)
        if needs_migration():
            print(
                f"  Airflow home      {rel(AIRFLOW_HOME)}: airflow db migrate (first run only) ...",
                flush=True,
            )
            took = migrate(env)
            print(f"  Airflow home      {rel(AIRFLOW_HOME)}: metadata database migrated in {took:.0f} s")
        else:
            print(f"  Airflow home      {rel(AIRFLOW_HOME)}: metadata database already migrated")
        print(
            f"  running           dag.test() of {DAG_ID} (Airflow's output: {rel(RUN_LOG)}) ...", flush=True
        )
        run_started = time.monotonic()
        outcome = run_dag_subprocess(env)
        run_took = time.monotonic() - run_started
        report = outcome["report"]
        if not isinstance(report, dict):
            print(f"\nThe task published no report; the end of {rel(RUN_LOG)}:\n{tail(RUN_LOG, 25)}")
            return 1

        print(
            f"\nDAG run {outcome['run_id']}: {outcome['state']} in {run_took:.0f} s; task "
            f"{TASK_ID}: {outcome['tasks'].get(TASK_ID)}\n"
        )
        log_lines = operator_log_lines(RUN_LOG)
        if log_lines:
            print("The operator's task log:")
            print("\n".join(f"  {line}" for line in log_lines))
            print()

        rows, problems = customer_table(server, report)
        print("Every customer, from the server's final state and the task's report (XCom):\n")
        print(format_table(["customer", "company", "status", "attributes in ChartMogul / error"], rows))
        types = server.definitions()
        print("\nAttribute types on the account: " + ", ".join(f"{k} {v}" for k, v in types.items()))
        print(f"\nSummary: {summary_line(report)}")
    finally:
        server.stop()

    if types != ATTRIBUTE_TYPES:
        problems.append(f"attribute types are {types}, expected {ATTRIBUTE_TYPES}")
    expected_failed = len(BAD_ROWS)
    selected = sum(1 for row in CUSTOMERS if row[3] is None or row[3] >= MIN_SEATS)
    if (report["total"], report["failed"]) != (selected, expected_failed):
        problems.append(
            f"report counts total={report['total']} failed={report['failed']}, expected "
            f"total={selected} failed={expected_failed}"
        )
    if outcome["state"] != "success" or outcome["tasks"].get(TASK_ID) != "success":
        problems.append(f"the DAG run is {outcome['state']}, expected success (max_failures=5)")
    if problems:
        print("\nDemo FAILED: the run did not behave as expected:")
        print("\n".join(f"  - {problem}" for problem in problems))
        return 1
    print(
        f"\nDemo OK in {time.monotonic() - started:.0f} s: the bad row was reported with its reason, every "
        f"other customer was written, and the task succeeded ({expected_failed} failure <= max_failures=5)."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dag", metavar="DAG_ID", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clean", action="store_true", help="delete .demo/ first (a fresh Airflow home)")
    args = parser.parse_args(argv)
    if args.run_dag:
        return run_dag_child(args.run_dag, args.output)
    if args.clean:
        shutil.rmtree(DEMO, ignore_errors=True)
    try:
        return demo()
    except RuntimeError as exc:
        print(f"\nDemo FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
