"""The account-wide budget on Redis: K tasks in separate processes on one account, each scenario
side by side with and without the shared budget; a worker killed mid-push; one task alone."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import customer_uuid, expected_custom, server_customers
from _harness import (
    CEILING_PER_SECOND,
    MAX_PARALLEL,
    CaseFailed,
    Results,
    Runner,
    compare_with_server,
    cpu_ms_per_customer,
    fmt_int,
    heading,
    is_pushback,
    nothing_lost,
    panel,
    print_table,
    say,
    server_log,
    wait_for_files,
)

BUDGET_CONN = "budget_redis"
SLOW_LATENCY = 0.6
TARGET_TOGETHER = 0.95
TARGET_429 = 0.005
TARGET_FAIR = 0.7
TARGET_SLOW = 0.85
TARGET_DEFAULT_429 = 0.05
TARGET_DEFAULT_TOGETHER = 0.85
TARGET_RECOVERY_SECONDS = 10.0
TARGET_CPU = 1.10
# One task alone runs this many times with and without the budget, alternately, so the CPU ratio
# compares neighbours in time on a machine shared with other work (the median of each is quoted).
ALONE_REPEATS = 3
# CHARTMOGUL_BENCH_BUDGET="K=1,K=8 default": only the scenarios of these labels, or of a label in
# one mode, "default" (no budget) or "shared" (all when unset).
ONLY_ENV = "CHARTMOGUL_BENCH_BUDGET"
PICTURE_NAME = "shared-budget.png"


class Redis:
    """A throw-away ``redis-server`` on a free loopback port, no persistence."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        root.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(root)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._cli("PING").startswith("PONG"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise CaseFailed("redis-server did not start")
            time.sleep(0.05)

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return done.stdout.strip()

    def flush(self) -> None:
        self._cli("FLUSHALL")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@dataclass
class Scenario:
    label: str
    tasks: int
    customers: int  # each
    latency: float
    shared: bool
    kill_after: float | None = None  # seconds after the go: SIGKILL the first task


def _task_index(entry: Mapping[str, Any], count: int) -> int | None:
    segments = entry["path"].split("/")
    if len(segments) > 3 and segments[3].startswith("cus_"):
        try:
            return int(segments[3].rsplit("-", 1)[-1], 16) // count
        except ValueError:
            return None
    return None


def _run(runner: Runner, redis: Redis | None, scenario: Scenario) -> dict[str, Any]:
    """Run one scenario; its figures (from the server's log) and panel."""
    k, count = scenario.tasks, scenario.customers
    server = runner.server_at_limits(f"budget-{scenario.label}", latency=scenario.latency)
    with server:
        server.seed(server_customers(k * count))
        extra: dict[str, Any] = {}
        env_extra: dict[str, str] = {}
        if scenario.shared:
            assert redis is not None
            redis.flush()
            extra["shared_budget_conn_id"] = BUDGET_CONN
            env_extra[f"AIRFLOW_CONN_{BUDGET_CONN.upper()}"] = json.dumps(
                {"conn_type": "redis", "host": "127.0.0.1", "port": redis.port}
            )
        env = runner.provider_env(server.url, extra, **env_extra)
        go = runner.path("go")
        pending, ready = [], []
        for index in range(k):
            flag = runner.path("ready")
            ready.append(flag)
            spec = {
                "source": "uuid",
                "start": index * count,
                "count": count,
                "operator": {},
                "ready_file": str(flag),
                "go_file": str(go),
            }
            pending.append(runner.start_case("provider", spec, env=env))
        wait_for_files(ready, timeout=900)
        go.touch()
        killed_at = None
        if scenario.kill_after is not None:
            time.sleep(scenario.kill_after)
            pending[0].process.kill()
            pending[0].process.wait()
            killed_at = time.monotonic()
        runs: list[dict[str, Any] | None] = [None] if killed_at is not None else []
        for task in pending[len(runs) :]:
            runs.append(task.wait(timeout=1800))
        log = server_log(server)
        kept = range(1 if killed_at is not None else 0, k)
        expected = {
            customer_uuid(i): expected_custom(i) for t in kept for i in range(t * count, (t + 1) * count)
        }
        merged = {
            "customers": sum(r["customers"] for r in runs if r is not None),
            "failed_uuids": [u for r in runs if r is not None for u in r["failed_uuids"]],
        }
        check = compare_with_server(server, merged, expected)
    return _figures(scenario, log, runs, check, killed_at)


def _figures(
    scenario: Scenario,
    log: list[dict[str, Any]],
    runs: Sequence[dict[str, Any] | None],
    check: dict[str, int],
    killed_at: float | None,
) -> dict[str, Any]:
    """The figures of one scenario. The server logs ``time.monotonic()``, the same clock as ours."""
    count = scenario.customers
    by_task: dict[int, list[dict[str, Any]]] = {}
    for entry in log:
        index = _task_index(entry, count)
        if index is not None:
            by_task.setdefault(index, []).append(entry)
    survivors = [i for i in range(scenario.tasks) if killed_at is None or i != 0]
    # While every (surviving) task ran: from the last first request to the first last one.
    start = max(min(e["started"] for e in by_task[i]) for i in survivors)
    end = min(max(e["started"] for e in by_task[i]) for i in survivors)
    if killed_at is not None:
        start = min(e["started"] for e in log)
    span = max(end - start, 1e-9)
    answered = {
        i: sum(1 for e in by_task.get(i, []) if not is_pushback(e) and start <= e["started"] <= end)
        for i in range(scenario.tasks)
    }
    together = sum(answered.values()) / span
    total = len(log)
    rejected = sum(1 for e in log if e["status"] == 429)
    crowded = sum(1 for e in log if e["status"] == 503)
    shares = [answered[i] for i in survivors]
    fairness = min(shares) / max(shares) if max(shares) else 0.0
    figures: dict[str, Any] = {
        "together": together,
        "share_429": rejected / total if total else 0.0,
        "rejected": rejected,
        "crowded": crowded,
        "total": total,
        "fairness": fairness,
        "per_task": [round(answered[i] / span, 2) for i in range(scenario.tasks)],
        "check": check,
        "cpu_ms": [cpu_ms_per_customer(r) for r in runs if r is not None],
    }
    spans: list[tuple[float, float, str]] = []
    if killed_at is not None:
        spans.append((killed_at, killed_at + 0.3, "SIGKILL"))
        figures["recovery_seconds"] = _recovery(log, by_task, survivors, killed_at)
    label = lambda e: f"task {(_task_index(e, count) or 0) + 1}"  # noqa: E731
    figures["panel"] = panel(
        f"{scenario.label}: {scenario.tasks} tasks, {scenario.latency * 1000:.0f} ms, "
        f"{'shared budget' if scenario.shared else 'default'}",
        log,
        label,
        spans=spans,
        note=f"{together:.1f}/s together, {rejected} x 429, {crowded} x 503",
    )
    return figures


def _recovery(
    log: list[dict[str, Any]], by_task: dict[int, list[dict[str, Any]]], survivors: list[int], kill: float
) -> float:
    """Seconds from the kill until the survivors together are answered at >= 90 % of 39/s over a
    one-second window (or, if they never were, until they finished)."""
    times = sorted(
        e["started"]
        for i in survivors
        for e in by_task.get(i, [])
        if not is_pushback(e) and e["started"] >= kill
    )
    first = 0
    for last, moment in enumerate(times):
        while times[first] <= moment - 1.0:
            first += 1
        if last - first + 1 >= 0.9 * 39:
            return max(0.0, moment - kill - 1.0)
    return times[-1] - kill if times else float("inf")


def section_shared_budget(runner: Runner, results: Results) -> None:
    section = "shared_budget"
    quick = runner.settings.quick
    heading(
        section,
        f"K tasks in separate processes on one account ({CEILING_PER_SECOND:.0f}/s, {MAX_PARALLEL} "
        "connections), each with and without the account-wide budget on Redis",
    )
    if shutil.which("redis-server") is None:
        results.warnings.append(f"{section}: no redis-server on this machine (apt-get install redis-server)")
        say("   skipped: no redis-server")
        return
    sizes = {1: 100, 2: 60, 4: 60, 8: 40} if quick else {1: 500, 2: 150, 4: 300, 8: 200}
    scenarios = []
    for repeat in range(1 if quick else ALONE_REPEATS):
        for shared in (False, True):
            scenarios.append(
                Scenario("K=1" if repeat == 0 else f"K=1 #{repeat + 1}", 1, sizes[1], 0.15, shared)
            )
    for k in (2, 4, 8):
        for shared in (False, True):
            scenarios.append(Scenario(f"K={k}", k, sizes[k], 0.15, shared))
    for shared in (False, True):
        scenarios.append(Scenario("K=8 slow", 8, 40 if quick else 120, SLOW_LATENCY, shared))
    scenarios.append(Scenario("K=4 kill", 4, 150 if quick else 400, 0.15, True, kill_after=8.0))
    only = [label.strip() for label in os.environ.get(ONLY_ENV, "").split(",") if label.strip()]
    if only:
        scenarios = [
            s
            for s in scenarios
            if s.label.split(" #")[0] in only
            or f"{s.label.split(' #')[0]} {'shared' if s.shared else 'default'}" in only
        ]
    redis = Redis(runner.workdir / "redis")
    figures: dict[str, dict[str, Any]] = {}
    try:
        for scenario in scenarios:
            key = f"{scenario.label} {'shared' if scenario.shared else 'default'}"
            say(f"   {key}: {scenario.tasks} x {fmt_int(scenario.customers)} customers ...")
            figures[key] = _run(runner, redis, scenario)
    finally:
        redis.stop()
    rows = []
    for key, f in figures.items():
        rows.append(
            (
                key,
                f"{f['together']:.1f}/s",
                f"{f['share_429']:.1%} ({f['rejected']}/{f['total']})",
                str(f["crowded"]),
                f"{f['fairness']:.2f}",
                " ".join(f"{x:.1f}" for x in f["per_task"]),
                f"{sum(f['cpu_ms']) / max(len(f['cpu_ms']), 1):.2f}",
            )
        )
    print_table(
        ("scenario", "together", "429", "503", "min/max", "answered/s per task", "CPU ms/customer"), rows
    )
    alone = _alone_cpu(figures)
    if alone is not None:
        (cpu, runs), (cpu_shared, runs_shared) = alone
        say(
            f"   one task alone, CPU per customer (median of {len(runs)} runs each, alternating): "
            f"{cpu:.2f} ms without the budget ({' '.join(f'{x:.2f}' for x in runs)}), "
            f"{cpu_shared:.2f} ms with it ({' '.join(f'{x:.2f}' for x in runs_shared)}): "
            f"{cpu_shared / cpu - 1:+.1%}"
        )
    results.sections[section] = {k: {x: y for x, y in f.items() if x != "panel"} for k, f in figures.items()}
    _targets(results, section, figures)
    panels = [f["panel"] for key, f in figures.items() if " #" not in key]
    for key in ("K=8 default", "K=8 shared"):
        if key in figures:
            results.panels.append(figures[key]["panel"])
    picture = runner.settings.picture
    if picture is not None and not os.environ.get(ONLY_ENV):
        from _plot import write_picture

        path = picture.parent / PICTURE_NAME
        if write_picture(panels, path, "answered per second, stacked by task (server time)"):
            say(f"   picture: {path}")


def _alone_cpu(
    figures: dict[str, dict[str, Any]],
) -> tuple[tuple[float, list[float]], tuple[float, list[float]]] | None:
    """CPU ms per customer of one task alone, without and with the budget: the median over the
    repeats, and each run's."""
    found = []
    for mode in ("default", "shared"):
        runs = [f["cpu_ms"][0] for key, f in figures.items() if key.startswith("K=1") and key.endswith(mode)]
        if not runs:
            return None
        found.append((statistics.median(runs), runs))
    return found[0], found[1]


def _targets(results: Results, section: str, figures: dict[str, dict[str, Any]]) -> None:
    ceiling = CEILING_PER_SECOND
    for k in (2, 4, 8):
        if f"K={k} shared" not in figures:
            continue
        f = figures[f"K={k} shared"]
        results.target(
            section,
            f"K={k} shared: together",
            f"{f['together']:.1f}/s ({f['together'] / ceiling:.0%})",
            f">= {TARGET_TOGETHER:.0%} of {ceiling:.0f}/s",
            f["together"] >= TARGET_TOGETHER * ceiling,
        )
        results.target(
            section,
            f"K={k} shared: 429s and 503s",
            f"{f['share_429']:.2%} 429, {f['crowded']} x 503",
            f"<= {TARGET_429:.1%} 429, 0 x 503",
            f["share_429"] <= TARGET_429 and f["crowded"] == 0,
        )
        results.target(
            section,
            f"K={k} shared: fairness (min/max per task)",
            f"{f['fairness']:.2f}",
            f">= {TARGET_FAIR}",
            f["fairness"] >= TARGET_FAIR,
        )
    for key, f in figures.items():
        nothing_lost(results, f"{section} {key}", f["check"])
    if "K=8 slow shared" in figures:
        _slow_target(results, section, figures["K=8 slow shared"])
    if "K=8 default" in figures:
        _default_target(results, section, figures["K=8 default"])
    if "K=4 kill shared" in figures:
        kill = figures["K=4 kill shared"]
        results.target(
            section,
            "a worker SIGKILLed: the others back at full speed",
            f"within {kill['recovery_seconds']:.1f} s",
            f"<= {TARGET_RECOVERY_SECONDS:.0f} s",
            kill["recovery_seconds"] <= TARGET_RECOVERY_SECONDS,
        )
    if "K=1 default" in figures and "K=1 shared" in figures:
        _alone_targets(results, section, figures)


def _slow_target(results: Results, section: str, slow: dict[str, Any]) -> None:
    slow_ceiling = MAX_PARALLEL / SLOW_LATENCY
    results.target(
        section,
        f"K=8 at {SLOW_LATENCY * 1000:.0f} ms shared: together, 503s",
        f"{slow['together']:.1f}/s ({slow['together'] / slow_ceiling:.0%} of {slow_ceiling:.0f}/s), "
        f"{slow['crowded']} x 503",
        f">= {TARGET_SLOW:.0%}, 0 x 503",
        slow["together"] >= TARGET_SLOW * slow_ceiling and slow["crowded"] == 0,
    )


def _default_target(results: Results, section: str, default: dict[str, Any]) -> None:
    ceiling = CEILING_PER_SECOND
    results.target(
        section,
        "K=8 default: 429s, together",
        f"{default['share_429']:.1%} 429, {default['together']:.1f}/s ({default['together'] / ceiling:.0%})",
        f"<= {TARGET_DEFAULT_429:.0%}, >= {TARGET_DEFAULT_TOGETHER:.0%}",
        default["share_429"] <= TARGET_DEFAULT_429
        and default["together"] >= TARGET_DEFAULT_TOGETHER * ceiling,
    )


def _alone_targets(results: Results, section: str, figures: dict[str, dict[str, Any]]) -> None:
    ceiling = CEILING_PER_SECOND
    alone, alone_shared = figures["K=1 default"], figures["K=1 shared"]
    for key, f in (("default", alone), ("shared", alone_shared)):
        results.target(
            section,
            f"one task alone, {key}: rate, 429s",
            f"{f['together']:.1f}/s ({f['together'] / ceiling:.0%}), {f['rejected']} x 429",
            f">= {TARGET_TOGETHER:.0%}, 0 x 429",
            f["together"] >= TARGET_TOGETHER * ceiling and f["rejected"] == 0,
        )
    cpu_figures = _alone_cpu(figures)
    assert cpu_figures is not None
    (cpu, runs), (cpu_shared, _) = cpu_figures
    results.target(
        section,
        "one task alone: CPU per customer with the budget",
        f"{cpu_shared:.2f} ms vs {cpu:.2f} ms ({cpu_shared / cpu - 1:+.0%}, medians of {len(runs)})",
        f"<= +{TARGET_CPU - 1:.0%}",
        cpu_shared <= TARGET_CPU * cpu,
    )
