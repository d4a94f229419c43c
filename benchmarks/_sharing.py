"""Scenarios where the account is shared: another integration sending 20 requests/s on the same
key for the whole run, and two tasks (two provider processes) pushing at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from _common import customer_uuid, expected_custom, server_customers
from _harness import (
    CEILING_PER_SECOND,
    HERE,
    CaseFailed,
    Results,
    Runner,
    compare_with_server,
    fmt_int,
    heading,
    is_other_client,
    nothing_lost,
    panel,
    per_second,
    push,
    requests_summary,
    say,
    say_failures,
    server_log,
    wait_for_files,
)

OTHER_RATE = 20.0
TARGET_SHARED_PER_SECOND = 17.0
TARGET_429_SHARE = 0.03
TARGET_TWO_TASKS_SHARE = 0.90


def _share_429(entries: list[Mapping[str, Any]]) -> tuple[int, int, float]:
    rejected = sum(1 for e in entries if e["status"] == 429)
    return rejected, len(entries), rejected / len(entries) if entries else 0.0


def section_shared_account(runner: Runner, results: Results) -> None:
    section = "shared_account"
    count = runner.settings.scenario_customers
    heading(
        section,
        f"{fmt_int(count)} customers while another integration sends "
        f"{OTHER_RATE:.0f} req/s on the same key (GET /v1/customers/{{uuid}}, 429s not retried)",
    )
    server = runner.server_at_limits(section)
    with server:
        server.seed(server_customers(count))
        stem = runner.path("other-client")
        spec = {
            "url": server.url,
            "rate": OTHER_RATE,
            "customers": count,
            "ready_file": str(stem.with_suffix(".ready")),
            "stop_file": str(stem.with_suffix(".stop")),
        }
        spec_path, out_path = stem.with_suffix(".spec.json"), stem.with_suffix(".out.json")
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        with open(stem.with_suffix(".log"), "w", encoding="utf-8") as log_file:
            other = subprocess.Popen(
                [sys.executable, str(HERE / "_load.py"), str(spec_path), str(out_path)],
                env=runner.base_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_files([stem.with_suffix(".ready")], timeout=60)
            time.sleep(2.0)  # let the other integration reach its steady rate
            say(f"   server: {server.describe()}; other integration running; provider at defaults ...")
            result, log, check = push(runner, server, count)
        finally:
            stem.with_suffix(".stop").touch()
            other.wait(timeout=60)
    if not out_path.exists():
        raise CaseFailed("the other integration's process wrote no figures")
    load = json.loads(out_path.read_text(encoding="utf-8"))
    ours = [e for e in log if not is_other_client(e)]
    start, end = min(e["started"] for e in ours), max(e["started"] for e in ours)
    theirs = [e for e in log if is_other_client(e) and start <= e["started"] <= end]
    our_429, our_total, our_share = _share_429(ours)
    their_429, their_total, their_share = _share_429(theirs)
    cps = per_second(result["succeeded"], result["wall_seconds"])
    say(
        f"   provider: {cps:.2f} customers/s, {our_429}/{our_total} requests answered 429; "
        f"{requests_summary(result)}"
    )
    say(
        f"   other integration during the provider's run: {their_total} requests "
        f"({per_second(their_total, end - start):.1f}/s), {their_429} answered 429; over its whole "
        f"run: {load['statuses']}"
    )
    say_failures("provider", result)
    results.sections[section] = {"provider": result, "other": load, "check": check}
    results.panels.append(
        panel(
            f"shared account: other integration at {OTHER_RATE:.0f} req/s",
            log,
            lambda e: "other integration" if is_other_client(e) else "provider",
        )
    )
    results.target(
        section,
        "shared account: throughput",
        f"{cps:.2f} customers/s",
        f">= {TARGET_SHARED_PER_SECOND:.0f}/s",
        cps >= TARGET_SHARED_PER_SECOND,
    )
    results.target(
        section,
        "shared account: our requests answered 429",
        f"{our_share:.1%} ({our_429}/{our_total})",
        f"<= {TARGET_429_SHARE:.0%}",
        our_share <= TARGET_429_SHARE,
    )
    results.target(
        section,
        "shared account: the other client's requests answered 429",
        f"{their_share:.1%} ({their_429}/{their_total})",
        f"<= {TARGET_429_SHARE:.0%}",
        their_share <= TARGET_429_SHARE,
    )
    nothing_lost(results, section, check)


def _task_of(count: int) -> Any:
    def task(entry: Mapping[str, Any]) -> str:
        segments = entry["path"].split("/")
        if len(segments) > 3 and segments[3].startswith("cus_"):
            try:
                return "task A" if int(segments[3].rsplit("-", 1)[-1], 16) < count else "task B"
            except ValueError:
                pass
        return "other paths"

    return task


def section_two_tasks(runner: Runner, results: Results) -> None:
    section = "two_tasks"
    count = runner.settings.scenario_customers
    heading(section, f"two provider processes at defaults, {fmt_int(count)} customers each, one account")
    server = runner.server_at_limits(section)
    with server:
        server.seed(server_customers(2 * count))
        say(f"   server: {server.describe()} ...")
        env = runner.provider_env(server.url)
        go = runner.path("go")
        pending, ready = [], []
        for start in (0, count):
            flag = runner.path("ready")
            ready.append(flag)
            spec = {
                "source": "uuid",
                "start": start,
                "count": count,
                "operator": {},
                "ready_file": str(flag),
                "go_file": str(go),
            }
            pending.append(runner.start_case("provider", spec, env=env))
        wait_for_files(ready, timeout=600)
        go.touch()
        runs = [task.wait(timeout=900) for task in pending]
        log = server_log(server)
        expected = {customer_uuid(i): expected_custom(i) for i in range(2 * count)}
        merged = {
            "customers": sum(r["customers"] for r in runs),
            "failed_uuids": [u for r in runs for u in r["failed_uuids"]],
        }
        check = compare_with_server(server, merged, expected)
    succeeded = sum(r["succeeded"] for r in runs)
    wall = max(r["wall_seconds"] for r in runs)
    together = per_second(succeeded, wall)
    rejected, total, share = _share_429(log)
    for label, r in zip(("A", "B"), runs, strict=True):
        say(
            f"   task {label}: {per_second(r['succeeded'], r['wall_seconds']):.2f} customers/s in "
            f"{r['wall_seconds']:.1f} s; {requests_summary(r)}"
        )
        say_failures(f"task {label}", r)
    say(f"   together: {together:.2f} customers/s; {rejected}/{total} requests answered 429")
    results.sections[section] = {"runs": runs, "together": together, "check": check}
    results.panels.append(panel("two tasks on one account", log, _task_of(count)))
    floor = TARGET_TWO_TASKS_SHARE * CEILING_PER_SECOND
    results.target(
        section,
        "two tasks: together",
        f"{together:.2f} customers/s ({together / CEILING_PER_SECOND:.0%})",
        f">= {floor:.0f}/s (90 %)",
        together >= floor,
    )
    results.target(
        section,
        "two tasks: requests answered 429",
        f"{share:.1%} ({rejected}/{total})",
        f"<= {TARGET_429_SHARE:.0%}",
        share <= TARGET_429_SHARE,
    )
    nothing_lost(results, section, check)
