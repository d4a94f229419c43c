"""The client-side rate limiter, on a fake clock (no sleeping, so these tests are exact)."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_chartmogul.ratelimit import WINDOW_MARGIN, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_slots_are_evenly_spaced_with_no_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(40, clock=clock, sleep=lambda s: None)
    waits = [limiter.acquire() for _ in range(5)]
    # 40 per second plus the margin, so that evenly spaced sends never fill a window.
    step = (1 + WINDOW_MARGIN) / 40
    assert waits == pytest.approx([0.0, step, 2 * step, 3 * step, 4 * step])


def test_a_rate_below_one_is_spaced_by_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0.0, 2.0, 2.0])


def test_a_fractional_rate_sends_whole_requests_per_second() -> None:
    """2.5/s: a one-second window can hold two requests, not two and a half."""
    clock = FakeClock()
    limiter = RateLimiter(2.5, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(4)] == pytest.approx([0.0] + [(1 + WINDOW_MARGIN) / 2] * 3)


def test_each_send_sleeps_once_when_no_one_is_late() -> None:
    """Every sleep costs CPU (about 0.1 ms on a VM): slots that a window check then moves again
    would cost a second sleep per request, and wake every waiting thread at the same instant."""
    clock = FakeClock()
    sleeps = {"n": 0}

    def sleep(seconds: float) -> None:
        sleeps["n"] += 1
        clock.sleep(seconds)

    limiter = RateLimiter(39, clock=clock, sleep=sleep)
    for _ in range(39):  # fill the window
        limiter.acquire()
    sleeps["n"] = 0
    for _ in range(200):
        limiter.acquire()
    assert sleeps["n"] == 200


def test_never_more_than_rate_in_any_one_second_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(39, clock=clock, sleep=clock.sleep)
    sends = []
    for _ in range(200):
        limiter.acquire()
        sends.append(clock.now)
    for i, start in enumerate(sends):
        in_window = sum(1 for t in sends[i:] if t < start + 1.0 - 1e-9)
        assert in_window <= 39


def test_idle_time_does_not_bank_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=lambda s: None)
    limiter.acquire()
    clock.now += 60
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx((1 + WINDOW_MARGIN) / 10)


def test_slow_down_halves_and_success_recovers_to_the_maximum() -> None:
    limiter = RateLimiter(40, recovery_per_success=2)
    limiter.slow_down()
    assert limiter.rate == 20
    limiter.slow_down(pause=0.5)
    assert limiter.rate == 10
    for _ in range(100):
        limiter.record_success()
    assert limiter.rate == 40
    assert limiter.slow_downs == 2


def test_slow_down_has_a_floor() -> None:
    limiter = RateLimiter(40, min_rate=5)
    for _ in range(20):
        limiter.slow_down()
    assert limiter.rate == 5


def test_pause_holds_every_sender() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=lambda s: None)
    limiter.slow_down(factor=1.0, pause=2.0)
    assert limiter.acquire() == pytest.approx(2.0)


def test_threads_share_the_rate_in_real_time() -> None:
    limiter = RateLimiter(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 80 slots at 50/s: the last one cannot come before 79 / 50 s.
    assert max(stamps) - started >= 79 / 50 - 0.01
    assert len(stamps) == 80


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


def test_a_late_wake_up_cannot_crowd_a_window() -> None:
    """One sender wakes 50 ms late; evenly spaced slots alone would then put 11 sends at 10/s in
    one second. The window of actual send times holds the later ones back."""
    clock = FakeClock()
    calls = {"n": 0}

    def oversleeping(seconds: float) -> None:
        calls["n"] += 1
        clock.sleep(seconds + (0.05 if calls["n"] == 1 else 0.0))

    limiter = RateLimiter(10, clock=clock, sleep=oversleeping)
    sends = []
    for _ in range(40):
        limiter.acquire()
        sends.append(clock.now)
    for i, start in enumerate(sends):
        assert sum(1 for t in sends[i:] if t < start + 1.0 + 1e-9) <= 10
    # The late send is known when later requests take their slots: none has to sleep twice.
    assert calls["n"] <= 40


def test_a_request_written_late_holds_the_one_a_window_after_it() -> None:
    """A thread stalls 0.3 s between its release and writing its request (another thread's work,
    a garbage collection): the request a window later is timed from the write, not the release."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    first = limiter.acquire_slot()
    clock.now += 0.3
    limiter.mark_written(first)
    written = clock.now
    for _ in range(9):
        limiter.acquire()
    assert clock.now < written + 1.0
    limiter.acquire()  # the 11th request: ten places after the first
    assert clock.now >= written + 1.0 + WINDOW_MARGIN - 1e-9


def test_answers_to_requests_sent_before_a_cut_do_not_cut_again() -> None:
    clock = FakeClock()
    limiter = RateLimiter(40, clock=clock, sleep=clock.sleep)
    in_flight = [clock.now] * 4  # four requests sent together, all answered 429
    clock.now += 0.1
    for sent_at in in_flight:
        limiter.slow_down(sent_at=sent_at)
    assert limiter.rate == 20
    assert limiter.slow_downs == 1
    clock.now += 0.1
    limiter.slow_down(sent_at=clock.now)  # a request sent after the cut: a new congestion
    assert limiter.rate == 10
