"""Benchmarks of airflow-provider-chartmogul against the project's ChartMogul-compatible server.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/run.py                       # everything (see README.md)
    .venv/bin/python benchmarks/run.py --quick               # a short smoke run
    .venv/bin/python benchmarks/run.py --only throughput --customers 500

Three sections, each skippable with ``--only``:

1. throughput  the official ``chartmogul`` client in a sequential loop vs
               ``AddCustomAttributesOperator`` at default settings, against a server with
               ChartMogul's limits (40 requests/s, 20 parallel) and 150 ms latency;
2. memory      a SQL source (SQLite) of 10k and 200k rows, server without limits: peak RSS growth;
3. resolution  records given by ``external_id``: lookup requests with ``customer_lookup="auto"``
               (one pass over the listing) and with ``"per_customer"``.

The server runs in its own process (its command line) and every measured case in a fresh
process of its own (``_cases.py``), so CPU time and peak RSS are the client's alone. The script
ends with the figures as a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from _common import API_KEY, ATTRIBUTES_PER_CUSTOMER, customer_uuid, server_customers
from _server import ServerError, ServerProcess, child_environment, status_count, write_seed_file

HERE = Path(__file__).resolve().parent
CASES_SCRIPT = HERE / "_cases.py"
SECTIONS = ("throughput", "memory", "resolution")

# ChartMogul's documented limits, and the targets this benchmark checks.
CEILING_PER_SECOND = 40.0
MAX_PARALLEL = 20
LATENCY_SECONDS = 0.15
TARGET_SHARE_OF_CEILING = 0.95
TARGET_SPEEDUP = 5.8
TARGET_CPU_MS_PER_CUSTOMER = 2.0
TARGET_RSS_GROWTH_MB = 20.0
LOOKUP_PAGE_SIZE = 200
LOOKUP_SLACK = 10
# The memory and resolution runs measure memory and request counts, not the rate limit.
FAST_REQUESTS_PER_SECOND = 5000


class CaseFailed(RuntimeError):
    """A measured child process failed; the message ends with the tail of its output."""


@dataclass
class Settings:
    """The command line's choices."""

    customers: int
    memory_rows: tuple[int, int]
    account: int
    resolve_records: int
    per_customer_records: int
    sections: tuple[str, ...]
    quick: bool
    keep: bool
    check: bool
    bytecode_cache: bool


@dataclass
class Target:
    """One target and whether the run met it."""

    name: str
    figure: str
    goal: str
    met: bool | None  # None: not measured


@dataclass
class Results:
    """Everything measured, for the summary and the Markdown table."""

    machine: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    resolution: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


# ---- small helpers ---------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def fmt_int(value: int) -> str:
    return f"{value:,}"


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def cpu_ms_per_customer(result: dict[str, Any]) -> float:
    return 1000 * result["cpu_seconds"] / max(result["customers"], 1)


def git_state(package_dir: str) -> str:
    """``git <short sha>`` of the provider's repository, noting uncommitted changes to the package."""
    repo = Path(package_dir).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "git: no commit" if git("rev-parse", "--git-dir") is not None else "not a git checkout"
    dirty = git("status", "--porcelain", "--", Path(package_dir).name)
    return f"git {head}" + (" + uncommitted changes" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Runner:
    """Starts servers and measured child processes in one temporary working directory."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.home = workdir / "airflow-home"
        self.home.mkdir()
        self._counter = 0
        base = dict(os.environ)
        if settings.bytecode_cache:
            # A worker has its bytecode compiled; without a cache every process recompiles all of
            # Airflow (10 s and more here). A private prefix writes nothing into the work tree.
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            cache = Path(tempfile.gettempdir()) / "airflow-provider-chartmogul-bench" / "pycache"
            cache.mkdir(parents=True, exist_ok=True)
            base["PYTHONPYCACHEPREFIX"] = str(cache)
        base.pop("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", None)
        self.base_env = child_environment(
            base,
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(workdir / "dags"),
        )

    def server(self, name: str, **kwargs: Any) -> ServerProcess:
        return ServerProcess(
            api_key=API_KEY, log_path=self.workdir / f"server-{name}.log", env=self.base_env, **kwargs
        )

    def run_case(
        self, case: str, spec: dict[str, Any], *, timeout: float, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run ``_cases.py CASE`` in a fresh process; its figures."""
        self._counter += 1
        stem = self.workdir / f"{self._counter:02d}-{case}"
        spec_path, out_path, log_path = (stem.with_suffix(s) for s in (".spec.json", ".out.json", ".log"))
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        command = [sys.executable, str(CASES_SCRIPT), case, str(spec_path), str(out_path)]
        with open(log_path, "w", encoding="utf-8") as log:
            try:
                completed = subprocess.run(
                    command,
                    env=env or self.base_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise CaseFailed(
                    f"{case} did not finish within {timeout:.0f} s{self._tail(log_path)}"
                ) from None
        if completed.returncode != 0 or not out_path.exists():
            raise CaseFailed(f"{case} exited with status {completed.returncode}{self._tail(log_path)}")
        return json.loads(out_path.read_text(encoding="utf-8"))

    @staticmethod
    def _tail(path: Path, lines: int = 25) -> str:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n    " + "\n    ".join(text) if text else ""

    def provider_env(self, server: ServerProcess, **extra: str) -> dict[str, str]:
        """The environment of a provider case: a ``chartmogul_default`` connection at defaults."""
        connection = {"conn_type": "chartmogul", "host": server.url, "password": API_KEY}
        return child_environment(
            self.base_env, AIRFLOW_CONN_CHARTMOGUL_DEFAULT=json.dumps(connection), **extra
        )


# ---- 0. machine --------------------------------------------------------------------------------------


def probe_machine(runner: Runner, results: Results) -> None:
    info = runner.run_case("probe", {}, timeout=600)
    results.machine = {
        **info,
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "system": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git_state(info["provider_path"]),
    }
    m = results.machine
    say(f"machine: {m['cores']} cores ({m['cpu']}), {m['system']}")
    say(
        f"software: Python {m['python']}, Airflow {m['airflow']}, airflow-provider-chartmogul "
        f"{m['provider']}, chartmogul {m['chartmogul']}"
    )
    say(
        f"provider source measured: {m['provider_path']}, sha256 of its .py files {m['fingerprint']} "
        f"({m['git']})"
    )
    cache = (
        "on (private PYTHONPYCACHEPREFIX)" if runner.settings.bytecode_cache else "as the environment says"
    )
    say(
        f"first import in this run (bytecode cache {cache}): Airflow + provider "
        f"{m['airflow_import_seconds']:.1f} s, chartmogul {m['chartmogul_import_seconds']:.1f} s"
    )


# ---- 1. throughput -----------------------------------------------------------------------------------


def section_throughput(runner: Runner, results: Results) -> None:
    count = runner.settings.customers
    server = runner.server(
        "throughput",
        latency=LATENCY_SECONDS,
        rate_limit=CEILING_PER_SECOND,
        max_parallel=MAX_PARALLEL,
        record_requests=True,  # about 2 log entries per customer: the timeline below reads them
    )
    say()
    say(f"== 1. Throughput: {fmt_int(count)} customers, {ATTRIBUTES_PER_CUSTOMER} custom attributes each")
    with server:
        say(f"   server: separate process, {server.describe()}; {fmt_int(count)} customers seeded")
        customers = server_customers(count)
        server.seed(customers)
        spec = {"url": server.url, "count": count}

        say(
            f"   (a) official chartmogul client, sequential CustomAttributes.add(...).get() loop, "
            f"default retries (about {count / 6.5:.0f} s) ..."
        )
        official = runner.run_case("official", spec, timeout=max(900.0, count * 2.0))
        official["server"] = server.stats()

        server.reset()  # customers, rate window and statistics
        server.seed(customers)
        say(
            "   (b) provider: AddCustomAttributesOperator(customers=records).execute(context={}), "
            "default settings ..."
        )
        ours = runner.run_case(
            "provider",
            {"source": "uuid", "count": count, "operator": {}},
            timeout=max(900.0, count * 1.0),
            env=runner.provider_env(server),
        )
        ours["server"] = server.stats()
        ours["timeline"] = timeline(server.request_log())
    results.throughput = {"customers": count, "official": official, "provider": ours}

    rows = []
    for label, result in (("(a) official client loop", official), ("(b) provider, defaults", ours)):
        cps = per_second(result["succeeded"], result["wall_seconds"])
        result["customers_per_second"] = cps
        rows.append(
            (
                label,
                f"{cps:.2f}",
                f"{100 * cps / CEILING_PER_SECOND:.1f} %",
                str(status_count(result["server"], 429)),
                str(status_count(result["server"], 503)),
                f"{result['cpu_seconds'] * 1000 / max(result['customers'], 1):.2f}",
                f"{result['peak_rss_mb']:.0f} MB",
                f"{result['wall_seconds']:.1f}",
                f"{result['succeeded']}/{result['customers']}",
            )
        )
    say()
    print_table(
        ("", "customers/s", "of 40/s", "429", "503", "CPU s/1000", "peak RSS", "wall s", "succeeded"), rows
    )
    ratio = ours["customers_per_second"] / official["customers_per_second"]
    results.throughput["ratio"] = ratio
    say(f"   ratio b/a: {ratio:.2f}x")
    hook = ours.get("requests") or {}
    say(
        f"   provider: {hook.get('requests')} requests, {hook.get('retries')} retries, by status "
        f"{hook.get('by_status')}; server saw at most {ours['server'].get('max_in_flight')} in flight"
    )
    conn = ours.get("connection_settings") or {}
    say(
        f"   provider connection settings in force (defaults): max_requests_per_second "
        f"{conn.get('max_requests_per_second')}, max_connections {conn.get('max_connections')}, "
        f"max_retries {conn.get('max_retries')}, timeout {conn.get('timeout')} s"
    )
    line = ours["timeline"]
    say(
        "   (b) requests the server admitted in each second of the run: "
        + " ".join(str(n) for n in line["admitted_per_second"])
    )
    say(
        f"   (b) most admitted in any 1 s window: {line['max_in_window']}; 429/503 answers at t = "
        + (", ".join(f"{t:.2f}" for t in line["pushback_at"]) or "-")
        + " s"
    )
    say(
        f"   not timed: provider process: Airflow + provider import {ours['import_seconds']:.1f} s, "
        f"first connection lookup {ours['warmup_seconds']:.1f} s; official client process: chartmogul "
        f"import {official['import_seconds']:.1f} s"
    )
    for result, label in ((official, "official"), (ours, "provider")):
        for failure in result.get("failures") or []:
            say(f"   {label} failure: {failure}")


def timeline(log: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-second counts of admitted requests, the busiest 1 s window, and when 429/503 came."""
    if not log:
        return {"admitted_per_second": [], "max_in_window": 0, "pushback_at": []}
    start = min(entry["started"] for entry in log)
    admitted = sorted(entry["started"] - start for entry in log if entry["status"] not in (429, 503))
    pushback = sorted(entry["started"] - start for entry in log if entry["status"] in (429, 503))
    seconds = Counter(int(t) for t in admitted)
    per_second_counts = [seconds.get(i, 0) for i in range(int(max(admitted, default=0)) + 1)]
    busiest, first = 0, 0
    for last, moment in enumerate(admitted):
        while admitted[first] <= moment - 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return {"admitted_per_second": per_second_counts, "max_in_window": busiest, "pushback_at": pushback}


# ---- 2. memory -----------------------------------------------------------------------------------------


def make_sqlite_source(path: Path, rows: int) -> None:
    """A table ``attrs``: customer_uuid + 3 attribute columns (String, Integer, Decimal)."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE attrs (id INTEGER PRIMARY KEY, customer_uuid TEXT NOT NULL, "
            "channel TEXT, seats INTEGER, mrr REAL)"
        )
        db.executemany(
            "INSERT INTO attrs (id, customer_uuid, channel, seats, mrr) VALUES (?, ?, ?, ?, ?)",
            (
                (i, customer_uuid(i), ("Facebook", "Google", "Referral")[i % 3], i % 50, i * 1.25)
                for i in range(rows)
            ),
        )
    db.close()


def section_memory(runner: Runner, results: Results) -> None:
    small, large = runner.settings.memory_rows
    say()
    say(f"== 2. Memory: SQL source (SQLite) of {fmt_int(small)} and {fmt_int(large)} rows")
    database = runner.workdir / "source.db"
    make_sqlite_source(database, large)
    seed = write_seed_file(runner.workdir / "memory-seed.json", server_customers(large))
    server = runner.server("memory", record_requests=False, seed_file=seed)
    measured: list[dict[str, Any]] = []
    with server:
        say(
            f"   server: separate process, {server.describe()}; {fmt_int(large)} customers from --seed; "
            f"provider: max_requests_per_second={FAST_REQUESTS_PER_SECOND}, other settings default"
        )
        sql_conn = json.dumps({"conn_type": "sqlite", "host": str(database)})
        env = runner.provider_env(server, AIRFLOW_CONN_BENCHMARK_SOURCE=sql_conn)
        for rows in (small, large):
            say(f"   {fmt_int(rows)} rows ...")
            before = server.stats()
            result = runner.run_case(
                "provider",
                {
                    "source": "sql",
                    "sql": f"SELECT customer_uuid, channel, seats, mrr FROM attrs ORDER BY id LIMIT {rows}",
                    "sql_conn_id": "benchmark_source",
                    "operator": {"max_requests_per_second": FAST_REQUESTS_PER_SECOND},
                },
                timeout=max(900.0, rows * 0.05),
                env=env,
            )
            after = server.stats()
            result["rows"] = rows
            result["server_requests"] = after["total"] - before["total"]
            result["customers_per_second"] = per_second(result["succeeded"], result["wall_seconds"])
            measured.append(result)
        server_peak = server.peak_rss_mb()
    growth = measured[1]["peak_rss_mb"] - measured[0]["peak_rss_mb"]
    results.memory = {"runs": measured, "growth_mb": growth, "server_peak_rss_mb": server_peak}
    say()
    print_table(
        (
            "rows",
            "wall s",
            "customers/s",
            "CPU ms/customer",
            "peak RSS before run",
            "peak RSS",
            "requests",
            "succeeded",
        ),
        [
            (
                fmt_int(r["rows"]),
                f"{r['wall_seconds']:.1f}",
                f"{r['customers_per_second']:.0f}",
                f"{cpu_ms_per_customer(r):.2f}",
                f"{r['rss_before_mb']:.1f} MB",
                f"{r['peak_rss_mb']:.1f} MB",
                fmt_int(r["server_requests"]),
                f"{fmt_int(r['succeeded'])}/{fmt_int(r['customers'])}",
            )
            for r in measured
        ],
    )
    say(f"   peak RSS growth {fmt_int(small)} -> {fmt_int(large)} rows: {growth:+.1f} MB")
    if server_peak is not None:
        say(f"   (server process peak RSS, not measured against any target: {server_peak:.0f} MB)")
    for r in measured:
        for failure in r.get("failures") or []:
            say(f"   failure ({fmt_int(r['rows'])} rows): {failure}")


# ---- 3. resolution -------------------------------------------------------------------------------------


def classify(entry: dict[str, Any]) -> str:
    """The kind of one logged API request."""
    path, method = entry["path"].rstrip("/"), entry["method"]
    query = entry.get("query") or parse_qs("")
    if method == "GET" and path == "/v1/customers":
        if query.get("external_id"):
            return "GET /v1/customers?external_id= (lookup)"
        if query.get("email"):
            return "GET /v1/customers?email= (lookup)"
        return "GET /v1/customers (listing page)"
    if method == "GET" and path == "/v1/customers/search":
        return "GET /v1/customers/search (lookup)"
    if path.endswith("/attributes/custom") and path.startswith("/v1/customers/cus"):
        return f"{method} /v1/customers/{{uuid}}/attributes/custom"
    if method == "GET" and path.endswith("/attributes"):
        return "GET /v1/customers/{uuid}/attributes"
    return f"{method} {path}"


def lookup_requests(kinds: Counter[str]) -> int:
    return sum(
        n for kind, n in kinds.items() if kind.startswith("GET /v1/customers") and "{uuid}" not in kind
    )


def section_resolution(runner: Runner, results: Results) -> None:
    account = runner.settings.account
    records = runner.settings.resolve_records
    sample = runner.settings.per_customer_records
    limit = math.ceil(account / LOOKUP_PAGE_SIZE) + LOOKUP_SLACK
    say()
    say(
        f"== 3. Resolution: {fmt_int(records)} records by external_id in an account of {fmt_int(account)} "
        "customers"
    )
    server = runner.server("resolution", record_requests=True)
    runs: dict[str, dict[str, Any]] = {}
    with server:
        server.seed(server_customers(account))
        say(
            f"   server: separate process, {server.describe()}; provider: "
            f"max_requests_per_second={FAST_REQUESTS_PER_SECOND}, other settings default"
        )
        env = runner.provider_env(server)
        for name, count, operator in (
            ("auto", records, {}),
            ("per_customer", sample, {"customer_lookup": "per_customer"}),
        ):
            say(f"   customer_lookup={name!r}, {fmt_int(count)} records ...")
            server.clear_request_log()
            result = runner.run_case(
                "provider",
                {
                    "source": "external_id",
                    "count": count,
                    "operator": {**operator, "max_requests_per_second": FAST_REQUESTS_PER_SECOND},
                },
                timeout=max(900.0, count * 0.2),
                env=env,
            )
            kinds = Counter(classify(entry) for entry in server.request_log())
            result["kinds"] = dict(kinds)
            result["lookup_requests_server"] = lookup_requests(kinds)
            result["records"] = count
            runs[name] = result
    results.resolution = {"account": account, "limit": limit, "runs": runs}
    say()
    rows = []
    for name, result in runs.items():
        lookup = result.get("customer_lookup") or {}
        rows.append(
            (
                repr(name),
                fmt_int(result["records"]),
                str(lookup.get("strategy")),
                fmt_int(int(lookup.get("requests") or 0)),
                fmt_int(result["lookup_requests_server"]),
                f"{result['lookup_requests_server'] / max(result['records'], 1):.3f}",
                f"{fmt_int(result['succeeded'])}/{fmt_int(result['customers'])}",
                f"{result['wall_seconds']:.1f}",
            )
        )
    print_table(
        (
            "customer_lookup",
            "records",
            "strategy",
            "lookups (report)",
            "lookups (server)",
            "per record",
            "succeeded",
            "wall s",
        ),
        rows,
    )
    say(
        f"   target for 'auto': <= ceil({fmt_int(account)} / {LOOKUP_PAGE_SIZE}) + {LOOKUP_SLACK} "
        f"= {limit} requests"
    )
    for name, result in runs.items():
        detail = ", ".join(f"{kind}: {fmt_int(n)}" for kind, n in sorted(result["kinds"].items()))
        say(f"   server requests by path, {name!r}: {detail}")
        for failure in result.get("failures") or []:
            say(f"   failure ({name}): {failure}")


# ---- summary -------------------------------------------------------------------------------------------


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        say("   " + "  ".join(cells))
        if index == 0:
            say("   " + "  ".join("-" * width for width in widths))


def evaluate(results: Results, settings: Settings) -> None:
    targets = results.targets
    tp = results.throughput
    if tp:
        ours, official = tp["provider"], tp["official"]
        cps = ours["customers_per_second"]
        floor = TARGET_SHARE_OF_CEILING * CEILING_PER_SECOND
        targets.append(
            Target(
                "provider throughput at defaults",
                f"{cps:.2f} customers/s ({100 * cps / CEILING_PER_SECOND:.1f} % of 40/s)",
                f">= {floor:.0f}/s (95 %)",
                cps >= floor,
            )
        )
        pushback = status_count(ours["server"], 429), status_count(ours["server"], 503)
        targets.append(
            Target(
                "429 / 503 answers to the provider",
                f"{pushback[0]} / {pushback[1]}",
                "0 / 0",
                sum(pushback) == 0,
            )
        )
        targets.append(
            Target(
                "speed-up over the official client loop",
                f"{tp['ratio']:.2f}x ({cps:.2f} vs {official['customers_per_second']:.2f} customers/s)",
                f">= {TARGET_SPEEDUP}x",
                tp["ratio"] >= TARGET_SPEEDUP,
            )
        )
        cpu = cpu_ms_per_customer(ours)
        targets.append(
            Target(
                "provider client CPU per customer pushed",
                f"{cpu:.2f} ms",
                f"<= {TARGET_CPU_MS_PER_CUSTOMER:.0f} ms",
                cpu <= TARGET_CPU_MS_PER_CUSTOMER,
            )
        )
    mem = results.memory
    if mem:
        small, large = (r["rows"] for r in mem["runs"])
        sizes = "" if (small, large) == (10_000, 200_000) else " (not the target's 10k/200k sizes)"
        targets.append(
            Target(
                f"peak RSS growth {fmt_int(small)} -> {fmt_int(large)} SQL rows{sizes}",
                f"{mem['growth_mb']:+.1f} MB",
                f"<= {TARGET_RSS_GROWTH_MB:.0f} MB",
                mem["growth_mb"] <= TARGET_RSS_GROWTH_MB,
            )
        )
    res = results.resolution
    if res:
        auto = res["runs"]["auto"]
        lookups = max(
            auto["lookup_requests_server"], int((auto.get("customer_lookup") or {}).get("requests") or 0)
        )
        targets.append(
            Target(
                f"lookup requests to resolve {fmt_int(auto['records'])} external ids",
                f"{lookups} ({(auto.get('customer_lookup') or {}).get('strategy')})",
                f"<= {res['limit']}",
                lookups <= res["limit"] and auto["failed"] == 0,
            )
        )
    changed = sorted(
        {
            result["fingerprint"]
            for result in measured_provider_runs(results)
            if result.get("fingerprint") not in (None, results.machine.get("fingerprint"))
        }
    )
    if changed:
        results.warnings.append(
            "the provider's source changed during the run (sha256 "
            f"{results.machine.get('fingerprint')} at the start, then {', '.join(changed)}): "
            "figures of different sections may come from different code"
        )
    say()
    say("== Targets")
    for target in targets:
        mark = "met   " if target.met else "MISSED" if target.met is not None else "n/a   "
        say(f"   [{mark}] {target.name}: {target.figure} (target {target.goal})")
    for error in results.errors:
        say(f"   [ERROR ] {error.splitlines()[0]}")
    for warning in results.warnings:
        say(f"   [WARN  ] {warning}")


def measured_provider_runs(results: Results) -> list[dict[str, Any]]:
    """Every provider case's figures, in run order."""
    runs: list[dict[str, Any]] = []
    if results.throughput:
        runs.append(results.throughput["provider"])
    if results.memory:
        runs.extend(results.memory["runs"])
    if results.resolution:
        runs.extend(results.resolution["runs"].values())
    return runs


def markdown(results: Results, settings: Settings, wall: float) -> str:
    m = results.machine
    lines = [
        "### Benchmarks",
        "",
        f"`benchmarks/run.py`{' --quick' if settings.quick else ''}, {m.get('date', '?')}: "
        f"{m.get('cores', '?')} cores ({m.get('cpu', '?')}), {m.get('system', '?')}, "
        f"Python {m.get('python', '?')}, "
        f"Airflow {m.get('airflow', '?')}, airflow-provider-chartmogul {m.get('provider', '?')}, "
        f"chartmogul {m.get('chartmogul', '?')}; provider source sha256 {m.get('fingerprint', '?')} "
        f"({m.get('git', '?')}). The project's ChartMogul-compatible server runs in a "
        f"separate process; each measured case runs in a fresh process; whole run {wall / 60:.1f} min.",
        "",
        "| Measurement | Result | Target | |",
        "|---|---|---|---|",
    ]
    tp = results.throughput
    if tp:
        setting = (
            f"{fmt_int(tp['customers'])} customers x {ATTRIBUTES_PER_CUSTOMER} attributes, "
            "server at 40 req/s, "
            f"{MAX_PARALLEL} parallel, {LATENCY_SECONDS * 1000:.0f} ms latency"
        )
        for label, key in (
            ("official `chartmogul` client, sequential loop", "official"),
            ("provider, defaults", "provider"),
        ):
            r = tp[key]
            lines.append(
                f"| Throughput, {label} ({setting}) | {r['customers_per_second']:.1f} customers/s "
                f"({100 * r['customers_per_second'] / CEILING_PER_SECOND:.0f} % of 40/s); "
                f"{status_count(r['server'], 429)}x 429, {status_count(r['server'], 503)}x 503; "
                f"{cpu_ms_per_customer(r):.2f} ms CPU/customer; peak RSS {r['peak_rss_mb']:.0f} MB | | |"
            )
    mem = results.memory
    if mem:
        for r in mem["runs"]:
            lines.append(
                f"| SQL source (SQLite), {fmt_int(r['rows'])} rows, no server limits | "
                f"{r['wall_seconds']:.0f} s, "
                f"{r['customers_per_second']:.0f} customers/s, {cpu_ms_per_customer(r):.2f} ms CPU/customer, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB | | |"
            )
    res = results.resolution
    if res:
        per = res["runs"]["per_customer"]
        lines.append(
            f'| `customer_lookup="per_customer"`, {fmt_int(per["records"])} records by external id | '
            f"{per['lookup_requests_server']} lookup requests "
            f"({per['lookup_requests_server'] / max(per['records'], 1):.2f} per record) | | |"
        )
    for target in results.targets:
        verdict = "met" if target.met else "**missed**"
        lines.append(f"| {target.name} | {target.figure} | {target.goal} | {verdict} |")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--customers", type=int, default=None, help="throughput: customers pushed (default 1000)"
    )
    parser.add_argument(
        "--memory-rows",
        default=None,
        help="memory: the two SQL source sizes, SMALL,LARGE (default 10000,200000)",
    )
    parser.add_argument(
        "--account", type=int, default=None, help="resolution: customers in the account (12000)"
    )
    parser.add_argument(
        "--resolve", type=int, default=None, help="resolution: records by external_id (10000)"
    )
    parser.add_argument(
        "--per-customer",
        type=int,
        default=None,
        help="resolution: records for customer_lookup='per_customer' (300)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="run only these sections: throughput, memory, resolution (repeatable or comma-separated)",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (small sizes everywhere)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (logs, specs, results)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX as they are in the environment",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    sections: list[str] = []
    for item in args.only or list(SECTIONS):
        for name in item.split(","):
            name = name.strip()
            if name not in SECTIONS:
                parser.error(f"--only: unknown section {name!r}; choose from {', '.join(SECTIONS)}")
            if name not in sections:
                sections.append(name)
    memory_rows = (2_000, 20_000) if quick else (10_000, 200_000)
    if args.memory_rows:
        try:
            small, large = (int(part) for part in args.memory_rows.split(","))
        except ValueError:
            parser.error("--memory-rows takes two whole numbers, SMALL,LARGE")
        memory_rows = (small, large)
    settings = Settings(
        customers=args.customers or (100 if quick else 1000),
        memory_rows=memory_rows,
        account=args.account or (2_400 if quick else 12_000),
        resolve_records=args.resolve or (2_000 if quick else 10_000),
        per_customer_records=args.per_customer or (60 if quick else 300),
        sections=tuple(s for s in SECTIONS if s in sections),
        quick=quick,
        keep=args.keep,
        check=args.check,
        bytecode_cache=not args.no_bytecode_cache,
    )
    if (
        min(
            settings.customers, *settings.memory_rows, settings.resolve_records, settings.per_customer_records
        )
        < 1
    ):
        parser.error("sizes must be at least 1")
    if not settings.memory_rows[0] < settings.memory_rows[1]:
        parser.error("--memory-rows: SMALL must be less than LARGE")
    if settings.resolve_records > settings.account or settings.per_customer_records > settings.account:
        parser.error("the records to resolve must exist in the account (--account)")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chartmogul-bench-"))
    results = Results()
    say(
        f"airflow-provider-chartmogul benchmarks{' (--quick)' if settings.quick else ''}: "
        f"{', '.join(settings.sections)}"
    )
    runner = Runner(settings, workdir)
    try:
        probe_machine(runner, results)
        for name, section in (
            ("throughput", section_throughput),
            ("memory", section_memory),
            ("resolution", section_resolution),
        ):
            if name not in settings.sections:
                continue
            try:
                section(runner, results)
            except (CaseFailed, ServerError, OSError) as exc:
                results.errors.append(f"{name}: {exc}")
                say(f"   {name} failed: {exc}")
    except CaseFailed as exc:
        results.errors.append(str(exc))
        say(f"failed: {exc}")
    finally:
        if settings.keep:
            say(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - started
    evaluate(results, settings)
    say()
    say("== Markdown (for the README)")
    say()
    say(markdown(results, settings, wall))
    say()
    say(f"whole run: {wall:.0f} s ({wall / 60:.1f} min)")
    if results.errors:
        return 2
    if settings.check and any(t.met is False for t in results.targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
