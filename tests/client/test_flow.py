"""Flow control on a fake clock: the send rate on 429s, the concurrency cap on 503s, the retry
quota and the circuit breaker, and simulated accounts shared by several clients."""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from airflow_provider_chartmogul.client.flow import (
    AdaptiveRate,
    BreakerVerdict,
    CircuitBreaker,
    ConcurrencyLimit,
    RetryQuota,
)

# ---- AdaptiveRate ---------------------------------------------------------------------------------


def sent(rate: AdaptiveRate, per_second: float, seconds: float, start: float = 0.0) -> float:
    now = start
    while now < start + seconds:
        rate.on_send(now)
        now += 1 / per_second
    return now


def test_a_429_cuts_the_rate_to_a_share_of_what_was_sent() -> None:
    rate = AdaptiveRate(39)
    now = sent(rate, 30, 2.0)  # demand below the configured rate: the cut starts from what went out
    assert rate.on_throttled(sent_at=now, now=now)
    assert rate.rate == pytest.approx(30 * 0.8, rel=0.05)


def test_429s_to_requests_sent_before_the_cut_cut_once() -> None:
    rate = AdaptiveRate(39)
    now = sent(rate, 39, 1.0)
    assert rate.on_throttled(sent_at=now - 0.1, now=now)
    after_first = rate.rate
    for late in range(5):
        assert not rate.on_throttled(sent_at=now - 0.05, now=now + 0.01 * late)
    assert rate.rate == after_first
    assert rate.on_throttled(sent_at=now + 0.5, now=now + 0.6)  # sent after the cut: a new episode
    assert rate.rate < after_first


def test_the_rate_climbs_back_flattens_below_the_throttled_rate_then_probes() -> None:
    rate = AdaptiveRate(39)
    now = sent(rate, 20, 2.0)
    rate.on_throttled(sent_at=now, now=now)
    curve = {}
    for tenth in range(0, 600):
        rate.on_success(now + tenth / 10)
        curve[tenth / 10] = rate.rate
    throttled = curve[0.0] / 0.8  # what was being sent when the 429 came (about 20/s)
    assert throttled == pytest.approx(20, abs=1.5)
    assert curve[1.0] > curve[0.0] + 0.5  # climbs at once
    plateau = curve[5.5]
    assert 0.85 * throttled < plateau < 0.95 * throttled  # a little below the throttled rate
    assert all(abs(curve[t] - plateau) < 0.3 for t in (4.5, 5.0, 6.0, 6.5, 7.0))  # flat near it
    assert curve[16.0] > plateau + 1  # then probes above it
    assert curve[59.9] == 39  # and gets back to the configured rate when nothing throttles


def test_the_curve_has_one_shape_at_every_share() -> None:
    """Relative to where it was cut, a task with a small share of the account climbs and probes
    as one with a large share does: N tasks with 1/N each move together as one task would."""
    shapes = []
    for per_second in (10, 30):
        rate = AdaptiveRate(39)
        now = sent(rate, per_second, 2.0, start=0.001)
        rate.on_send(now)
        rate.on_throttled(sent_at=now, now=now + 0.15)
        cut = rate.rate
        shape = []
        for second in (1, 3, 6, 10, 15):
            rate.on_success(now + 0.15 + second)
            shape.append(rate.rate / cut)
        shapes.append(shape)
    assert shapes[0] == pytest.approx(shapes[1], rel=1e-9)
    assert shapes[0][-1] > shapes[0][0] > 1


def test_a_cut_goes_to_the_share_of_the_window_the_account_let_through() -> None:
    """Sent at 30/s; the account let the first 12 through whatever it answered them (a 503 for too
    many connections takes a place in its window too), then answered 429, 150 ms later."""
    rate = AdaptiveRate(39)
    sends = [i / 30 for i in range(17)]
    for at in sends:
        rate.on_send(at)
    assert rate.on_throttled(sent_at=sends[12], now=sends[12] + 0.15)
    assert rate.rate == pytest.approx(12)  # not 0.8 x 17 sent in the last second


def test_successes_never_exceed_the_configured_rate_or_cut() -> None:
    rate = AdaptiveRate(10)
    for now in range(100):
        rate.on_success(float(now))
    assert rate.rate == 10


def test_a_cut_has_a_floor() -> None:
    rate = AdaptiveRate(39, min_rate=2)
    now = 0.0
    for _ in range(30):
        now += 1
        rate.on_send(now)
        rate.on_throttled(sent_at=now, now=now)
    assert rate.rate == 2


# ---- simulated accounts ---------------------------------------------------------------------------


@dataclass
class Account:
    """ChartMogul's rate limit: at most ``limit`` admitted requests in any one-second window."""

    limit: int = 40
    admitted: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> bool:
        while self.admitted and self.admitted[0] <= now - 1.0:
            self.admitted.popleft()
        if len(self.admitted) >= self.limit:
            return False
        self.admitted.append(now)
        return True


def simulate(clients: int, steady_other: float = 0.0, seconds: float = 120.0, seed: int = 7) -> dict:
    """``clients`` adaptive clients with endless work, plus a client sending ``steady_other``
    requests per second that never adapts; 150 ms latency. Per client: sent/s, ok/s, 429 share."""
    rnd = random.Random(seed)
    account = Account()
    rates = [AdaptiveRate(39) for _ in range(clients)]
    events: list[tuple[float, int, str, object, float, bool]] = []
    order = 0

    def push(at: float, kind: str, who: object, sent_at: float = 0.0, ok: bool = True) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, who, sent_at, ok))

    for index in range(clients):
        push(rnd.uniform(0, 0.02), "send", index)
    if steady_other:
        push(0.001, "send", "other")
    counts = {who: [0, 0] for who in [*range(clients), "other"]}
    while events:
        now, _, kind, who, sent_at, ok = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "send":
            admitted = account.admit(now)
            counts[who][0] += 1
            counts[who][1] += not admitted
            if who == "other":
                push(now + 1 / steady_other + rnd.uniform(-0.002, 0.002), "send", who)
            else:
                rate = rates[who]  # type: ignore[index]
                rate.on_send(now)
                push(now + 0.15 + rnd.uniform(0, 0.01), "answer", who, now, admitted)
                push(max(now + 1 / rate.rate, rate.hold_until), "send", who)
        elif ok:
            rates[who].on_success(now)  # type: ignore[index]
        else:
            rates[who].on_throttled(sent_at, now)  # type: ignore[index]
    return {
        who: {"sent": n / seconds, "ok": (n - rejected) / seconds, "429": rejected / max(n, 1)}
        for who, (n, rejected) in counts.items()
        if n
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alone_it_sends_at_the_configured_rate_with_no_429(seed: int) -> None:
    result = simulate(1, seed=seed)
    assert result[0]["ok"] == pytest.approx(39, abs=0.2)
    assert result[0]["429"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_shares_an_account_with_a_steady_client_and_few_429s_for_either(seed: int) -> None:
    result = simulate(1, steady_other=20, seed=seed)
    assert result[0]["ok"] >= 17.5
    assert result[0]["429"] <= 0.025
    assert result["other"]["429"] <= 0.025


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_tasks_on_one_account_use_it_fairly_with_few_429s(seed: int) -> None:
    result = simulate(2, seed=seed)
    together = result[0]["ok"] + result[1]["ok"]
    assert together >= 0.9 * 40
    assert max(result[0]["429"], result[1]["429"]) <= 0.025
    assert min(result[0]["ok"], result[1]["ok"]) >= 0.35 * together  # neither starves


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eight_tasks_on_one_account_get_few_429s_and_none_starves(seed: int) -> None:
    """With the curve in requests per second (TCP CUBIC's), 8 tasks probed the account 8 times as
    fast as one and 7 % of their requests were answered 429."""
    tasks = 8
    result = simulate(tasks, seed=seed)
    ok = [result[i]["ok"] for i in range(tasks)]
    sent_per_second = [result[i]["sent"] for i in range(tasks)]
    throttled = sum(result[i]["sent"] * result[i]["429"] for i in range(tasks)) / sum(sent_per_second)
    assert sum(ok) >= 0.9 * 40
    assert throttled <= 0.05
    assert min(ok) >= 0.4 * sum(ok) / tasks  # none starves


# ---- ConcurrencyLimit -----------------------------------------------------------------------------


def test_a_crowded_503_halves_the_cap_and_successes_win_it_back_quickly() -> None:
    limit = ConcurrencyLimit(20)
    assert all(limit.acquire(timeout=0) for _ in range(16))
    assert [limit.sending() for _ in range(16)][-1] == 16
    assert limit.is_crowded(16)
    assert limit.on_too_many(sent_at=1.0, in_flight_at_send=16)
    assert limit.limit == 8
    assert not limit.on_too_many(sent_at=0.9, in_flight_at_send=16)  # same episode
    for _ in range(16):
        limit.release()
    for n in range(24):
        limit.on_success(2.0 + n)
    assert limit.limit == 20


def test_a_503_with_few_in_flight_is_not_congestion() -> None:
    limit = ConcurrencyLimit(20)
    assert not limit.is_crowded(2)
    assert limit.is_crowded(5)


def test_acquire_waits_for_the_cap_and_cancel_wakes_it() -> None:
    limit = ConcurrencyLimit(1)
    assert limit.acquire(timeout=0)
    assert not limit.acquire(timeout=0)
    limit.release(sent=False)
    assert limit.acquire(timeout=0)
    limit.cancel()
    assert not limit.acquire()


def test_only_requests_on_the_wire_count_as_crowding() -> None:
    limit = ConcurrencyLimit(10)
    for _ in range(10):
        limit.acquire(timeout=0)  # ten threads hold slots, waiting for the rate limiter
    assert limit.sending() == 1  # one of them sends: ChartMogul sees one connection
    assert not limit.is_crowded(1)


# ---- RetryQuota -----------------------------------------------------------------------------------


def test_the_retry_quota_empties_under_failures_and_refills_on_successes() -> None:
    quota = RetryQuota(capacity=20, retry_cost=5, timeout_cost=10)
    assert quota.take() == 5
    assert quota.take(timeout=True) == 10
    assert quota.take() == 5
    assert quota.take() is None and quota.refused == 1
    quota.on_success(spent=5)  # a retried request that succeeded gives its retry back
    assert quota.tokens == 5
    quota.on_success(spent=0)  # one that needed no retry earns a token
    assert quota.tokens == 6


def test_one_failure_in_five_is_sustainable() -> None:
    quota = RetryQuota()
    rnd = random.Random(3)
    refused = 0
    for _ in range(20_000):
        spent = 0
        while rnd.random() < 0.2:
            cost = quota.take()
            if cost is None:
                refused += 1
                break
            spent += cost
        else:
            quota.on_success(spent)
    assert refused == 0


# ---- CircuitBreaker -------------------------------------------------------------------------------


def test_connection_failures_open_it_after_enough_of_them_and_silence() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=10, started=0.0)
    for n in range(9):
        verdict = breaker.on_failure(
            20.0 + n, "no answer (ConnectionRefusedError)", path=f"/c{n}", connection=True
        )
        assert verdict is BreakerVerdict.CLOSED
    assert breaker.on_failure(30.0, "no answer", path="/c9", connection=True) is BreakerVerdict.OPEN
    assert breaker.is_open and breaker.last_failure == "no answer"


def test_quick_connection_failures_do_not_open_it_before_the_silence() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=10, started=0.0)
    for n in range(100):
        assert breaker.on_failure(n * 0.05, "no answer", path="/p", connection=True) is BreakerVerdict.CLOSED
    assert breaker.on_failure(10.0, "no answer", path="/p", connection=True) is BreakerVerdict.OPEN


def test_the_same_few_customers_failing_again_and_again_never_open_it_while_ping_answers() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=10, many_paths=50, started=0.0)
    probes = 0
    for n in range(600):  # 3 customers answering 500 for ten minutes, nothing else sent
        verdict = breaker.on_failure(float(n), "HTTP 500", path=f"/v1/customers/cus_{n % 3}")
        assert verdict is not BreakerVerdict.OPEN
        if verdict is BreakerVerdict.PROBE:
            probes += 1
            assert not breaker.on_probe(float(n) + 0.5, alive=True)
    assert not breaker.is_open
    assert 50 <= probes <= 60  # at most one probe per open_after


def test_a_failed_probe_opens_it() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=10, started=0.0)
    verdicts = [breaker.on_failure(1.0 + n, "HTTP 500", path="/v1/customers/cus_1") for n in range(12)]
    assert verdicts.count(BreakerVerdict.PROBE) == 1
    # while the probe is out, no second one is asked for
    assert breaker.on_failure(13.5, "HTTP 500", path="/v1/customers/cus_1") is BreakerVerdict.CLOSED
    assert breaker.on_probe(14.0, alive=False, what="ping: HTTP 500")
    assert breaker.is_open and breaker.last_failure == "ping: HTTP 500"


def test_failures_over_many_distinct_customers_open_it_whatever_the_probe_says() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=10, many_paths=50, started=0.0)
    for n in range(49):
        verdict = breaker.on_failure(11.0 + n * 0.01, "HTTP 500", path=f"/v1/customers/cus_{n}")
        if verdict is BreakerVerdict.PROBE:
            breaker.on_probe(11.0, alive=True)
        assert not breaker.is_open
    assert breaker.on_failure(12.0, "HTTP 500", path="/v1/customers/cus_49") is BreakerVerdict.OPEN


def test_a_success_resets_it() -> None:
    breaker = CircuitBreaker(open_after=10, min_failures=3, started=0.0)
    for n in range(50):
        breaker.on_failure(float(n), "HTTP 503", path=f"/p{n}", connection=True)
        if n % 2:
            breaker.on_success(float(n))
    assert not breaker.is_open
