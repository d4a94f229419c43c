"""Scenarios where ChartMogul misbehaves: 20 % random 503s or 500s (server trouble, not load),
ChartMogul down (connection refused), customers that always answer 500 (ChartMogul up), and a
slow-loris answer."""

from __future__ import annotations

import socket

from _common import customer_uuid, server_customers
from _harness import (
    CaseTimedOut,
    Results,
    Runner,
    compare_with_server,
    fmt_int,
    heading,
    nothing_lost,
    panel,
    per_second,
    push,
    say,
    say_provider,
)
from _server import status_count

FAULT_SHARE = 0.2
TARGET_FAULTS_PER_SECOND = 24.0
DOWN_TARGET_SECONDS = 60.0
DOWN_KILL_SECONDS = 120.0  # the whole child process, imports included
LORIS_EXTRA = {"timeout": 2, "max_retries": 1, "retry_budget": 5}
TRICKLE_SECONDS = 1.5


def _errors(runner: Runner, results: Results, kind: str) -> None:
    section = f"errors_{kind}"
    count = runner.settings.scenario_customers
    heading(
        section,
        f"{fmt_int(count)} customers, {FAULT_SHARE:.0%} of answers a random {kind} "
        "(the server's fault, not its parallel limit), no latency",
    )
    server = runner.server_at_limits(section, latency=0.0)
    with server:
        server.configure(faults={kind: FAULT_SHARE}, fault_seed=1)
        server.seed(server_customers(count))
        say(f"   server: {server.describe()}, faults {kind}={FAULT_SHARE}; provider at defaults ...")
        result, log, check = push(runner, server, count)
    cps = per_second(result["succeeded"], result["wall_seconds"])
    stats = result["server"]
    say(
        f"   {cps:.2f} customers/s; {result['succeeded']}/{result['customers']} succeeded in "
        f"{result['wall_seconds']:.1f} s; server: {stats['faults']} injected, "
        f"{status_count(stats, 429)} x 429, parallel limit hit {stats['parallel_rejected']} times"
    )
    say_provider(result)
    results.sections[section] = {"provider": result, "customers_per_second": cps, "check": check}
    results.panels.append(panel(f"{FAULT_SHARE:.0%} random {kind}s, no latency", log))
    results.target(
        section,
        f"{FAULT_SHARE:.0%} random {kind}s: throughput",
        f"{cps:.2f} customers/s",
        f">= {TARGET_FAULTS_PER_SECOND:.0f}/s",
        cps >= TARGET_FAULTS_PER_SECOND,
    )
    nothing_lost(results, section, check)


def section_errors_503(runner: Runner, results: Results) -> None:
    _errors(runner, results, "503")


def section_errors_500(runner: Runner, results: Results) -> None:
    _errors(runner, results, "500")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def section_down(runner: Runner, results: Results) -> None:
    section = "down"
    count = runner.settings.down_customers
    url = f"http://127.0.0.1:{_closed_port()}"
    heading(section, f"ChartMogul unreachable (connection refused at {url}), {fmt_int(count)} customers")
    say(f"   provider at defaults; the process is killed after {DOWN_KILL_SECONDS:.0f} s ...")
    try:
        result = runner.run_case(
            "provider",
            {"source": "uuid", "count": count, "operator": {}},
            timeout=DOWN_KILL_SECONDS,
            env=runner.provider_env(url),
        )
    except CaseTimedOut:
        say(f"   the run had not stopped after {DOWN_KILL_SECONDS:.0f} s (imports included): killed")
        results.sections[section] = {"killed": True}
        results.panels.append(
            {"title": "ChartMogul down", "seconds": 0, "series": {}, "note": "still retrying: killed"}
        )
        results.target(
            section,
            "ChartMogul down: run stops",
            f"> {DOWN_KILL_SECONDS:.0f} s (killed)",
            f"<= {DOWN_TARGET_SECONDS:.0f} s",
            False,
        )
        results.target(section, "ChartMogul down: every record reported", "no report", "all", False)
        return
    expected = {customer_uuid(i): {"never": "written"} for i in range(count)}
    check = compare_with_server(None, result, expected)
    wall = result["wall_seconds"]
    say(
        f"   stopped after {wall:.1f} s: {result['customers']} reported, {result['failed']} failed, "
        f"aborted: {result.get('aborted') or '-'}"
    )
    say_provider(result)
    results.sections[section] = {"provider": result, "check": check}
    results.panels.append(
        {
            "title": "ChartMogul down (connection refused)",
            "seconds": 0,
            "series": {},
            "note": f"no server: the run stopped after {wall:.1f} s",
        }
    )
    results.target(
        section,
        f"ChartMogul down: run stops ({fmt_int(count)} customers)",
        f"{wall:.1f} s",
        f"<= {DOWN_TARGET_SECONDS:.0f} s",
        wall <= DOWN_TARGET_SECONDS,
    )
    results.target(
        section,
        "ChartMogul down: every record reported",
        f"{fmt_int(result['customers'])}/{fmt_int(count)} reported, {check['lost']} unaccounted",
        "all",
        check["unreported"] == 0 and check["lost"] == 0,
    )


BROKEN_CUSTOMERS = 30
BROKEN_HEALTHY = 500


def section_broken_customers(runner: Runner, results: Results) -> None:
    """Issue 17's first row: the first 30 customers always answer 500, ChartMogul is otherwise
    up. The run must write the other 500 and fail only the 30 (max_failures=30), at defaults."""
    section = "broken_customers"
    count = BROKEN_CUSTOMERS + BROKEN_HEALTHY
    heading(
        section,
        f"{fmt_int(count)} customers, the first {BROKEN_CUSTOMERS} always answer 500 (ChartMogul up), "
        f"max_failures={BROKEN_CUSTOMERS}",
    )
    server = runner.server_at_limits(section)
    with server:
        server.seed(server_customers(count))
        for i in range(BROKEN_CUSTOMERS):
            server.admin("POST", "fail_customer", {"uuid": customer_uuid(i), "status": 500})
        say(f"   server: {server.describe()}; provider at defaults ...")
        result, log, check = push(runner, server, count, operator={"max_failures": BROKEN_CUSTOMERS})
    wall = result["wall_seconds"]
    say(
        f"   {result['succeeded']}/{result['customers']} succeeded, {result['failed']} failed in "
        f"{wall:.1f} s; aborted: {result.get('aborted') or '-'}"
    )
    say_provider(result)
    results.sections[section] = {"provider": result, "check": check}
    results.panels.append(panel(f"{BROKEN_CUSTOMERS} customers always answer 500", log))
    results.target(
        section,
        f"{BROKEN_CUSTOMERS} broken customers: the rest written, the task succeeds",
        f"{fmt_int(result['succeeded'])} written, {result['failed']} failed, "
        f"{'stopped' if result.get('aborted') else 'not stopped'}",
        f"{BROKEN_HEALTHY} written, {BROKEN_CUSTOMERS} failed",
        result["succeeded"] == BROKEN_HEALTHY
        and result["failed"] == BROKEN_CUSTOMERS
        and not result.get("aborted"),
    )
    nothing_lost(results, section, check)


def section_slow_loris(runner: Runner, results: Results) -> None:
    section = "slow_loris"
    count = runner.settings.loris_customers
    heading(
        section,
        f"{fmt_int(count)} customers; the first answer trickles in one byte every "
        f"{TRICKLE_SECONDS} s; connection timeout {LORIS_EXTRA['timeout']}, max_retries "
        f"{LORIS_EXTRA['max_retries']}, retry_budget {LORIS_EXTRA['retry_budget']}",
    )
    server = runner.server_at_limits(section)
    with server:
        server.configure(trickle_seconds=TRICKLE_SECONDS)
        server.seed(server_customers(count))
        server.admin("POST", "faults", ["trickle"])
        say(f"   server: {server.describe()} ...")
        result, log, check = push(runner, server, count, extra=LORIS_EXTRA)
    trickles = result["server"].get("trickles") or []
    limit = LORIS_EXTRA["timeout"] + 1
    results.sections[section] = {"provider": result, "trickles": trickles, "check": check}
    if not trickles:
        say("   the trickle fault did not fire")
        results.target(section, "slow answer: held", "no trickled request", f"<= {limit} s", None)
        return
    trickle = trickles[0]
    held = trickle["held"]
    how = (
        "the client hung up"
        if trickle["hung_up"]
        else "the client kept the connection open until the whole answer was sent"
    )
    retry = next(
        (
            e["started"] - trickle["started"]
            for e in log
            if e["path"] == trickle["path"] and e["started"] > trickle["started"]
        ),
        None,
    )
    if retry is not None:
        say(f"   the client's next request for that customer arrived {retry:.1f} s after the first")
    say(
        f"   the trickled request ({trickle['path']}) was held {held:.1f} s ({how}, "
        f"{trickle['bytes_sent']}/{trickle['body_bytes']} body bytes); run {result['wall_seconds']:.1f} s, "
        f"{result['succeeded']}/{result['customers']} succeeded"
    )
    say_provider(result)
    results.panels.append(
        panel(
            "slow-loris answer (timeout 2 s)",
            log,
            spans=[(trickle["started"], trickle["ended"], f"trickled answer held {held:.1f} s")],
        )
    )
    results.target(
        section,
        "slow answer: that request ends",
        f"{held:.1f} s ({how})",
        f"<= timeout + 1 = {limit} s",
        held <= limit,
    )
    results.target(
        section,
        "slow answer: every other customer written",
        f"{fmt_int(check['written'])}/{fmt_int(count)} written",
        f">= {fmt_int(count - 1)}",
        check["written"] >= count - 1,
    )
    nothing_lost(results, section, check)
