"""The shared budget for real: separate processes on one account through a real redis-server and
the project's ChartMogul-compatible server; a worker killed with SIGKILL; Redis stopped mid-run;
what Redis holds.

No figure depends on the machine's speed: windows are checked on Redis's own clock (the times the
budget script admitted each send), waits are generous gates on events.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.client.budget_store import KEY_PREFIX, RedisBudgetStore
from airflow_provider_chartmogul.client.shared_budget import FALLBACK_TASKS, budget_name
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.testing.server.synthetic import synthetic_uuid
from tests.conftest import API_KEY, connection_json
from tests.redis import RedisServer, redis_client, redis_server, require_redis  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
BUDGET_CONN = "budget_redis"

# One pushing task in a process of its own: pushes its customers through the hook with 10
# threads, records the Redis time of the slot of every send the budget let go, prints what it saw.
CHILD = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from airflow_provider_chartmogul.client import shared_budget
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook

spec = json.loads(sys.argv[1])
admitted = []
original = shared_budget.SharedBudget._from_store

def from_store(self, *args):
    lease = original(self, *args)
    if isinstance(lease, shared_budget.Lease) and lease.moment is not None:
        admitted.append(lease.moment)
    return lease

shared_budget.SharedBudget._from_store = from_store
hook = ChartMogulHook(max_requests_per_second=39, max_connections=10)
hook.settings
Path(spec["ready"]).touch()
while not Path(spec["go"]).exists():
    time.sleep(0.01)

def push(uuid):
    hook.add_custom_attributes(uuid, [{"type": "Integer", "key": "seats", "value": 7}])

with ThreadPoolExecutor(10) as pool:
    list(pool.map(push, spec["uuids"]))
status = hook.shared_budget.status()
hook.close()
print(json.dumps({"admitted": admitted, "status": status, "stats": hook.stats.snapshot()}))
"""


def _env(server: ChartMogulServer, redis: RedisServer, **extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env["AIRFLOW_CONN_CHARTMOGUL_DEFAULT"] = connection_json(
        server, shared_budget_conn_id=BUDGET_CONN, **extra
    )
    env[f"AIRFLOW_CONN_{BUDGET_CONN.upper()}"] = json.dumps(
        {"conn_type": "redis", "host": "127.0.0.1", "port": redis.port}
    )
    env["PYTHONPATH"] = str(REPO)
    return env


def _start(spec: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.02)


def busiest(times: list[float], window: float = 1.0) -> int:
    times, first, most = sorted(times), 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.fixture
def account(chartmogul_server: ChartMogulServer) -> ChartMogulServer:
    chartmogul_server.seed_synthetic(200)
    return chartmogul_server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop mid-run or kill."""
    require_redis()
    with RedisServer() as server:
        yield server


def test_two_processes_together_never_exceed_the_window(
    account: ChartMogulServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    # Each process alone would send 39/s; the budget allows 20/s for both together.
    account.configure(rate_limit=40, latency=0.02)
    env = _env(account, own_redis, account_requests_per_second=20, account_connections=8)
    go = tmp_path / "go"
    children, ready = [], []
    for index, start in enumerate((0, 100)):
        flag = tmp_path / f"ready-{index}"
        ready.append(flag)
        uuids = [synthetic_uuid(i) for i in range(start, start + 100)]
        children.append(_start({"uuids": uuids, "ready": str(flag), "go": str(go)}, env))
    _wait_for(lambda: all(flag.exists() for flag in ready), "both processes ready")
    go.touch()
    runs = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    admitted = [t for run in runs for t in run["admitted"]]
    assert len(admitted) == 200
    assert busiest(admitted) <= 20
    assert all(run["status"]["state"] == "shared" for run in runs)
    assert max(run["status"]["tasks_seen"] for run in runs) == 2
    # Fair: while both ran, each had about half.
    overlap = (max(min(run["admitted"]) for run in runs), min(max(run["admitted"]) for run in runs))
    during = [sum(1 for t in run["admitted"] if overlap[0] <= t <= overlap[1]) for run in runs]
    assert min(during) / max(during) >= 0.7, during
    assert not any(r.status == 429 for r in account.requests)
    assert all(run["stats"]["by_status"] == {"200": 100} for run in runs)


def test_a_killed_workers_connections_come_back_when_its_leases_expire(
    account: ChartMogulServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    account.configure(latency=30.0)  # every request of the doomed worker holds its lease
    env = _env(account, own_redis, account_connections=4, timeout=60)
    go = tmp_path / "go"
    go.touch()
    uuids = [synthetic_uuid(i) for i in range(20)]
    child = _start({"uuids": uuids, "ready": str(tmp_path / "ready"), "go": str(go)}, env)
    client = own_redis.client()
    try:
        name = budget_name(account.url, API_KEY)
        store = RedisBudgetStore(client, name)
        _wait_for(lambda: client.zcard(store.leases) == 4, "the worker holds every connection")
        time.sleep(1.5)  # it renews them at least once
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        killed_at = store.acquire("probe", "probe:0", per_window=1000, connections=4)
        assert not killed_at.admitted
        expiries = [score / 1e6 for _, score in client.zrange(store.leases, 0, -1, withscores=True)]
        assert len(expiries) == 4
        # Every lease runs out within the lease time of the kill (well inside 10 s) ...
        assert max(expiries) - killed_at.at <= store.timings.lease_ttl <= 10
        # ... and then every connection is free for the others.
        taken: list[Any] = []

        def all_four_taken() -> bool:
            decision = store.acquire("probe", f"probe:{len(taken) + 1}", per_window=1000, connections=4)
            if decision.admitted:
                taken.append(decision)
            return len(taken) == 4

        _wait_for(all_four_taken, "the killed worker's connections are free again", timeout=60)
        assert taken[0].at <= max(expiries) + 1.0
    finally:
        if child.poll() is None:
            child.kill()
        client.close()


def _push_in_threads(hook: ChartMogulHook, uuids: list[str]) -> list[Any]:
    def push(uuid: str) -> Any:
        return hook.add_custom_attributes(uuid, [{"type": "Integer", "key": "seats", "value": 7}])

    with ThreadPoolExecutor(hook.max_connections) as pool:
        return list(pool.map(push, uuids))


def _hook(server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, redis_port: int, **extra: Any) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(server, shared_budget_conn_id=BUDGET_CONN, **extra),
    )
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{BUDGET_CONN.upper()}",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_port}),
    )
    return ChartMogulHook()


def _fallback_warnings(log: str) -> list[str]:
    lines = [line for line in log.splitlines() if "Shared request budget unavailable" in line]
    # Airflow 2 logs each record both to pytest's capture and to stdout: count one of the two.
    captured = [line for line in lines if line.startswith("WARNING ")]
    return captured or lines


def test_redis_stopped_mid_run_the_push_goes_on_without_a_burst(
    account: ChartMogulServer,
    own_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    task_log: Any,
) -> None:
    account.configure(latency=0.01)
    hook = _hook(account, monkeypatch, own_redis.port)
    uuids = [synthetic_uuid(i) for i in range(120)]
    stopped = threading.Event()
    stopped_at: list[float] = []

    def stop_redis_after_some_requests() -> None:
        _wait_for(lambda: len(account.requests) >= 30, "30 requests")
        own_redis.stop()
        stopped_at.append(time.monotonic())
        stopped.set()

    stopper = threading.Thread(target=stop_redis_after_some_requests)
    stopper.start()
    answers = _push_in_threads(hook, uuids)
    stopper.join()
    assert stopped.is_set() and len(answers) == 120
    assert all(account.custom_attributes(uuid)["seats"] == 7 for uuid in uuids)
    warnings = _fallback_warnings(task_log())
    assert len(warnings) == 1, warnings
    assert BUDGET_CONN in warnings[0]
    status = hook.shared_budget.status()
    assert status["state"] == "in-process" and status["fallback"]["reason"]
    rate = status["fallback"]["requests_per_second"]
    assert rate == pytest.approx(39 / FALLBACK_TASKS)
    # After the fall-back the sends follow the conservative rate: no burst to catch up. Slots
    # Redis granted before it stopped are moments at most the store's horizon ahead (a task alone
    # takes several per call): any send later than that went by the in-process limit.
    horizon = hook.shared_budget.store.timings.horizon
    after = [r.started for r in account.requests if r.started > stopped_at[0] + horizon + 0.05]
    assert len(after) >= 40, "the test shows nothing: most sends came before the fall-back"
    assert busiest(after) <= int(rate) + 2
    assert hook.stats.snapshot()["by_status"] == {200: 120}
    hook.close()


@pytest.fixture
def closed_redis() -> Iterator[RedisServer]:
    """A loopback port with no Redis behind it (never started)."""
    require_redis()
    closed = RedisServer()
    yield closed
    closed.close()


def test_redis_down_at_start_the_push_goes_on_and_says_so_once(
    account: ChartMogulServer, closed_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, task_log: Any
) -> None:
    hook = _hook(account, monkeypatch, closed_redis.port)
    _push_in_threads(hook, [synthetic_uuid(i) for i in range(20)])
    assert len(_fallback_warnings(task_log())) == 1
    assert hook.shared_budget.status()["state"] == "in-process"
    assert hook.stats.snapshot()["by_status"] == {200: 20}
    hook.close()


def test_a_connection_that_is_not_redis_falls_back_with_the_reason(
    account: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, task_log: Any
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(account, shared_budget_conn_id="not_redis")
    )
    monkeypatch.setenv("AIRFLOW_CONN_NOT_REDIS", json.dumps({"conn_type": "postgres", "host": "127.0.0.1"}))
    hook = ChartMogulHook()
    hook.ping()
    (warning,) = _fallback_warnings(task_log())
    assert "of type 'postgres', not 'redis'" in warning
    hook.close()


def test_the_operator_argument_overrides_the_connection(
    account: ChartMogulServer,
    redis_client: Any,  # noqa: F811 (a fixture)
    redis_server: RedisServer,  # noqa: F811 (a fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(account))
    monkeypatch.setenv(
        "AIRFLOW_CONN_OTHER_REDIS",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port}),
    )
    assert ChartMogulHook().settings.shared_budget_conn_id is None
    hook = ChartMogulHook(shared_budget_conn_id="other_redis")
    hook.ping()
    assert hook.shared_budget is not None and hook.shared_budget.status()["state"] == "shared"
    hook.close()


def _everything_in(redis: RedisServer) -> str:
    """Every key and every value (members, scores, strings) Redis holds, through redis-cli."""
    parts = []
    for key in redis.cli("--scan").split():
        kind = redis.cli("TYPE", key).strip()
        parts.append(key)
        if kind == "zset":
            parts.append(redis.cli("ZRANGE", key, "0", "-1", "WITHSCORES"))
        elif kind == "string":
            parts.append(redis.cli("GET", key))
        elif kind != "none":  # none: gone between the scan and the read
            raise AssertionError(f"unexpected {kind} key {key}")
    return "\n".join(parts)


def test_the_key_never_reaches_redis(
    account: ChartMogulServer, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    account.configure(latency=0.3)  # leases are held while the keys are read
    hook = _hook(account, monkeypatch, own_redis.port)
    seen: list[str] = []
    pusher = threading.Thread(target=_push_in_threads, args=(hook, [synthetic_uuid(i) for i in range(40)]))
    pusher.start()
    _wait_for(
        lambda: own_redis.client().exists(f"{KEY_PREFIX}{{{budget_name(account.url, API_KEY)}}}:leases"),
        "a lease",
    )
    seen.append(_everything_in(own_redis))
    pusher.join()
    seen.append(_everything_in(own_redis))
    hook.close()
    seen.append(_everything_in(own_redis))
    text = "\n".join(seen)
    assert "leases" in text and budget_name(account.url, API_KEY) in text
    forms = [
        API_KEY,
        base64.b64encode(API_KEY.encode()).decode(),
        base64.b64encode(f"{API_KEY}:".encode()).decode(),
        "SECRET",
    ]
    for form in forms:
        assert form not in text
    # Not even the key's own SHA-256: only a keyed, cut digest.
    import hashlib

    assert hashlib.sha256(API_KEY.encode()).hexdigest()[:16] not in text


def _operator_report(account: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, redis_port: int) -> Any:
    from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(account))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{BUDGET_CONN.upper()}",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": redis_port}),
    )
    records = [
        {"customer_uuid": synthetic_uuid(i), "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i in range(10)
    ]
    operator = AddCustomAttributesOperator(
        task_id="push", customers=records, shared_budget_conn_id=BUDGET_CONN
    )
    return operator.execute(context={})


def test_the_report_names_the_shared_budget_it_took_its_slots_from(
    account: ChartMogulServer,
    redis_server: RedisServer,  # noqa: F811 (a fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = _operator_report(account, monkeypatch, redis_server.port)

    assert report["succeeded"] == 10
    budget = report["shared_budget"]
    assert (budget["state"], budget["fallback"]) == ("shared", None)
    assert budget["name"] == budget_name(account.url, API_KEY)
    assert (budget["requests_per_second"], budget["connections"]) == (39, 18)


def test_the_report_says_when_the_push_went_on_without_the_shared_budget(
    account: ChartMogulServer, closed_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, task_log: Any
) -> None:
    report = _operator_report(account, monkeypatch, closed_redis.port)

    assert report["succeeded"] == 10, "a Redis that fails never fails the run"
    budget = report["shared_budget"]
    assert budget["state"] == "in-process"
    assert budget["fallback"]["requests_per_second"] == pytest.approx(39 / FALLBACK_TASKS)
    assert "Connection" in budget["fallback"]["reason"], budget["fallback"]
    assert "the shared request budget was unavailable" in task_log()
    assert API_KEY not in json.dumps(report)
