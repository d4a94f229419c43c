"""The client-side rate limiter, on a fake clock: waits advance the clock instead of sleeping, so
these tests are exact and do not depend on the machine's speed."""

from __future__ import annotations

import itertools
import math
import threading

import pytest

from airflow_provider_chartmogul.client.ratelimit import WINDOW_MARGIN, LimiterCancelled, RateLimiter


class FakeClock:
    """A clock that only moves when a limiter waits (one thread) or when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float | None] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        self.waits.append(timeout)
        assert timeout is not None, "a lone caller never waits without a deadline"
        self.now += timeout


def limiter(rate: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(rate, clock=clock, wait=clock.wait)


def test_slots_are_evenly_spaced_with_no_burst() -> None:
    clock = FakeClock()
    rate_limiter = limiter(40, clock)
    sends = [rate_limiter.acquire() for _ in range(5)]
    step = (1 + WINDOW_MARGIN) / 40  # 40 a second plus the margin: even sends never fill a window
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps[1:] == pytest.approx([step] * 3)
    assert gaps[0] == pytest.approx(step, abs=0.006)  # the first may bank a late wake-up's worth


def test_a_rate_below_one_is_spaced_by_the_rate() -> None:
    clock = FakeClock()
    rate_limiter = limiter(0.5, clock)
    sends = [rate_limiter.acquire() for _ in range(3)]
    assert [b - a for a, b in itertools.pairwise(sends)] == pytest.approx([2.0, 2.0], abs=0.01)


def test_a_fractional_rate_sends_whole_requests_per_second() -> None:
    """2.5/s: a one-second window can hold two requests, not two and a half."""
    clock = FakeClock()
    rate_limiter = limiter(2.5, clock)
    sends = [rate_limiter.acquire() for _ in range(7)]
    for first in range(len(sends) - 2):
        assert sends[first + 2] - sends[first] >= 1.0


@pytest.mark.parametrize("rate", [39, 40, 25, 7.5])
def test_never_more_than_rate_in_any_one_second_window(rate: float) -> None:
    clock = FakeClock()
    rate_limiter = limiter(rate, clock)
    sends = []
    for index in range(400):
        if index % 37 == 0:
            clock.now += 0.013  # a thread that woke up late
        sends.append(rate_limiter.acquire())
    allowed = math.floor(rate)
    for first in range(len(sends) - allowed):
        assert sends[first + allowed] - sends[first] > 1.0


def test_a_late_wake_up_does_not_push_every_later_slot_back() -> None:
    class LateClock(FakeClock):
        def wait(self, event: threading.Event, timeout: float | None) -> None:
            super().wait(event, timeout)
            self.now += 0.004  # every thread wakes up a little late

    clock = LateClock()
    rate_limiter = limiter(20, clock)
    sends = [rate_limiter.acquire() for _ in range(20)]
    # 20 sends at 20/s: the late wake-ups are absorbed (not 19 x 4 ms later), the pace holds.
    assert sends[-1] - sends[0] == pytest.approx(19 * (1 + WINDOW_MARGIN) / 20, abs=0.006)


def test_idle_time_does_not_bank_a_burst() -> None:
    clock = FakeClock()
    rate_limiter = limiter(10, clock)
    rate_limiter.acquire()
    clock.now += 60
    sends = [rate_limiter.acquire() for _ in range(4)]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 0.095  # at most a late wake-up's worth banked
    assert sum(gaps) >= 0.295


def test_the_rate_follows_its_controller() -> None:
    clock = FakeClock()
    rate_limiter = limiter(40, clock)
    for _ in range(40):
        rate_limiter.acquire()
    assert rate_limiter.control.on_throttled(sent_at=clock.now, now=clock.now)
    cut = rate_limiter.rate
    assert cut < 40
    first = rate_limiter.acquire()
    second = rate_limiter.acquire()
    assert second - first == pytest.approx(1 / cut, rel=0.01)


def test_a_timed_out_wait_gives_up_without_a_slot() -> None:
    clock = FakeClock()
    rate_limiter = limiter(1, clock)
    rate_limiter.acquire()
    assert rate_limiter.acquire(timeout=0.2) is None
    assert rate_limiter.waiting == 0
    # The slot it did not take is still the next one.
    assert rate_limiter.acquire() is not None


def test_cancel_refuses_every_later_slot() -> None:
    clock = FakeClock()
    rate_limiter = limiter(5, clock)
    rate_limiter.acquire()
    rate_limiter.cancel()
    with pytest.raises(LimiterCancelled):
        rate_limiter.acquire()


def test_rate_must_be_positive_and_finite() -> None:
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive, finite"):
            RateLimiter(bad)


# ---- several threads: order and wake-ups, with a clock the test moves -----------------------------


class SteppedClock(FakeClock):
    """Waiters block on their events (a real wait, bounded so a lost wake-up fails the test rather
    than hanging it); time only moves when the test says so."""

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        event.wait(0.05 if timeout is not None else 5.0)


def _start(rate_limiter: RateLimiter, order: list[str], name: str, **kwargs: object) -> threading.Thread:
    def run() -> None:
        try:
            rate_limiter.acquire(**kwargs)  # type: ignore[arg-type]
            order.append(name)
        except LimiterCancelled:
            order.append(f"{name} cancelled")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(condition: object, what: str) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_priority_caller_goes_ahead_of_those_already_waiting() -> None:
    clock = SteppedClock()
    rate_limiter = RateLimiter(1, clock=clock, wait=clock.wait)
    rate_limiter.acquire()  # the next slot is a second away
    order: list[str] = []
    threads = [_start(rate_limiter, order, "write-1")]
    _until(lambda: rate_limiter.waiting == 1, "write-1 to wait")
    threads.append(_start(rate_limiter, order, "write-2"))
    _until(lambda: rate_limiter.waiting == 2, "write-2 to wait")
    threads.append(_start(rate_limiter, order, "page", priority=True))
    _until(lambda: rate_limiter.waiting == 3, "the page to wait")
    for _ in range(3):
        done = len(order)
        clock.now += 1.1
        _until(lambda: len(order) > done, "the next release")  # noqa: B023
    for thread in threads:
        thread.join(5)
    assert order == ["page", "write-1", "write-2"]


def test_cancel_wakes_every_waiter_at_once() -> None:
    clock = SteppedClock()
    rate_limiter = RateLimiter(1, clock=clock, wait=clock.wait)
    rate_limiter.acquire()
    order: list[str] = []
    threads = [_start(rate_limiter, order, f"w{n}") for n in range(3)]
    _until(lambda: rate_limiter.waiting == 3, "three waiters")
    rate_limiter.cancel()  # the clock does not move: only the cancel can release them
    for thread in threads:
        thread.join(5)
    assert sorted(order) == ["w0 cancelled", "w1 cancelled", "w2 cancelled"]
