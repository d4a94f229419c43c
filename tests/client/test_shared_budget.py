"""SharedBudget's own logic on a fake store and a fake clock: how it waits, takes several slots
and leases at once while no other task waits, falls back, stops and leaves. The store's rules run
on a real Redis in test_shared_budget_redis.py."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import deque
from typing import Any

import pytest

from airflow_provider_chartmogul.client.budget_store import Decision, Timings
from airflow_provider_chartmogul.client.send_control import SendCancelled
from airflow_provider_chartmogul.client.shared_budget import (
    FALLBACK_TASKS,
    IDLE_KEEP,
    LEASE_BATCH,
    MAX_LEASE_POLL,
    MAX_POLL,
    SLOT_BATCH,
    BudgetLimits,
    SharedBudget,
    budget_name,
)
from tests.conftest import API_KEY


class StoreDown(Exception):
    pass


class FakeStore:
    """Answers from a script of decisions (then admits); records every call; fails on demand.

    An admitting decision without slots or leases grants one of each the task lacks (the slot at
    the decision's moment, so at once). ``active``: how many tasks every answer says are present
    (2: the task is not alone, so one of each per call, as the store grants then).
    """

    name = "fake"
    timings = Timings()

    def __init__(self, decisions: list[Decision] | None = None, *, active: int = 2) -> None:
        self.decisions = deque(decisions or [])
        self.active = active
        self.calls: list[tuple[Any, ...]] = []
        self.asked: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail

    def acquire(self, task: str, prefix: str, **asked: Any) -> Decision:
        released, unused = tuple(asked.pop("released")), tuple(asked.pop("unused"))
        self._call("acquire", prefix, asked["per_window"], asked["connections"], released, unused)
        self.asked.append(asked)
        decision = self.decisions.popleft() if self.decisions else Decision(True, 0.0, self.active, 0, 0, 0.0)
        if decision.admitted and not decision.slots and not decision.leases:
            slots = () if asked["has_slot"] else ((f"{prefix}:s1", decision.at),)
            leases = () if asked["has_lease"] else (f"{prefix}:l1",)
            decision = dataclasses.replace(decision, slots=slots, leases=leases)
        return decision

    def renew(self, task: str, leases: list[str], *, give_back: list[str]) -> tuple[int, int]:
        self._call("renew", tuple(leases), tuple(give_back))
        return len(leases), self.active

    def release(self, task: str, ids: list[str]) -> None:
        self._call("release", tuple(ids))

    def leave(self, task: str, ids: list[str]) -> None:
        self._call("leave", tuple(ids))


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        if event.is_set():
            return
        assert timeout is not None
        self.pauses.append(timeout)
        self.now += timeout


def _budget(store: FakeStore, fake: FakeTime, **kwargs: Any) -> SharedBudget:
    return SharedBudget(
        store,
        BudgetLimits(39, 18),
        errors=(StoreDown,),
        clock=fake.clock,
        wait=fake.wait,
        renew_every=None,
        **kwargs,
    )


def denied(wait: float, active: int = 2) -> Decision:
    return Decision(False, wait, active, 39, 0, 0.0)


def test_the_name_is_the_host_and_a_one_way_digest_never_the_key() -> None:
    name = budget_name("https://api.chartmogul.com", API_KEY)
    host, digest = name.split(":")
    assert host == "api.chartmogul.com"
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert API_KEY not in name and "SECRET" not in name
    assert budget_name("https://api.chartmogul.com", API_KEY) == name  # every task agrees
    assert budget_name("https://api.chartmogul.com", API_KEY + "x") != name
    assert budget_name("http://127.0.0.1:8080", API_KEY) == f"127.0.0.1:8080:{digest}"


@pytest.mark.parametrize(
    ("rate", "connections", "reserve", "per_window", "leases"),
    [(39, 18, 0.0, 39, 18), (39, 18, 0.25, 29, 13), (40, 20, 0.1, 36, 18), (0.5, 1, 0.5, 1, 1)],
)
def test_the_reserve_comes_off_both_limits(
    rate: float, connections: int, reserve: float, per_window: int, leases: int
) -> None:
    limits = BudgetLimits(rate, connections, reserve)
    assert (limits.per_window, limits.leases) == (per_window, leases)


def test_a_free_slot_is_taken_at_once_with_the_limits_and_a_fresh_lease_id() -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    first, second = budget.acquire(), budget.acquire()
    assert first is not None and second is not None and first.id != second.id
    assert [c[0] for c in store.calls] == ["acquire", "acquire"]
    assert store.calls[0][2:] == (39, 18, (), ())
    assert fake.pauses == []


def test_it_waits_as_the_store_says_but_never_longer_than_max_poll() -> None:
    store, fake = FakeStore([denied(0.01), denied(0.4)]), FakeTime()
    assert _budget(store, fake).acquire() is not None
    assert fake.pauses == [pytest.approx(0.01), pytest.approx(MAX_POLL)]


def test_a_missing_connection_is_polled_faster_at_first() -> None:
    store, fake = FakeStore([denied(0.0)] * 8), FakeTime()
    assert _budget(store, fake).acquire() is not None
    assert fake.pauses[0] < fake.pauses[1] < fake.pauses[2]
    assert max(fake.pauses) == pytest.approx(MAX_LEASE_POLL)


def test_no_slot_within_the_timeout_is_none_and_no_lease_is_held() -> None:
    store, fake = FakeStore([denied(0.03)] * 100), FakeTime()
    budget = _budget(store, fake)
    assert budget.acquire(timeout=0.1) is None
    assert fake.now == pytest.approx(0.1)
    budget.renew()
    assert store.calls[-1] == ("renew", (), ())


def test_leases_are_renewed_until_released_and_given_back_on_close() -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    a, b = budget.acquire(), budget.acquire()
    assert a is not None and b is not None
    budget.renew()
    assert store.calls[-1] == ("renew", tuple(sorted([a.id, b.id])), ())
    a.release()
    budget.flush()
    assert store.calls[-1] == ("release", (a.id,))
    budget.renew()
    assert store.calls[-1] == ("renew", (b.id,), ())
    budget.close()
    assert store.calls[-1] == ("leave", (b.id,))


def test_cancel_wakes_the_waiter_and_refuses_later_calls() -> None:
    store, fake = FakeStore([denied(0.05)] * 1000), FakeTime()
    budget = _budget(store, fake)

    def cancel_on_third_pause(event: threading.Event, timeout: float | None) -> None:
        fake.wait(event, timeout)
        if len(fake.pauses) == 3:
            budget.cancel()

    budget._wait = cancel_on_third_pause
    with pytest.raises(SendCancelled):
        budget.acquire()
    with pytest.raises(SendCancelled):
        budget.acquire()
    assert len(fake.pauses) == 3


def test_a_failing_store_falls_back_once_to_a_conservative_rate(caplog: pytest.LogCaptureFixture) -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake, where="Redis connection 'budget_redis'")
    assert budget.acquire() is not None and not budget.degraded
    store.fail = StoreDown("Connection refused")
    leases = []
    with caplog.at_level(logging.WARNING):
        for _ in range(30):
            lease = budget.acquire()
            assert lease is not None and lease.id is None
            leases.append(lease)
            lease.release()
    assert budget.degraded
    warnings = [r for r in caplog.records if "Shared request budget unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "budget_redis" in warnings[0].getMessage() and "Connection refused" in warnings[0].getMessage()
    status = budget.status()
    assert status["state"] == "in-process"
    assert status["fallback"]["reason"] == "StoreDown: Connection refused"
    assert status["fallback"]["requests_per_second"] == pytest.approx(39 / FALLBACK_TASKS)
    assert status["fallback"]["connections"] == 18 // FALLBACK_TASKS
    # The store is asked once after it failed, never again.
    assert sum(1 for c in store.calls if c[0] == "acquire") == 2


def test_after_the_fallback_sends_are_spaced_never_a_burst() -> None:
    store, fake = FakeStore(), FakeTime()
    store.fail = StoreDown("down at start")
    budget = _budget(store, fake)
    times = []
    for _ in range(20):
        lease = budget.acquire()
        assert lease is not None
        times.append(fake.now)
        lease.release()
    rate = 39 / FALLBACK_TASKS
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / rate - 1e-6
    assert sum(1 for t in times if t < 1.0) <= rate + 1


def test_the_fallback_holds_no_more_connections_than_its_share() -> None:
    store, fake = FakeStore([Decision(True, 0.0, 6, 0, 0, 0.0)]), FakeTime()
    budget = _budget(store, fake)
    assert budget.acquire() is not None  # six tasks seen on the budget
    store.fail = StoreDown("gone")
    held = [budget.acquire() for _ in range(18 // 6)]  # spaced by the fallback's rate
    assert all(lease is not None and lease.id is None for lease in held)
    assert budget.acquire(timeout=0.0) is None  # every in-process connection is taken
    held[0].release()  # type: ignore[union-attr]
    assert budget.acquire(timeout=5.0) is not None
    assert budget.status()["fallback"]["connections"] == 3
    assert budget.status()["fallback"]["requests_per_second"] == pytest.approx(39 / 6)


def test_a_failing_release_or_renewal_falls_back_too() -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    lease = budget.acquire()
    assert lease is not None
    budget.release(lease)
    store.fail = OSError("reset")
    with pytest.raises(OSError):  # not one of the store's errors: a bug, raised as it is
        budget.flush()
    store.fail = StoreDown("reset")
    budget.renew()
    assert budget.degraded
    budget.release(lease)  # nothing raised, nothing sent: the lease expires in the store
    budget.close()
    assert store.calls[-1][0] == "renew"


def test_the_renewing_thread_stops_on_close() -> None:
    store = FakeStore()
    budget = SharedBudget(store, BudgetLimits(39, 18), errors=(StoreDown,), renew_every=0.01)
    assert budget.acquire() is not None
    renewed = threading.Event()
    original = store.renew

    def renew(task: str, leases: list[str], *, give_back: list[str]) -> tuple[int, int]:
        renewed.set()
        return original(task, leases, give_back=give_back)

    store.renew = renew  # type: ignore[method-assign]
    assert renewed.wait(30)
    budget.close()
    assert budget._renewer is not None and not budget._renewer.is_alive()


def test_a_lease_is_given_back_once_however_often_it_is_released() -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    lease = budget.acquire()
    assert lease is not None
    lease.release()
    lease.release()
    budget.flush()
    budget.flush()
    assert [c[0] for c in store.calls] == ["acquire", "release"]


def test_it_is_a_gate_of_the_send_control() -> None:
    from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
    from airflow_provider_chartmogul.client.ratelimit import RateLimiter
    from airflow_provider_chartmogul.client.send_control import SendControl

    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    control = SendControl(
        concurrency=ConcurrencyLimit(4), rate=RateLimiter(1000, clock=fake.clock), gates=[budget]
    )
    ticket = control.on_sending_request()
    assert ticket is not None and [c[0] for c in store.calls] == ["acquire"]
    ticket.release()
    budget.flush()
    assert [c[0] for c in store.calls] == ["acquire", "release"]
    control.cancel()
    with pytest.raises(SendCancelled):
        budget.acquire()


def test_a_released_lease_goes_back_with_the_next_question() -> None:
    store, fake = FakeStore(), FakeTime()
    budget = _budget(store, fake)
    first = budget.acquire()
    assert first is not None
    first.release()
    assert budget.acquire() is not None
    assert store.calls[-1][0] == "acquire" and store.calls[-1][-2] == (first.id,)
    budget.flush()
    assert store.calls[-1][0] == "acquire"  # nothing left to give back


def test_the_background_thread_gives_back_what_no_question_took() -> None:
    store = FakeStore()
    budget = SharedBudget(store, BudgetLimits(39, 18), errors=(StoreDown,), renew_every=30)
    lease = budget.acquire()
    assert lease is not None
    lease.release()
    _wait_for(lambda: ("release", (lease.id,)) in store.calls)
    budget.close()


# ---- a task alone: several slots and leases per call ---------------------------------------------

SLACK = Timings().slack


def batch(at: float, moments: list[float], leases: int, prefix: str = "p") -> Decision:
    """What the store grants a task alone: slots at ``moments`` (its clock) and ``leases``."""
    slots = tuple((f"{prefix}:s{i + 1}", m) for i, m in enumerate(moments))
    granted = tuple(f"{prefix}:l{i + 1}" for i in range(leases))
    return Decision(True, 0.0, 1, 0, 0, at, slots=slots, leases=granted)


def test_alone_one_call_brings_several_slots_each_sent_in_at_its_moment() -> None:
    store, fake = FakeStore([batch(100.0, [100.0, 100.026, 100.052], 2)], active=1), FakeTime()
    budget = _budget(store, fake)
    first = budget.acquire()
    assert first is not None and (first.id, first.moment) == ("p:l1", 100.0)
    assert store.asked[0] | {"spacing": 0} == {
        "per_window": 39,
        "connections": 18,
        "slots": SLOT_BATCH,
        "leases": LEASE_BATCH,
        "has_slot": False,
        "has_lease": False,
        "spacing": 0,
    }
    second = budget.acquire()  # the second slot and lease, no call: it waits for the slot's moment
    assert second is not None and (second.id, second.moment) == ("p:l2", 100.026)
    assert fake.pauses == [pytest.approx(0.026)] and len(store.calls) == 1
    third = budget.acquire()  # a slot is left, no lease: only a lease is asked for
    assert third is not None and third.moment == 100.052
    assert store.asked[1]["has_slot"] is True and store.asked[1]["has_lease"] is False
    assert fake.now == pytest.approx(0.052) and len(store.calls) == 2


def test_a_slot_whose_moment_passed_is_given_back_unsent() -> None:
    store, fake = FakeStore([batch(100.0, [100.0, 100.026], 2)], active=1), FakeTime()
    budget = _budget(store, fake)
    assert budget.acquire() is not None
    fake.now = 0.026 + SLACK + 0.001  # too late for the second slot
    late = budget.acquire()
    assert late is not None and late.moment != 100.026
    assert store.calls[-1][0] == "acquire" and store.calls[-1][-1] == ("p:s2",)  # given back
    assert store.asked[-1]["has_lease"] is True  # the lease stayed with the task


def test_a_thread_woken_after_its_slot_takes_another(monkeypatch: pytest.MonkeyPatch) -> None:
    store, fake = FakeStore([batch(100.0, [100.0, 100.026], 2)], active=1), FakeTime()
    budget = _budget(store, fake)
    assert budget.acquire() is not None

    def oversleep(event: threading.Event, timeout: float | None) -> None:
        fake.wait(event, (timeout or 0) + SLACK + 0.001)

    budget._wait = oversleep
    lease = budget.acquire()
    assert lease is not None and lease.moment != 100.026  # not sent in the slot it missed
    assert store.calls[-1][-1] == ("p:s2",)


def test_alone_a_lease_stays_for_the_next_request_and_goes_back_when_idle() -> None:
    store, fake = FakeStore([batch(100.0, [100.0], 2)], active=1), FakeTime()
    budget = _budget(store, fake)
    lease = budget.acquire()
    assert lease is not None
    lease.release()
    budget.flush()
    assert [c[0] for c in store.calls] == ["acquire"]  # kept, not given back
    fake.now = IDLE_KEEP / 2
    budget.renew()
    assert store.calls[-1] == ("renew", ("p:l1", "p:l2"), ())
    fake.now = IDLE_KEEP + 0.01  # p:l2 idle since 0, p:l1 since its answer at 0
    budget.renew()
    assert store.calls[-1] == ("renew", (), ("p:l2", "p:l1"))


def test_when_another_task_comes_idle_leases_go_back_at_once() -> None:
    store, fake = FakeStore([batch(100.0, [100.0], 3)], active=1), FakeTime()
    budget = _budget(store, fake)
    lease = budget.acquire()
    assert lease is not None
    store.active = 2
    budget.renew()  # the store says another task is present
    budget.flush()
    assert store.calls[-1] == ("release", ("p:l2", "p:l3"))
    lease.release()  # and a lease whose request is over goes back too
    budget.flush()
    assert store.calls[-1] == ("release", ("p:l1",))


def test_close_gives_back_every_lease_and_unsent_slot() -> None:
    store, fake = FakeStore([batch(100.0, [100.0, 100.03, 100.06], 2)], active=1), FakeTime()
    budget = _budget(store, fake)
    assert budget.acquire() is not None
    budget.close()
    assert store.calls[-1] == ("leave", ("p:l1", "p:l2", "p:s2", "p:s3"))


def test_slots_are_asked_for_as_far_apart_as_the_requests_come() -> None:
    store, fake = FakeStore(active=1), FakeTime()
    budget = _budget(store, fake)
    for _ in range(10):  # a request every 0.1 s, each finding its slot free
        lease = budget.acquire()
        assert lease is not None
        lease.release()
        fake.now += 0.1
    assert store.asked[-1]["spacing"] == pytest.approx(0.1)


def test_requests_that_waited_for_their_slot_ask_for_slots_as_close_as_the_window_allows() -> None:
    late = [batch(t / 10, [t / 10 + 0.05], 1, prefix=f"p{t}") for t in range(10)]
    store, fake = FakeStore(late, active=1), FakeTime()
    budget = _budget(store, fake)
    for t in range(10):
        fake.now = max(fake.now, t / 10)
        lease = budget.acquire()  # each waits 50 ms for its slot: the budget holds it back
        assert lease is not None
        lease.release()
    assert store.asked[-1]["spacing"] == 0.0


def _wait_for(condition: Any) -> None:
    done = threading.Event()
    for _ in range(3000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("not within 30 s")
