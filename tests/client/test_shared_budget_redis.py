"""The budget store's script on a real redis-server: the window, the leases, the fair shares, and
the slots and leases a task takes several at a time while no other task waits.

Time is injected (the scripts' ``now`` argument replaces Redis's clock), so the rules are checked
exactly and no figure depends on the machine's speed. The ``store`` fixture takes no slot ahead
(``horizon=0``): one slot and one lease per call, as every task takes them while another waits.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from typing import Any

import pytest

from airflow_provider_chartmogul.client.budget_store import RedisBudgetStore, Timings
from tests.redis import redis_client, redis_server  # noqa: F401 (fixtures)

RATE, CONNECTIONS = 39, 18


NAME = "127.0.0.1:8080:0123456789abcdef"


@pytest.fixture
def store(redis_client: Any) -> RedisBudgetStore:  # noqa: F811
    return RedisBudgetStore(redis_client, NAME, timings=Timings(horizon=0.0))


@pytest.fixture
def batching(redis_client: Any) -> RedisBudgetStore:  # noqa: F811
    """The store as tasks use it: slots ahead while no other task waits."""
    return RedisBudgetStore(redis_client, NAME)


def window_of(store: RedisBudgetStore) -> float:
    """How long a slot counts: the window and the slack a send may come late in its slot."""
    return store.timings.window + store.timings.slack


def ask(store: RedisBudgetStore, task: str, prefix: str, now: float, **limits: int) -> bool:
    """One slot and one lease (``prefix:l1``) for ``task``, or none."""
    limits = {"per_window": RATE, "connections": CONNECTIONS, **limits}
    return store.acquire(task, prefix, now=now, **limits).admitted


def lease(prefix: str) -> str:
    return f"{prefix}:l1"


def busiest_window(times: list[float], window: float = 1.0) -> int:
    """The most times in any ``(t - window, t]``; a time exactly a window before another is outside
    it, as in the store (to a microsecond, its resolution)."""
    times, first, busiest = sorted(times), 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window + 1e-7:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def test_no_window_holds_more_than_the_rate_whoever_asks(store: RedisBudgetStore) -> None:
    rng = random.Random(7)
    admitted, ids = [], itertools.count()
    now = 1000.0
    for _ in range(3000):  # 4 tasks asking at random moments over about 6 s
        now += rng.expovariate(500)
        task = f"t{rng.randrange(4)}"
        lease = f"{task}:{next(ids)}"
        if ask(store, task, lease, now):
            admitted.append(now)
            store.release(task, [f"{lease}:l1"])
    assert busiest_window(admitted, window_of(store)) == RATE
    assert len(admitted) >= RATE * 5  # and the rate was used, not starved


def test_sends_are_spaced_evenly_across_tasks(store: RedisBudgetStore) -> None:
    interval = 0.9 * window_of(store) / RATE  # a tenth faster than the window: it binds
    late = 0.005  # how late a send may come without pushing the next one back
    assert ask(store, "a", "a:0", 100.0)
    decision = store.acquire("b", "b:0", per_window=RATE, connections=CONNECTIONS, now=100.0)
    assert not decision.admitted and decision.wait == pytest.approx(interval - late, abs=1e-5)
    assert not ask(store, "b", "b:1", 100.0 + interval - late - 0.001)
    assert ask(store, "b", "b:2", 100.0 + interval - late)
    decision = store.acquire("a", "a:1", per_window=RATE, connections=CONNECTIONS, now=100.0 + interval)
    assert not decision.admitted and decision.wait == pytest.approx(interval - late, abs=1e-5)


def test_a_full_window_says_when_its_oldest_send_leaves(store: RedisBudgetStore) -> None:
    window = window_of(store)
    interval = window / 3
    for i in range(3):  # a late send does not push the next back, so the window fills first
        assert ask(store, "a", f"a:{i}", 100.0 + i * interval * 0.9, per_window=3)
    decision = store.acquire("a", "a:x", per_window=3, connections=CONNECTIONS, now=100.0 + window - 0.05)
    assert not decision.admitted and decision.sent == 3
    assert decision.wait == pytest.approx(0.05, abs=1e-6)
    assert ask(store, "a", "a:y", 100.0 + window + 0.0001, per_window=3)


class Clock:
    """Moments a microsecond apart (the pace of a budget of a million sends per second)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.00001
        return self.now


FAST = 1_000_000


def test_connections_are_leases_that_expire_unless_renewed(store: RedisBudgetStore) -> None:
    ttl, now = store.timings.lease_ttl, Clock(10.0)
    for i in range(CONNECTIONS):
        assert ask(store, "killed", f"k:{i}", now(), per_window=FAST)
    for i in range(3):
        assert ask(store, "alive", f"a:{i}", now(), per_window=FAST) is False
    decision = store.acquire("alive", "a:x", per_window=FAST, connections=CONNECTIONS, now=11.0)
    assert not decision.admitted and decision.wait == 0 and decision.held == CONNECTIONS
    # Renewed leases stay held past the first expiry; the others come back at it.
    assert store.renew("killed", [f"k:{i}:l1" for i in range(6)], now=12.0) == (6, 2)
    now = Clock(10.0 + ttl + 0.01)
    assert sum(ask(store, "alive", f"a:{i}", now(), per_window=FAST) for i in range(20)) == 12
    assert ask(store, "alive", "a:late", 12.0 + ttl + 0.01, per_window=FAST)


def test_a_released_lease_is_free_at_once(store: RedisBudgetStore) -> None:
    now = Clock(10.0)
    for i in range(CONNECTIONS):
        assert ask(store, "a", f"a:{i}", now(), per_window=FAST)
    assert not ask(store, "a", "a:x", now(), per_window=FAST)
    store.release("a", [lease("a:3")])
    assert ask(store, "a", "a:y", now(), per_window=FAST)


def test_leases_released_with_the_next_question_are_free_for_it(store: RedisBudgetStore) -> None:
    now = Clock(10.0)
    for i in range(CONNECTIONS):
        assert ask(store, "a", f"a:{i}", now(), per_window=FAST)
    decision = store.acquire(
        "a", "a:x", per_window=FAST, connections=CONNECTIONS, released=[lease("a:0"), lease("a:1")], now=now()
    )
    assert decision.admitted and decision.held == CONNECTIONS - 2
    assert store.client.zcard(store.leases) == CONNECTIONS - 1


def test_a_task_that_leaves_gives_back_its_leases_and_share(store: RedisBudgetStore) -> None:
    now = Clock(10.0)
    for i in range(CONNECTIONS):
        assert ask(store, "a", f"a:{i}", now(), per_window=FAST)
    store.leave("a", [lease(f"a:{i}") for i in range(CONNECTIONS)])
    decision = store.acquire("b", "b:0", per_window=FAST, connections=CONNECTIONS, now=10.1)
    assert decision.admitted and decision.active == 1 and decision.held == 0


def test_a_task_not_seen_for_the_presence_ttl_no_longer_counts(store: RedisBudgetStore) -> None:
    assert ask(store, "gone", "g:0", 10.0)
    store.release("gone", [lease("g:0")])
    decision = store.acquire("b", "b:0", per_window=RATE, connections=CONNECTIONS, now=10.1)
    assert decision.active == 2
    later = 10.0 + store.timings.presence_ttl + 0.01
    assert store.acquire("b", "b:1", per_window=RATE, connections=CONNECTIONS, now=later).active == 1
    assert store.client.exists(f"{store.sends}:gone", f"{store.leases}:gone") == 0


def test_every_key_expires_when_the_budget_is_unused(store: RedisBudgetStore) -> None:
    assert store.acquire("a", "a:0", per_window=RATE, connections=CONNECTIONS).admitted  # Redis's clock
    keys = list(store.client.scan_iter("chartmogul:budget:*"))
    assert keys and all(0 < store.client.pttl(key) <= 1000 * store.timings.key_ttl for key in keys)


def take(store: RedisBudgetStore, task: str, prefix: str, now: float, **asked: Any) -> Any:
    asked = {"per_window": RATE, "connections": CONNECTIONS, "slots": 16, "leases": 4, **asked}
    return store.acquire(task, prefix, now=now, **asked)


def test_a_task_alone_takes_slots_ahead_as_it_asks_within_the_horizon(batching: RedisBudgetStore) -> None:
    decision = take(batching, "a", "a:1", 100.0, spacing=0.05)
    moments = [m for _, m in decision.slots]
    assert decision.admitted and len(decision.leases) == 4
    assert moments == pytest.approx([100.0 + 0.05 * i for i in range(9)], abs=1e-6)  # up to 100.4
    assert max(moments) <= 100.0 + batching.timings.horizon
    assert batching.client.zcard(batching.sends) == 9


def test_slots_taken_ahead_are_never_closer_than_the_window_allows(batching: RedisBudgetStore) -> None:
    decision = take(batching, "a", "a:1", 100.0, spacing=0.0)
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(decision.slots)]
    assert len(decision.slots) == 16 and min(gaps) >= window_of(batching) / RATE - 1e-6


def test_a_full_window_gives_the_task_alone_the_moments_it_frees(batching: RedisBudgetStore) -> None:
    window = window_of(batching)
    moments = []
    for i in range(4):  # a second and more of asking: the window fills, then frees as it moves
        moments += [m for _, m in take(batching, "a", f"a:{i}", 100.0 + i * 0.4).slots]
    assert busiest_window(moments, window) == RATE
    assert len(moments) >= RATE + 16


def test_unused_slots_given_back_no_longer_count(batching: RedisBudgetStore) -> None:
    first = take(batching, "a", "a:1", 100.0)
    assert len(first.slots) == 16
    unused = [i for i, _ in first.slots[1:]]
    again = take(batching, "a", "a:2", 100.5, has_lease=True, unused=unused)
    assert again.sent == 1 and again.admitted
    assert all(batching.client.zscore(batching.sends, i) is None for i in unused)


def test_with_another_task_present_each_call_takes_one_of_each(batching: RedisBudgetStore) -> None:
    assert len(take(batching, "a", "a:1", 100.0).slots) == 16
    b = take(batching, "b", "b:1", 100.5)
    assert b.admitted and (len(b.slots), len(b.leases), b.active) == (1, 1, 2)
    a = take(batching, "a", "a:2", 100.6)
    assert a.admitted and (len(a.slots), len(a.leases)) == (1, 1)
    assert [m for _, m in a.slots] == [pytest.approx(100.6)]  # at once, not ahead


class Task:
    """One simulated task as SharedBudget keeps it: slots and idle leases taken ahead, leases and
    missed slots to give back with its next call, and the gaps between its requests."""

    def __init__(self, threads: float, demand: float) -> None:
        self.threads, self.demand = threads, demand
        self.slots: deque[tuple[str, float]] = deque()
        self.idle: list[str] = []
        self.released: list[str] = []
        self.unused: list[str] = []
        self.quiet = False
        self.next_request = 0.0
        self.waiting: deque[float] = deque()  # when each request waiting for a slot came
        self.gaps: deque[float] = deque(maxlen=8)
        self.last: float | None = None
        self.calls = 0
        self.missed = False

    def spacing(self) -> float:
        """As SharedBudget asks: the lower quartile of the last gaps (0 for a request that waited)."""
        gaps = sorted(self.gaps)
        return gaps[len(gaps) // 4] if len(gaps) >= 4 else 0.0

    def sent(self, came: float, now: float) -> None:
        supply_bound = now > came and not self.missed
        self.gaps.append(0.0 if supply_bound or self.last is None else came - self.last)
        self.last, self.missed = came, False


def simulate(
    store: RedisBudgetStore,
    tasks: dict[str, dict[str, float]],
    *,
    seconds: float,
    step: float = 0.0025,
    latency: float = 0.15,
    seed: int = 1,
) -> tuple[Counter[str], list[float], int, dict[str, Task]]:
    """Tasks on a fake clock, each with ``threads`` workers making at most ``demand`` requests/s;
    every request holds its lease for ``latency``. Each takes up to 16 slots and 4 leases per call
    (the store grants one of each unless the task is alone), keeps a lease for its next request
    while alone and gives it back at once otherwise, and sends in a slot at the
    first step at or after its moment. Sends per task after the first second, every send time,
    the most leases held at once, and the tasks."""
    rng = random.Random(seed)
    ids = itertools.count()
    slack = store.timings.slack
    assert step <= slack  # a slot is sent in at the first step at or after its moment
    state = {name: Task(spec["threads"], spec.get("demand", 1000)) for name, spec in tasks.items()}
    in_flight: list[tuple[float, str, str]] = []
    counts: Counter[str] = Counter()
    times: list[float] = []
    most_held = 0
    now = 50.0
    end = now + seconds
    while now < end:
        for done in [f for f in in_flight if f[0] <= now]:
            in_flight.remove(done)
            task = state[done[1]]
            if task.quiet:
                task.idle.append(done[2])
            else:
                store.release(done[1], [done[2]])
        order = list(state)
        rng.shuffle(order)
        for name in order:
            task = state[name]
            if not task.quiet and task.idle:
                task.released += task.idle
                task.idle = []
            busy = sum(1 for f in in_flight if f[1] == name)
            while busy + len(task.waiting) < task.threads and task.next_request <= now:
                task.waiting.append(now)
                task.next_request = now + 1 / task.demand
            while task.waiting:
                while task.slots and task.slots[0][1] + slack < now:
                    task.unused.append(task.slots.popleft()[0])
                    task.missed = True
                if not (task.slots and task.idle):
                    decision = store.acquire(
                        name,
                        f"{name}:{next(ids)}",
                        per_window=RATE,
                        connections=CONNECTIONS,
                        slots=16,
                        leases=4,
                        has_slot=bool(task.slots),
                        has_lease=bool(task.idle),
                        spacing=task.spacing(),
                        released=task.released,
                        unused=task.unused,
                        now=now,
                    )
                    task.calls += 1
                    task.released, task.unused = [], []
                    task.quiet = decision.active == 1
                    task.slots.extend(decision.slots)
                    task.idle.extend(decision.leases)
                    if not decision.admitted:
                        break
                if task.slots[0][1] > now:
                    break  # its next slot is later
                task.slots.popleft()
                busy += 1
                in_flight.append((now + latency, name, task.idle.pop()))
                task.sent(task.waiting.popleft(), now)
                times.append(now)
                if now >= 51.0:
                    counts[name] += 1
        most_held = max(most_held, len(in_flight), store.client.zcard(store.leases))
        now += step
    return counts, times, most_held, state


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_hungry_tasks_get_equal_shares_of_the_whole_rate(batching: RedisBudgetStore, k: int) -> None:
    tasks = {f"t{i}": {"threads": 10} for i in range(k)}
    counts, times, most_held, _ = simulate(batching, tasks, seconds=5.0)
    assert busiest_window(times, 1.0) <= RATE  # the sends themselves, each within its slot's slack
    assert most_held <= CONNECTIONS
    assert sum(counts.values()) >= 0.97 * RATE * 4 / window_of(batching)
    assert min(counts.values()) / max(counts.values()) >= 0.8, counts


def test_a_task_alone_takes_its_slots_several_at_a_time(batching: RedisBudgetStore) -> None:
    counts, times, _, state = simulate(batching, {"alone": {"threads": 10, "demand": 50.0}}, seconds=5.0)
    assert busiest_window(times, 1.0) <= RATE
    assert counts["alone"] >= 0.97 * 4 * RATE / window_of(batching)
    assert state["alone"].calls <= len(times) / 10  # (one call per send without batches)


def test_a_task_with_a_lower_rate_gets_its_slots_at_its_own_spacing(batching: RedisBudgetStore) -> None:
    counts, _, _, state = simulate(batching, {"slow": {"threads": 10, "demand": 10.0}}, seconds=5.0)
    assert counts["slow"] >= 0.97 * 4 * 10
    assert state["slow"].calls <= counts["slow"] / 2


def test_at_long_latencies_connections_are_the_limit_and_shared_fairly(batching: RedisBudgetStore) -> None:
    tasks = {f"t{i}": {"threads": 10} for i in range(8)}
    counts, _, most_held, _ = simulate(batching, tasks, seconds=5.0, latency=0.6)
    assert most_held == CONNECTIONS
    assert sum(counts.values()) >= 0.9 * CONNECTIONS / 0.6 * 4
    assert min(counts.values()) / max(counts.values()) >= 0.6, counts


def test_a_task_that_wants_little_gets_it_and_the_others_share_the_rest(batching: RedisBudgetStore) -> None:
    tasks = {"small": {"threads": 10, "demand": 5.0}, "a": {"threads": 10}, "b": {"threads": 10}}
    counts, times, _, _ = simulate(batching, tasks, seconds=5.0)
    assert counts["small"] >= 0.95 * 5 * 4
    assert busiest_window(times, 1.0) <= RATE
    assert counts["a"] + counts["b"] + counts["small"] >= 0.97 * RATE * 4 / window_of(batching)
    assert min(counts["a"], counts["b"]) / max(counts["a"], counts["b"]) >= 0.8, counts


def test_a_task_with_few_threads_is_not_crowded_out(batching: RedisBudgetStore) -> None:
    tasks = {"one_thread": {"threads": 1}, "greedy": {"threads": 20}}
    counts, _, _, _ = simulate(batching, tasks, seconds=5.0, latency=0.02)
    assert counts["one_thread"] / counts["greedy"] >= 0.8, counts


def test_timings_can_be_shortened() -> None:
    timings = Timings(lease_ttl=2.0)
    assert timings.lease_ttl == 2.0 and timings.window == pytest.approx(1.01)
