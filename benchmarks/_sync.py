"""The daily sync users run: an account of N customers, N records of which 5 % changed,
``mode="sync"`` at ChartMogul's limits, vs the official client's read-then-write loop timed on a
sample and extrapolated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from _common import SYNC_CHANGED_EVERY, synced_customers
from _harness import (
    Results,
    Runner,
    fmt_int,
    heading,
    nothing_lost,
    panel,
    push,
    say,
    say_failures,
    say_provider,
)
from _server import status_count, write_seed_file

TARGET_SECONDS = 180.0
TARGET_REQUESTS = 5_600
TARGET_CUSTOMERS = 100_000


def _kind(entry: Mapping[str, Any]) -> str:
    if entry["method"] == "GET" and entry["path"].rstrip("/") == "/v1/customers":
        return "listing pages"
    if entry["method"] in ("POST", "PUT", "DELETE"):
        return "writes"
    return "other reads"


def section_daily_sync(runner: Runner, results: Results) -> None:
    section = "daily_sync"
    count, sample = runner.settings.sync_customers, runner.settings.sync_sample
    changed = sum(1 for i in range(count) if i % SYNC_CHANGED_EVERY == 0)
    heading(
        section,
        f"an account of {fmt_int(count)} customers, {fmt_int(count)} records of which "
        f"{fmt_int(changed)} ({1 / SYNC_CHANGED_EVERY:.0%}) changed, mode='sync'",
    )

    small = write_seed_file(runner.path("sync-sample-seed.json"), synced_customers(sample))
    with runner.server_at_limits("sync-official", seed_file=small) as server:
        say(
            f"   (a) official client: Attributes.retrieve(...) then CustomAttributes.add(...) for what "
            f"differs, on a sample of {fmt_int(sample)} customers ..."
        )
        official = runner.run_case("official_sync", {"url": server.url, "count": sample}, timeout=1800)
        official["server"] = server.stats()
    per_customer = official["wall_seconds"] / max(sample, 1)
    official_seconds = per_customer * count
    official_requests = (official["reads"] + official["writes"]) / max(sample, 1) * count

    seed = write_seed_file(runner.path("sync-seed.json"), synced_customers(count))
    with runner.server_at_limits("sync", seed_file=seed) as server:
        say(f"   (b) provider, mode='sync', defaults; server: {server.describe()} ...")
        result, log, check = push(
            runner, server, count, operator={"mode": "sync"}, timeout=max(1800.0, count * 0.05)
        )
    stats = result["server"]
    wall, total = result["wall_seconds"], stats["total"]
    kinds: dict[str, list[float]] = {}
    start = min((e["started"] for e in log), default=0.0)
    for entry in log:
        kinds.setdefault(_kind(entry), []).append(entry["started"] - start)
    pages, writes = kinds.get("listing pages", []), kinds.get("writes", [])
    say(
        f"   (a) {per_customer * 1000:.0f} ms per customer ({official['reads']} reads, "
        f"{official['writes']} writes for {sample}): {fmt_int(count)} customers would take "
        f"{official_seconds / 3600:.1f} h and {fmt_int(round(official_requests))} requests"
    )
    say_failures("official", official)
    say(
        f"   (b) {wall:.1f} s, {fmt_int(total)} requests ({fmt_int(len(pages))} listing pages, "
        f"{fmt_int(len(writes))} writes), {status_count(stats, 429)} x 429, "
        f"{status_count(stats, 503)} x 503; "
        f"{result['succeeded']}/{result['customers']} succeeded"
    )
    if pages and writes:
        say(
            f"   (b) listing pages from t = {min(pages):.1f} to {max(pages):.1f} s, writes from "
            f"t = {min(writes):.1f} to {max(writes):.1f} s (server time)"
        )
    say_provider(result)
    results.sections[section] = {
        "customers": count,
        "provider": result,
        "official": official,
        "official_seconds": official_seconds,
        "official_requests": official_requests,
        "check": check,
    }
    results.panels.append(
        panel(f"daily sync: {fmt_int(count)} customers, {1 / SYNC_CHANGED_EVERY:.0%} changed", log, _kind)
    )
    scale = count / TARGET_CUSTOMERS
    sizes = "" if count == TARGET_CUSTOMERS else f" (scaled to {fmt_int(count)} customers)"
    seconds_goal, requests_goal = TARGET_SECONDS * scale, round(TARGET_REQUESTS * scale)
    results.target(
        section,
        f"daily sync: wall time{sizes}",
        f"{wall:.0f} s (official loop, extrapolated: {official_seconds / 3600:.1f} h)",
        f"<= {seconds_goal:.0f} s",
        wall <= seconds_goal,
    )
    results.target(
        section,
        f"daily sync: requests{sizes}",
        fmt_int(total),
        f"<= {fmt_int(requests_goal)}",
        total <= requests_goal,
    )
    nothing_lost(results, section, check)
    results.markdown_rows.append(
        f"| Daily sync, official client's read-then-write loop ({fmt_int(sample)} timed, extrapolated "
        f"to {fmt_int(count)}) | {official_seconds / 3600:.1f} h, {fmt_int(round(official_requests))} "
        "requests | | |"
    )
