"""A smooth, thread-safe client-side rate limiter with a priority lane and cancellation.

Why not a library: the rate-limiting libraries on PyPI (pyrate-limiter, limits, ratelimit) count
requests in windows, so they let a whole window's allowance out at once and then stall, cannot
change their rate while running, and have neither priorities nor a way to wake every waiter. How
this one spaces requests, and why no one-second window can hold more than ``rate`` of them, is in
docs/flow-control.md.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from airflow_provider_chartmogul.client.flow import AdaptiveRate
from airflow_provider_chartmogul.client.send_control import SendCancelled

# Room for the time between a release and its arrival at the server (thread wake-up, network).
WINDOW_MARGIN = 0.01
# How late a released thread may be without moving the slots after it.
LATE_WAKE_UP = 0.005
# Slots are sums of floats: a slot due exactly when the window opens may land a hair before it.
_ROUNDING = 1e-6


class LimiterCancelled(SendCancelled):
    """:meth:`RateLimiter.cancel` was called: no more slots are handed out."""


def _wait(event: threading.Event, timeout: float | None) -> None:
    event.wait(timeout)


class _Waiter:
    __slots__ = ("event", "gone")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.gone = False


class RateLimiter:
    """Hand out send slots spaced ``1 / rate`` seconds apart, to any number of threads, in order of
    priority and then of arrival.

    :param rate: the most requests per second; :attr:`control` lowers it on 429s and regains it.
    :param control: the adaptive rate (default: an ``AdaptiveRate`` of ``rate``).
    :param clock: seconds, monotonic (injected in tests).
    :param wait: blocks on an event for at most ``timeout`` seconds (injected in tests).
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float | None], None] = _wait,
        control: AdaptiveRate | None = None,
    ) -> None:
        if not 0 < rate < math.inf:
            raise ValueError(f"rate must be a positive, finite number, got {rate!r}")
        self.control = control if control is not None else AdaptiveRate(rate)
        self.max_rate = float(rate)
        size = max(1, math.floor(self.max_rate))
        # Release times of the last floor(rate) slots.
        self._window: deque[float] = deque(maxlen=size)
        self._windowed = self.max_rate >= 1
        # Never so short an interval that the window would bind in the usual case.
        self._window_interval = (1.0 + WINDOW_MARGIN) / size if self._windowed else 0.0
        self._next = -math.inf
        self._queue: list[tuple[int, int, _Waiter]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._clock = clock
        self._wait = wait
        self._cancelled = False

    @property
    def rate(self) -> float:
        """The rate in force now (below ``max_rate`` after 429s)."""
        return self.control.rate

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot."""
        with self._lock:
            return sum(1 for _, _, waiter in self._queue if not waiter.gone)

    def acquire(self, *, priority: bool = False, timeout: float | None = None) -> float | None:
        """Block until this caller may send; the release time (this limiter's clock), or ``None``
        when no slot came within ``timeout`` seconds.

        :param priority: go ahead of every caller without it (a page of the customer listing,
            which the writes after it wait for).
        :raises LimiterCancelled: :meth:`cancel` was called, before or during the wait.
        """
        waiter = _Waiter()
        with self._lock:
            if self._cancelled:
                raise LimiterCancelled
            give_up = None if timeout is None else self._clock() + timeout
            head = self._head()
            heapq.heappush(self._queue, (0 if priority else 1, next(self._order), waiter))
            if head is not None and self._head() is waiter:
                head.event.set()  # it sleeps until its slot: let it see it is no longer first
        while True:
            with self._lock:
                waiter.event.clear()
                if self._cancelled:
                    waiter.gone = True
                    raise LimiterCancelled
                now = self._clock()
                wait_for: float | None = None
                if self._head() is waiter:
                    due = self._due()
                    if now >= due - _ROUNDING:
                        heapq.heappop(self._queue)
                        self._take(now, due)
                        following = self._head()
                        if following is not None:
                            following.event.set()
                        return now
                    wait_for = due - now
                if give_up is not None:
                    if now >= give_up:
                        self._leave(waiter)
                        return None
                    wait_for = give_up - now if wait_for is None else min(wait_for, give_up - now)
            self._wait(waiter.event, wait_for)

    def cancel(self) -> None:
        """Wake every waiter and refuse every later :meth:`acquire` (the task was stopped)."""
        with self._lock:
            self._cancelled = True
            for _, _, waiter in self._queue:
                waiter.event.set()

    def _head(self) -> _Waiter | None:
        queue = self._queue
        while queue and queue[0][2].gone:
            heapq.heappop(queue)
        return queue[0][2] if queue else None

    def _leave(self, waiter: _Waiter) -> None:
        was_head = self._head() is waiter
        waiter.gone = True
        following = self._head()
        if was_head and following is not None:
            following.event.set()

    def _due(self) -> float:
        due = max(self._next, self.control.hold_until)
        window = self._window
        if self._windowed and len(window) == window.maxlen:
            due = max(due, window[0] + 1.0 + WINDOW_MARGIN)
        return due

    def _take(self, now: float, due: float) -> None:
        interval = max(1.0 / self.control.rate, self._window_interval)
        # A thread that woke up a little late does not push every later slot back; idle time banks
        # no more than that little.
        self._next = max(due, now - min(interval / 2, LATE_WAKE_UP)) + interval
        self._window.append(now)
        self.control.on_send(now)
