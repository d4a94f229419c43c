"""Nothing is lost, and that is proven: 1,000 customers pushed through 20 % injected faults.

One run per fault kind of the project's server, each kind at 20 % of requests, plus one run with
every kind mixed (2 % each, 20 % in all). Every run pushes 1,000 valid customers and 50 invalid
records interleaved with them, through ``AddCustomAttributesOperator`` over real HTTP, then checks:

* every input record ends in exactly one of: written, failed with a reason, rejected as invalid
  with a reason; and the counts add up to the input;
* the server's final state is exactly the customers reported written, with their values, and
  each of them was written by exactly one applied request (a faulted request changes nothing);
* transient faults are absorbed by retries: at least 99 % of the valid customers are written;
* every customer's retries stay within ``max_retries`` and ``retry_budget`` (from the server's
  request log), and the run ends within a bound computed from the settings.

The runs are independent (one server process and one connection each) and run four at a time:
most of a run's time is spent in retry back-off, which overlaps well.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.testing.process import ServerProcess
from airflow_provider_chartmogul.testing.server import FAULT_KINDS
from tests.conftest import API_KEY
from tests.reliability._support import (
    CUSTOM_PATH,
    TYPED_DEFINITIONS,
    run_operator,
    stored_values,
    typed_record,
    uuid_of_custom_path,
)

VALID = 1000
INVALID_EVERY = 20  # one invalid record before every 20th valid one: 50 in all
FAULT_RATE = 0.20
SLOW_SECONDS = 1.5  # longer than the client timeout: a "slow" answer is a client-side timeout
SETTINGS: dict[str, float] = {
    "timeout": 1,
    "max_retries": 8,
    "retry_budget": 8,
    "max_requests_per_second": 1000,
    "max_connections": 20,
}
RUNS: dict[str, dict[str, float]] = {kind: {kind: FAULT_RATE} for kind in FAULT_KINDS}
RUNS["mixed"] = {kind: FAULT_RATE / len(FAULT_KINDS) for kind in FAULT_KINDS}
PARALLEL_RUNS = 4

# ---- the time bounds, from the settings ----------------------------------------------------------
# One call of the hook retries only while ``time since its start + next back-off < retry_budget``,
# so its last attempt starts before retry_budget has passed, and an attempt lasts at most the
# request ``timeout`` (loopback: connecting is immediate) plus the wait for a rate-limiter slot.
# That wait is at most one slot per worker at the slowest rate the limiter falls to after 429/503.
WORKERS = int(SETTINGS["max_connections"])
SLOWEST_RATE = RateLimiter(SETTINGS["max_requests_per_second"]).control.min_rate
LIMITER_WAIT = WORKERS / SLOWEST_RATE
SCHEDULING_SLACK = 0.5  # thread scheduling on a busy 2-core machine
# Worst case for one customer, first attempt to the end of the last one:
PER_CUSTOMER = SETTINGS["retry_budget"] + SETTINGS["timeout"] + LIMITER_WAIT + SCHEDULING_SLACK
# The engine keeps all WORKERS busy while records wait, so the last customer starts at the latest
# after (VALID - 1) / WORKERS customers' worst cases, and then takes one worst case itself:
RUN_BOUND = (math.ceil(VALID / WORKERS) + 1) * PER_CUSTOMER


def _uuid(i: int) -> str:
    return f"cus_rel_{i:04d}"


def _bad_record(j: int) -> Any:
    """Invalid record number ``j``: one of ten kinds of mistakes, for customer ``cus_bad_{j}``."""
    uuid = f"cus_bad_{j:02d}"
    good = typed_record(uuid, j)["custom"]
    variants: list[Any] = [
        {"customer_uuid": uuid, "custom": [*good, {"type": "String", "key": "note", "value": "x" * 300}]},
        {"customer_uuid": uuid, "custom": [{"type": "Integer", "key": "seats", "value": "many"}]},
        {"customer_uuid": uuid, "custom": [{"type": "Boolean", "key": "pro", "value": "yes"}]},
        {"customer_uuid": uuid, "custom": [{"type": "Timestamp", "key": "since", "value": "2022-13-45"}]},
        {"customer_uuid": uuid, "custom": [{"type": "Decimal", "key": "mrr", "value": "cheap"}]},
        {"customer_uuid": uuid, "custom": [{"type": "String", "key": "bad key", "value": "x"}]},
        {"customer_uuid": uuid, "custom": [good[0], good[0]]},
        {"customer_uuid": uuid, "custom": [{"type": "String", "key": "plan"}]},
        f"customer_uuid={uuid}",
        {"customer_uuid": "", "custom": good},
    ]
    return variants[j % len(variants)]


@dataclass
class Input:
    records: list[Any] = field(default_factory=list)
    valid: dict[str, int] = field(default_factory=dict)  # uuid -> i
    invalid_positions: set[int] = field(default_factory=set)
    bad_uuids: set[str] = field(default_factory=set)


def build_input() -> Input:
    data = Input()
    for i in range(VALID):
        if i % INVALID_EVERY == 0:
            j = i // INVALID_EVERY
            data.invalid_positions.add(len(data.records))
            data.records.append(_bad_record(j))
            data.bad_uuids.add(f"cus_bad_{j:02d}")
        data.valid[_uuid(i)] = i
        data.records.append(typed_record(_uuid(i), i))
    return data


@dataclass
class FaultRun:
    kind: str
    input: Input
    report: dict[str, Any] | None = None
    elapsed: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    crash: BaseException | None = None


def _conn_id(kind: str) -> str:
    return f"chartmogul_faults_{kind}"


def _push(run: FaultRun, server: ServerProcess) -> FaultRun:
    try:
        started = time.monotonic()
        run.report, _ = run_operator(
            task_id=f"push_{run.kind}",
            customers=run.input.records,
            chartmogul_conn_id=_conn_id(run.kind),
            max_failures=len(run.input.records),
        )
        run.elapsed = time.monotonic() - started
        # "slow" answers are logged when the server gives up on them, after the client did.
        deadline = time.monotonic() + SLOW_SECONDS + 5
        while server.admin("GET", "stats")["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        run.log = server.request_log()
        run.state = {uuid: custom for uuid, custom in server.custom_attributes().items() if custom}
        run.definitions = server.definitions()
    except BaseException as exc:  # reported by the test of this kind
        run.crash = exc
    return run


@pytest.fixture(scope="module")
def fault_runs() -> Iterator[dict[str, FaultRun]]:
    data = build_input()
    customers = [{"uuid": uuid} for uuid in [*data.valid, *sorted(data.bad_uuids)]]
    with ExitStack() as stack, pytest.MonkeyPatch.context() as monkeypatch:
        servers: dict[str, ServerProcess] = {}
        for seed, (kind, faults) in enumerate(RUNS.items()):
            server = stack.enter_context(ServerProcess(api_key=API_KEY, slow_seconds=SLOW_SECONDS))
            server.add_customers(customers)
            server.configure(faults=faults, fault_seed=seed)
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{_conn_id(kind).upper()}",
                json.dumps(
                    {"conn_type": "chartmogul", "host": server.url, "password": API_KEY, "extra": SETTINGS}
                ),
            )
            servers[kind] = server
        runs = [FaultRun(kind, data) for kind in RUNS]
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS, thread_name_prefix="fault-run") as pool:
            done = list(pool.map(lambda run: _push(run, servers[run.kind]), runs))
        yield {run.kind: run for run in done}


@pytest.mark.parametrize("kind", list(RUNS))
def test_nothing_lost_under_faults(fault_runs: dict[str, FaultRun], kind: str) -> None:
    run = fault_runs[kind]
    if run.crash is not None:
        raise run.crash
    report, data = run.report, run.input
    assert report is not None

    # -- faults really were injected, at the rate asked ---------------------------------------------
    faulted = [entry for entry in run.log if entry["fault"] is not None]
    assert 0.15 <= len(faulted) / len(run.log) <= 0.26, f"{len(faulted)} faults in {len(run.log)} requests"
    injected = Counter(entry["fault"] for entry in faulted)
    assert set(injected) == set(RUNS[kind]), injected

    # -- the counts add up to the input ---------------------------------------------------------------
    assert report["total"] == len(data.records) == VALID + len(data.invalid_positions)
    assert report["succeeded"] + report["failed"] + report["skipped"] == report["total"]
    assert report["skipped"] == 0
    assert report["aborted"] is None

    # -- every record in exactly one outcome, each failure with a reason --------------------------------
    rejected: set[int] = set()
    failed: set[str] = set()
    unsure: set[str] = set()  # failed with no answer to the last attempt: it may have been applied
    for failure in report["failures"]:
        assert failure["error"], failure
        if failure["stage"] == "validation":
            position = int(failure["customer"].split("#", 1)[1].split()[0])
            assert position in data.invalid_positions, failure
            assert position not in rejected, "a record reported twice"
            assert f"record #{position}" in failure["error"]
            rejected.add(position)
            assert failure["record"] == data.records[position]
        else:
            assert failure["stage"] == "api", failure
            uuid = failure["customer_uuid"]
            assert uuid in data.valid and uuid not in failed, failure
            failed.add(uuid)
            if "may or may not have been applied" in failure["error"]:
                unsure.add(uuid)
            assert failure["error"].startswith(f"ChartMogul POST {CUSTOM_PATH.format(uuid)} failed"), failure
            # the record, ready to replay: exactly what was handed in
            assert failure["record"] == typed_record(uuid, data.valid[uuid])
    assert rejected == data.invalid_positions
    written = set(data.valid) - failed
    assert report["succeeded"] == len(written)
    assert report["failed"] == len(rejected) + len(failed)
    assert report["added"] == 5 * len(written)

    # -- the server holds exactly what was reported written, with its values ----------------------------
    # (and perhaps a customer whose failure says its last attempt may have been applied: on a loaded
    # machine an answer can come after the client's deadline; the report then says so)
    assert set(written) <= set(run.state) <= written | unsure
    assert run.state == {uuid: stored_values(data.valid[uuid]) for uuid in run.state}
    assert run.definitions == TYPED_DEFINITIONS
    by_uuid: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for entry in sorted(run.log, key=lambda entry: entry["started"]):  # logged when answered
        by_uuid[uuid_of_custom_path(entry["path"])].append(entry)
    assert set(by_uuid) <= set(data.valid), "a request for something else than a valid customer"
    applied = Counter(
        uuid
        for uuid, entries in by_uuid.items()
        for entry in entries
        if entry["status"] == 200 and entry["fault"] is None
    )
    assert set(applied) == set(run.state)
    # A write is applied once, unless its answer came after the client's deadline: the client could
    # not know, so it retried (the same values: harmless). On a loaded machine that happens; what
    # must never happen is a retry of a write the client had its answer for. The server cannot tell
    # when the client's deadline was, so the client's own count decides: every write applied again
    # follows an attempt that got no answer.
    stats = report["requests"]
    applied_again = sum(times - 1 for times in applied.values())
    assert applied_again <= stats["connection_errors"], "an answered write was sent again"

    # -- transient faults are absorbed -----------------------------------------------------------------
    assert len(written) >= 0.99 * VALID, f"only {len(written)} of {VALID} written"
    assert stats["requests"] == len(run.log), "the client and the server disagree on the requests sent"
    assert stats["retries"] == len(run.log) - VALID

    # -- retries are bounded per customer, and the run in time ------------------------------------------
    for uuid, entries in by_uuid.items():
        assert len(entries) <= SETTINGS["max_retries"] + 1, uuid
        span = entries[-1]["started"] - entries[0]["started"]
        assert span <= SETTINGS["retry_budget"] + LIMITER_WAIT + SCHEDULING_SLACK, (uuid, span)
        if uuid in failed:
            error = next(f["error"] for f in report["failures"] if f["customer_uuid"] == uuid)
            assert f"after {len(entries)} attempts" in error
            # faulted, except a write answered after the deadline of a customer reported unsure
            assert all(entry["fault"] or uuid in unsure for entry in entries)
            assert (uuid in run.state) == (uuid in applied)
        else:  # retried until applied, then nothing more
            assert (entries[-1]["status"], entries[-1]["fault"]) == (200, None), uuid
            # (an unfaulted 200 before the last is a write answered after the deadline, checked above)
            assert all(entry["fault"] or entry["status"] == 200 for entry in entries[:-1]), uuid
    assert run.elapsed <= RUN_BOUND, f"{run.elapsed:.1f} s > {RUN_BOUND:.1f} s"
