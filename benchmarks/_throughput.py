"""The machine probe and the throughput case: alone on an account at ChartMogul's limits, the
official client's sequential loop vs the operator at default settings, in the same run."""

from __future__ import annotations

import datetime as dt
import os
import platform

from _common import ATTRIBUTES_PER_CUSTOMER, server_customers
from _harness import (
    CEILING_PER_SECOND,
    Results,
    Runner,
    cpu_model,
    cpu_ms_per_customer,
    fmt_int,
    git_state,
    heading,
    nothing_lost,
    panel,
    per_second,
    print_table,
    push,
    say,
    say_failures,
    timeline,
)
from _server import status_count

TARGET_SHARE_OF_CEILING = 0.95
TARGET_SPEEDUP = 5.8


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


def section_throughput(runner: Runner, results: Results) -> None:
    count = runner.settings.customers
    server = runner.server_at_limits(
        "throughput",
        record_requests=True,  # about 2 log entries per customer: the timeline below reads them
    )
    heading("throughput", f"{fmt_int(count)} customers, {ATTRIBUTES_PER_CUSTOMER} custom attributes each")
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
        ours, log, check = push(runner, server, count, timeout=max(900.0, count * 1.0))
        ours["timeline"] = timeline(log)
    results.panels.append(panel(f"alone at the limits: {fmt_int(count)} customers", log))

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
                f"{cpu_ms_per_customer(result):.2f}",
                f"{result['peak_rss_mb']:.0f} MB",
                f"{result['wall_seconds']:.1f}",
                f"{result['succeeded']}/{result['customers']}",
            )
        )
    say()
    print_table(
        ("", "customers/s", "of 40/s", "429", "503", "CPU ms/customer", "peak RSS", "wall s", "succeeded"),
        rows,
    )
    ratio = ours["customers_per_second"] / official["customers_per_second"]
    results.sections["throughput"] = {
        "customers": count,
        "official": official,
        "provider": ours,
        "ratio": ratio,
    }
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
    say("   (b) requests admitted in each second: " + " ".join(map(str, line["admitted_per_second"])))
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
    say_failures("official", official)
    say_failures("provider", ours)

    cps = ours["customers_per_second"]
    floor = TARGET_SHARE_OF_CEILING * CEILING_PER_SECOND
    section = "throughput"
    results.target(
        section,
        "alone at the limits: throughput",
        f"{cps:.2f} customers/s ({100 * cps / CEILING_PER_SECOND:.1f} % of 40/s)",
        f">= {floor:.0f}/s (95 %)",
        cps >= floor,
    )
    pushback = status_count(ours["server"], 429), status_count(ours["server"], 503)
    results.target(
        section,
        "alone at the limits: 429 / 503 answers",
        f"{pushback[0]} / {pushback[1]}",
        "0 / 0",
        sum(pushback) == 0,
    )
    results.target(
        section,
        "speed-up over the official client loop",
        f"{ratio:.2f}x ({cps:.2f} vs {official['customers_per_second']:.2f} customers/s)",
        f">= {TARGET_SPEEDUP}x",
        ratio >= TARGET_SPEEDUP,
    )
    ours_cpu, theirs_cpu = cpu_ms_per_customer(ours), cpu_ms_per_customer(official)
    results.target(
        section,
        "client CPU per customer vs the official client (same run)",
        f"{ours_cpu:.2f} ms vs {theirs_cpu:.2f} ms",
        "no higher",
        ours_cpu <= theirs_cpu,
    )
    nothing_lost(results, section, check)
    results.markdown_rows.append(
        f"| Alone at the limits, {fmt_int(count)} customers: official client loop | "
        f"{official['customers_per_second']:.1f} customers/s, {theirs_cpu:.2f} ms CPU/customer | | |"
    )
