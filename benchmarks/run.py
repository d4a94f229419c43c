"""Benchmarks of airflow-provider-chartmogul against the project's ChartMogul-compatible server.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/run.py                       # everything (see README.md)
    .venv/bin/python benchmarks/run.py --quick               # a short smoke run
    .venv/bin/python benchmarks/run.py --only errors_503,down

Sections, each selectable with ``--only``:

throughput      alone at ChartMogul's limits (40 req/s, 20 parallel, 150 ms): the official
                client's sequential loop vs the operator at defaults, CPU per customer of both;
errors_503      20 % of answers a random 503 (server trouble, not the parallel limit), no latency;
errors_500      the same with random 500s;
shared_account  another integration sends 20 req/s on the same key for the whole run;
two_tasks       two provider processes pushing on one account at once;
shared_budget   K = 1, 2, 4, 8 provider processes on one account, with and without the budget on Redis;
down            ChartMogul unreachable (connection refused): time until the run stops;
slow_loris      one answer trickles one byte every 1.5 s (timeout 2, 1 retry, budget 5 s);
daily_sync      N customers, N records of which 5 % changed, mode="sync", vs the official
                client's read-then-write loop timed on a sample and extrapolated;
memory          a SQL source of 10k and 200k rows, server without limits: peak RSS growth;
resolution      records by external_id: lookup requests with customer_lookup "auto" / "per_customer".

The server runs in its own process and every measured case in a fresh process of its own
(``_cases.py``), so CPU time and peak RSS are the client's alone. Every provider run's report is
compared with the server's state. The script prints PASS/MISS per target, writes the picture
(``docs/images/benchmark.png``) from the server's request logs, and ends with a Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _budget import section_shared_budget
from _faults import (
    section_broken_customers,
    section_down,
    section_errors_500,
    section_errors_503,
    section_slow_loris,
)
from _harness import CaseFailed, Results, Runner, Settings, fmt_int, say
from _memory import section_memory, section_resolution
from _million import section_million
from _plot import write_picture
from _server import ServerError
from _sharing import section_shared_account, section_two_tasks
from _sync import section_daily_sync
from _throughput import probe_machine, section_throughput

REPO = Path(__file__).resolve().parent.parent
PICTURE = REPO / "docs" / "images" / "benchmark.png"

SECTIONS: dict[str, Callable[[Runner, Results], None]] = {
    "throughput": section_throughput,
    "errors_503": section_errors_503,
    "errors_500": section_errors_500,
    "shared_account": section_shared_account,
    "two_tasks": section_two_tasks,
    "shared_budget": section_shared_budget,
    "down": section_down,
    "broken_customers": section_broken_customers,
    "slow_loris": section_slow_loris,
    "daily_sync": section_daily_sync,
    "memory": section_memory,
    "resolution": section_resolution,
    "million": section_million,
}


def summary(results: Results) -> None:
    changed = sorted(
        {
            section["provider"]["fingerprint"]
            for section in results.sections.values()
            if isinstance(section.get("provider"), dict)
            and section["provider"].get("fingerprint") not in (None, results.machine.get("fingerprint"))
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
    for target in results.targets:
        say(f"   [{target.mark}] {target.name}: {target.figure} (target {target.goal})")
    for error in results.errors:
        say(f"   [ERROR] {error.splitlines()[0]}")
    for warning in results.warnings:
        say(f"   [WARN ] {warning}")


def markdown(results: Results, settings: Settings, wall: float) -> str:
    m = results.machine
    lines = [
        "### Benchmarks",
        "",
        f"`benchmarks/run.py`{' --quick' if settings.quick else ''}, {m.get('date', '?')}: "
        f"{m.get('cores', '?')} cores ({m.get('cpu', '?')}), {m.get('system', '?')}, "
        f"Python {m.get('python', '?')}, Airflow {m.get('airflow', '?')}, airflow-provider-chartmogul "
        f"{m.get('provider', '?')}, chartmogul {m.get('chartmogul', '?')}; provider source sha256 "
        f"{m.get('fingerprint', '?')} ({m.get('git', '?')}). The project's ChartMogul-compatible "
        f"server runs in a separate process; each measured case runs in a fresh process; whole run "
        f"{wall / 60:.1f} min.",
        "",
        "| Measurement | Result | Target | |",
        "|---|---|---|---|",
        *results.markdown_rows,
    ]
    for target in results.targets:
        verdict = {True: "met", False: "**missed**", None: "n/a"}[target.met]
        lines.append(f"| {target.name} | {target.figure} | {target.goal} | {verdict} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    add = parser.add_argument
    add("--only", action="append", default=None, help=f"sections to run: {', '.join(SECTIONS)}")
    add("--quick", action="store_true", help="a short smoke run (small sizes everywhere)")
    add("--customers", type=int, default=None, help="throughput: customers pushed (600)")
    add(
        "--scenario-customers",
        type=int,
        default=None,
        help="errors_503/500, shared_account, each of two_tasks, slow_loris: customers (300)",
    )
    add("--down-customers", type=int, default=None, help="down: customers (2000)")
    add("--sync-customers", type=int, default=None, help="daily_sync: customers and records (100000)")
    add("--sync-sample", type=int, default=None, help="daily_sync: customers the official loop syncs (200)")
    add("--memory-rows", default=None, help="memory: the two SQL source sizes, SMALL,LARGE (10000,200000)")
    add("--account", type=int, default=None, help="resolution: customers in the account (12000)")
    add("--resolve", type=int, default=None, help="resolution: records by external_id (10000)")
    add("--per-customer", type=int, default=None, help="resolution: per_customer records (300)")
    add("--picture", default=str(PICTURE), help="where the PNG goes; 'none' for no picture")
    add("--keep", action="store_true", help="keep the working directory (logs, specs, results)")
    add("--check", action="store_true", help="exit 1 when a target is missed")
    add(
        "--no-bytecode-cache",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX as they are in the environment",
    )
    args = parser.parse_args(argv)
    quick = args.quick

    def _size(value: int | None, small: int, full: int) -> int:
        return value if value is not None else small if quick else full

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
    scenario = _size(args.scenario_customers, 60, 500)
    settings = Settings(
        sections=tuple(s for s in SECTIONS if s in sections),
        quick=quick,
        keep=args.keep,
        check=args.check,
        bytecode_cache=not args.no_bytecode_cache,
        customers=_size(args.customers, 100, 600),
        scenario_customers=scenario,
        down_customers=_size(args.down_customers, 300, 2_000),
        loris_customers=scenario,
        sync_customers=_size(args.sync_customers, 5_000, 100_000),
        sync_sample=_size(args.sync_sample, 40, 200),
        memory_rows=memory_rows,
        account=_size(args.account, 2_400, 12_000),
        resolve_records=_size(args.resolve, 2_000, 10_000),
        per_customer_records=_size(args.per_customer, 60, 300),
        picture=None if args.picture == "none" else Path(args.picture),
    )
    sizes = (
        settings.customers,
        settings.scenario_customers,
        settings.down_customers,
        settings.sync_customers,
        settings.sync_sample,
        *settings.memory_rows,
        settings.resolve_records,
        settings.per_customer_records,
    )
    if min(sizes) < 1:
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
        for name in settings.sections:
            try:
                SECTIONS[name](runner, results)
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
    summary(results)
    if settings.picture is not None and results.panels:
        m = results.machine
        subtitle = f"provider {m.get('provider', '?')} ({m.get('git', '?')}), {m.get('cores', '?')} cores" + (
            ", --quick sizes" if settings.quick else ""
        )
        if write_picture(results.panels, settings.picture, subtitle):
            say(f"\npicture: {settings.picture} ({len(results.panels)} panels)")
        else:
            results.warnings.append("matplotlib is not installed: no picture (make install)")
            say("\nno picture: matplotlib is not installed (it is in the dev extra: make install)")
    say()
    say("== Markdown (for the README)")
    say()
    say(markdown(results, settings, wall))
    say()
    say(f"whole run: {wall:.0f} s ({wall / 60:.1f} min); {fmt_int(len(results.targets))} targets")
    if results.errors:
        return 2
    if settings.check and any(t.met is False for t in results.targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
