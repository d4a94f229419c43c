"""A million customers on one worker: the daily sync (``mode="sync"``, a SQL source keyed by
``external_id``, 5 % of values changed) from 10k to 1M customers with the server unthrottled
(peak RSS, RSS growth per customer, CPU per customer, wall time against ``requests / 40``, the
request count), a no-op re-run at the largest size, and 100k and 300k at ChartMogul's limits (the
time ratio). The picture of peak RSS against customers goes to ``docs/images/large-accounts-rss.png``.

The server seeds its synthetic customers (``--seed-synthetic``); the source rows are built from
the same formulas (:mod:`airflow_provider_chartmogul.testing.server.synthetic`). Sizes:
``MILLION_SIZES`` and ``MILLION_LIMIT_SIZES`` (comma-separated) override the defaults.

At ChartMogul's limits the rows are keyed as ChartMogul keys a customer, by ``external_id`` with
its ``data_source_uuid`` (``MILLION_LIMIT_KEY``: ``external_id``, the default; ``customer_uuid``;
or ``bare_external_id``, no data source). Records by a bare ``external_id`` wait for the whole
listing, since a later page may hold a second customer with that id, so their writes cannot
overlap the listing and the time is the listing's plus the writes' (about 1.5 x requests / 40).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import SYNC_CHANGED_EVERY, is_changed
from _harness import Results, Runner, cpu_ms_per_customer, fmt_int, heading, print_table, say

from airflow_provider_chartmogul.push.index import CACHE_KIB
from airflow_provider_chartmogul.testing.server.customers import DEFAULT_DATA_SOURCE_UUID
from airflow_provider_chartmogul.testing.server.synthetic import (
    synthetic_custom,
    synthetic_external_id,
    synthetic_uuid,
)

REPO = Path(__file__).resolve().parent.parent
PICTURE = REPO / "docs" / "images" / "large-accounts-rss.png"
SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES = (2_000, 10_000, 30_000)
LIMIT_SIZES = (100_000, 300_000)
QUICK_LIMIT_SIZES = (5_000,)
PAGE_SIZE = 200
CEILING_PER_SECOND = 40

# Targets (issue 19), scaled where the sizes differ.
TARGET_GROWTH_MB_PER_MILLION = 300.0  # peak RSS growth, the largest size over the smallest
TARGET_FLAT_MB = 50.0  # 300k -> 1M
TARGET_CPU_MS = 0.3  # per customer listed
TARGET_TIME_RATIO = 1.05  # wall / (requests / 40), at ChartMogul's limits
TARGET_REQUEST_SLACK = 0.01  # requests <= listing pages + changed customers + 1 %

#: MILLION_LIMIT_KEY -> the identifier columns selected.
KEY_COLUMNS = {
    "external_id": "external_id, data_source_uuid",
    "customer_uuid": "customer_uuid",
    "bare_external_id": "external_id",
}


def _sizes(name: str, default: Sequence[int]) -> tuple[int, ...]:
    text = os.environ.get(name)
    if text is None:
        return tuple(default)
    return tuple(int(part) for part in text.split(",") if part.strip())


def make_source(path: Path, count: int) -> None:
    """A table ``accounts``: ``customer_uuid``, ``external_id``, ``data_source_uuid``, ``channel``,
    ``age``, ``pro`` for synthetic customer ``i`` as the account holds it, but one in
    ``SYNC_CHANGED_EVERY`` an ``age`` 1000 higher."""
    insert = "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, customer_uuid TEXT, external_id TEXT, "
            "data_source_uuid TEXT, channel TEXT, age INTEGER, pro INTEGER)"
        )
        rows = []
        for i in range(count):
            custom = synthetic_custom(i)
            age = custom["age"] + (1000 if is_changed(i) else 0)
            uuid, external_id = synthetic_uuid(i), synthetic_external_id(i)
            ds = DEFAULT_DATA_SOURCE_UUID
            rows.append((i, uuid, external_id, ds, custom["channel"], age, int(custom["pro"])))
            if len(rows) == 50_000:
                db.executemany(insert, rows)
                rows.clear()
        db.executemany(insert, rows)
    db.close()


def _sync(
    runner: Runner,
    server: Any,
    count: int,
    env: dict[str, str],
    operator: dict[str, Any],
    key: str = "bare_external_id",
) -> dict[str, Any]:
    before = server.stats()["total"]
    result = runner.run_case(
        "provider",
        {
            "source": "sql",
            "sql": f"SELECT {KEY_COLUMNS[key]}, channel, age, pro FROM accounts ORDER BY id LIMIT {count}",
            "sql_conn_id": "million_source",
            "operator": {"mode": "sync", "attribute_types": {"pro": "Boolean"}, **operator},
        },
        timeout=max(900.0, count * 0.01),
        env=env,
    )
    result["count"] = count
    result["key"] = key
    result["server_requests"] = server.stats()["total"] - before
    lookup = result.get("customer_lookup") or {}
    result["listing_pages"] = int(lookup.get("requests") or 0)
    result["writes"] = result["server_requests"] - result["listing_pages"]
    result["changed"] = sum(1 for i in range(count) if is_changed(i))
    return result


def _request_goal(result: dict[str, Any], changed: int) -> int:
    pages = math.ceil(result["count"] / PAGE_SIZE)
    return math.floor((pages + changed) * (1 + TARGET_REQUEST_SLACK))


def section_million(runner: Runner, results: Results) -> None:
    section = "million"
    quick = runner.settings.quick
    sizes = _sizes("MILLION_SIZES", QUICK_SIZES if quick else SIZES)
    limit_sizes = _sizes("MILLION_LIMIT_SIZES", QUICK_LIMIT_SIZES if quick else LIMIT_SIZES)
    limit_key = os.environ.get("MILLION_LIMIT_KEY", "external_id")
    if limit_key not in KEY_COLUMNS:
        raise SystemExit(f"MILLION_LIMIT_KEY must be one of {', '.join(KEY_COLUMNS)}, got {limit_key!r}")
    largest = max(sizes, default=0)
    heading(
        section,
        f"daily sync from SQL by external_id, {1 / SYNC_CHANGED_EVERY:.0%} changed: "
        f"{', '.join(fmt_int(n) for n in sizes)} customers unthrottled; "
        f"{', '.join(fmt_int(n) for n in limit_sizes)} at ChartMogul's limits, keyed by {limit_key}",
    )
    database = runner.workdir / "million-source.db"
    make_source(database, max((*sizes, *limit_sizes)))
    sql_conn = json.dumps({"conn_type": "sqlite", "host": str(database)})
    unthrottled: list[dict[str, Any]] = []
    noop: dict[str, Any] | None = None
    for count in sizes:
        with runner.server(f"million-{count}", synthetic_customers=count, record_requests=False) as server:
            env = runner.provider_env(server.url, AIRFLOW_CONN_MILLION_SOURCE=sql_conn)
            say(f"   {fmt_int(count)} customers, unthrottled ...")
            result = _sync(runner, server, count, env, {"max_requests_per_second": 1000})
            unthrottled.append(result)
            if count == largest:
                say(f"   {fmt_int(count)} customers, the no-op re-run ...")
                noop = _sync(runner, server, count, env, {"max_requests_per_second": 1000})
                noop["changed"] = 0
    at_limits: list[dict[str, Any]] = []
    for count in limit_sizes:
        with runner.server_at_limits(f"million-limits-{count}", synthetic_customers=count) as server:
            env = runner.provider_env(server.url, AIRFLOW_CONN_MILLION_SOURCE=sql_conn)
            say(f"   {fmt_int(count)} customers at ChartMogul's limits ({server.describe()}) ...")
            at_limits.append(_sync(runner, server, count, env, {}, key=limit_key))
    _say_results(unthrottled, noop, at_limits)
    _targets(results, section, unthrottled, noop, at_limits)
    results.sections[section] = {"unthrottled": unthrottled, "noop": noop, "at_limits": at_limits}
    if unthrottled and write_rss_picture(unthrottled, PICTURE):
        say(f"   picture: {PICTURE.relative_to(REPO)}")


def _row(label: str, r: dict[str, Any]) -> tuple[str, ...]:
    return (
        label,
        f"{r['wall_seconds']:.1f}",
        f"{r['server_requests'] / CEILING_PER_SECOND:.1f}",
        fmt_int(r["server_requests"]),
        fmt_int(r["listing_pages"]),
        fmt_int(r["writes"]),
        f"{cpu_ms_per_customer(r):.3f}",
        f"{r['peak_rss_mb']:.0f} MB",
        f"{fmt_int(r['succeeded'])}/{fmt_int(r['customers'])}",
    )


def _say_results(
    unthrottled: list[dict[str, Any]], noop: dict[str, Any] | None, at_limits: list[dict[str, Any]]
) -> None:
    say()
    rows = [_row(f"{fmt_int(r['count'])}", r) for r in unthrottled]
    if noop is not None:
        rows.append(_row(f"{fmt_int(noop['count'])} no-op", noop))
    rows += [_row(f"{fmt_int(r['count'])} at limits", r) for r in at_limits]
    print_table(
        (
            "customers",
            "wall s",
            "requests/40 s",
            "requests",
            "listing",
            "writes",
            "CPU ms/cust",
            "peak RSS",
            "ok",
        ),
        rows,
    )
    small, large = (unthrottled[0], unthrottled[-1]) if unthrottled else ({"count": 0}, {"count": 0})
    if large["count"] > small["count"]:
        growth = large["peak_rss_mb"] - small["peak_rss_mb"]
        per_customer = growth * 1024 / (large["count"] - small["count"])
        say(
            f"   peak RSS growth {fmt_int(small['count'])} -> {fmt_int(large['count'])}: {growth:+.0f} MB "
            f"({per_customer:.3f} KB per customer)"
        )
    for r in at_limits:
        say(
            f"   at limits, {fmt_int(r['count'])}: wall {r['wall_seconds']:.0f} s = "
            f"{r['wall_seconds'] / (r['server_requests'] / CEILING_PER_SECOND):.3f} x requests/40"
        )
    for r in [*unthrottled, *([noop] if noop else []), *at_limits]:
        for failure in r.get("failures") or []:
            say(f"   failure ({fmt_int(r['count'])}): {failure}")


def _targets(
    results: Results,
    section: str,
    unthrottled: list[dict[str, Any]],
    noop: dict[str, Any] | None,
    at_limits: list[dict[str, Any]],
) -> None:
    if not unthrottled:
        _limit_targets(results, section, at_limits)
        return
    small, large = unthrottled[0], unthrottled[-1]
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    # Scaled when the sizes are not 10k -> 1M: 0.3 KB a customer, plus the index's page cache.
    scaled = (small["count"], large["count"]) != (10_000, 1_000_000)
    goal = TARGET_GROWTH_MB_PER_MILLION * (large["count"] - small["count"]) / 990_000
    if scaled:
        goal += CACHE_KIB / 1024
    results.target(
        section,
        f"peak RSS growth {fmt_int(small['count'])} -> {fmt_int(large['count'])} customers"
        + (" (scaled, plus the index's page cache)" if scaled else ""),
        f"{growth:+.0f} MB",
        f"<= {goal:.0f} MB",
        growth <= goal,
    )
    by_count = {r["count"]: r for r in unthrottled}
    if 300_000 in by_count and 1_000_000 in by_count:
        flat = by_count[1_000_000]["peak_rss_mb"] - by_count[300_000]["peak_rss_mb"]
        results.target(
            section,
            "peak RSS 300k -> 1M customers",
            f"{flat:+.0f} MB",
            f"<= {TARGET_FLAT_MB:.0f} MB",
            flat <= TARGET_FLAT_MB,
        )
    cpu = cpu_ms_per_customer(large)
    results.target(
        section,
        f"CPU per customer listed, {fmt_int(large['count'])}",
        f"{cpu:.3f} ms",
        f"<= {TARGET_CPU_MS} ms",
        cpu <= TARGET_CPU_MS,
    )
    for r in unthrottled:
        _request_targets(results, section, r, "unthrottled")
    if noop is not None:
        pages = math.ceil(noop["count"] / PAGE_SIZE)
        results.target(
            section,
            f"no-op re-run, {fmt_int(noop['count'])}: listing requests, writes",
            f"{fmt_int(noop['listing_pages'])}, {fmt_int(noop['writes'])}",
            f"{fmt_int(pages)}, 0",
            noop["writes"] == 0 and noop["listing_pages"] <= pages + 1,
        )
    _limit_targets(results, section, at_limits)
    for r in unthrottled:
        results.markdown_rows.append(
            f"| Daily sync from SQL, {fmt_int(r['count'])} customers, unthrottled | "
            f"{r['wall_seconds']:.0f} s, "
            f"{fmt_int(r['server_requests'])} requests, {cpu_ms_per_customer(r):.3f} ms CPU/customer, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB | | |"
        )


def _request_targets(results: Results, section: str, r: dict[str, Any], where: str) -> None:
    goal_requests = _request_goal(r, r["changed"])
    results.target(
        section,
        f"requests, {fmt_int(r['count'])} customers, {where}",
        fmt_int(r["server_requests"]),
        f"<= {fmt_int(goal_requests)}",
        r["server_requests"] <= goal_requests,
    )
    lost = r["succeeded"] + r["skipped"] != r["count"] or r["failed"]
    results.target(
        section, f"nothing lost, {fmt_int(r['count'])}, {where}", f"{r['failed']} failed", "0", not lost
    )


def _limit_targets(results: Results, section: str, at_limits: list[dict[str, Any]]) -> None:
    for r in at_limits:
        _request_targets(results, section, r, f"at limits, by {r['key']}")
        ratio = r["wall_seconds"] / (r["server_requests"] / CEILING_PER_SECOND)
        results.target(
            section,
            f"at limits, {fmt_int(r['count'])} by {r['key']}: wall / (requests / 40)",
            f"{ratio:.3f}",
            f"<= {TARGET_TIME_RATIO}",
            ratio <= TARGET_TIME_RATIO,
        )


def write_rss_picture(runs: Sequence[dict[str, Any]], path: Path) -> bool:
    """Peak RSS against customers (log scale); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, ax = plt.subplots(figsize=(7.5, 3.6))
    counts = [r["count"] for r in runs]
    ax.plot(
        counts, [r["peak_rss_mb"] for r in runs], "o-", color="#3b7dd8", label="peak RSS of the task process"
    )
    ax.set_xscale("log")
    ax.set_xlabel("customers in the account (= SQL rows)", fontsize=8)
    ax.set_ylabel("MB", fontsize=8)
    ax.set_ylim(0, max(r["peak_rss_mb"] for r in runs) * 1.3)
    ax.tick_params(labelsize=8)
    for r in runs:
        ax.annotate(
            f"{r['peak_rss_mb']:.0f}",
            (r["count"], r["peak_rss_mb"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    ax.set_title(
        f"Daily sync (mode='sync', {1 / SYNC_CHANGED_EVERY:.0%} changed), server unthrottled", fontsize=10
    )
    ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
