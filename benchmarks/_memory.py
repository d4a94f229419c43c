"""Memory (a SQL source of 10k and 200k rows, peak RSS growth) and customer resolution
(records by ``external_id``: lookup requests with ``customer_lookup="auto"`` and ``"per_customer"``)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from _common import customer_uuid, server_customers
from _harness import (
    FAST_REQUESTS_PER_SECOND,
    Results,
    Runner,
    cpu_ms_per_customer,
    fmt_int,
    heading,
    per_second,
    print_table,
    say,
    server_log,
)
from _server import write_seed_file

TARGET_RSS_GROWTH_MB = 20.0
LOOKUP_PAGE_SIZE = 200
LOOKUP_SLACK = 10


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
    heading("memory", f"SQL source (SQLite) of {fmt_int(small)} and {fmt_int(large)} rows")
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
        env = runner.provider_env(server.url, AIRFLOW_CONN_BENCHMARK_SOURCE=sql_conn)
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
    results.sections["memory"] = {"runs": measured, "growth_mb": growth, "server_peak_rss_mb": server_peak}
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
    sizes = "" if (small, large) == (10_000, 200_000) else " (not the target's 10k/200k sizes)"
    results.target(
        "memory",
        f"peak RSS growth {fmt_int(small)} -> {fmt_int(large)} SQL rows{sizes}",
        f"{growth:+.1f} MB",
        f"<= {TARGET_RSS_GROWTH_MB:.0f} MB",
        growth <= TARGET_RSS_GROWTH_MB,
    )
    for r in measured:
        results.markdown_rows.append(
            f"| SQL source (SQLite), {fmt_int(r['rows'])} rows, no server limits | "
            f"{r['wall_seconds']:.0f} s, {r['customers_per_second']:.0f} customers/s, "
            f"{cpu_ms_per_customer(r):.2f} ms CPU/customer, peak RSS {r['peak_rss_mb']:.0f} MB | | |"
        )


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
    heading(
        "resolution",
        f"{fmt_int(records)} records by external_id in an account of {fmt_int(account)} customers",
    )
    server = runner.server("resolution", record_requests=True)
    runs: dict[str, dict[str, Any]] = {}
    with server:
        server.seed(server_customers(account))
        say(
            f"   server: separate process, {server.describe()}; provider: "
            f"max_requests_per_second={FAST_REQUESTS_PER_SECOND}, other settings default"
        )
        env = runner.provider_env(server.url)
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
            kinds = Counter(classify(entry) for entry in server_log(server))
            result["kinds"] = dict(kinds)
            result["lookup_requests_server"] = lookup_requests(kinds)
            result["records"] = count
            runs[name] = result
    results.sections["resolution"] = {"account": account, "limit": limit, "runs": runs}
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
    auto, per = runs["auto"], runs["per_customer"]
    lookup = auto.get("customer_lookup") or {}
    lookups = max(auto["lookup_requests_server"], int(lookup.get("requests") or 0))
    results.target(
        "resolution",
        f"lookup requests to resolve {fmt_int(auto['records'])} external ids",
        f"{lookups} ({lookup.get('strategy')})",
        f"<= {limit}",
        lookups <= limit and auto["failed"] == 0,
    )
    results.markdown_rows.append(
        f'| `customer_lookup="per_customer"`, {fmt_int(per["records"])} records by external id | '
        f"{per['lookup_requests_server']} lookup requests "
        f"({per['lookup_requests_server'] / max(per['records'], 1):.2f} per record) | | |"
    )
