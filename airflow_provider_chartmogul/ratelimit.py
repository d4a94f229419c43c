"""A smooth, adaptive, thread-safe client-side rate limiter.

Why not a library: the rate-limiting libraries on PyPI (pyrate-limiter, limits, ratelimit) count
requests in windows, so they let a whole window's allowance out at once and then stall; they also
take whole-millisecond intervals and cannot change their rate while running. ChartMogul counts every
request of an account against 40/s, and other integrations may share that budget, so this limiter

* spaces requests evenly (a generic cell-rate algorithm with no burst), ``floor(rate)`` of them
  per second plus a small margin, so that in the usual case no one-second window can hold more;
* also holds each request until at least one second plus that margin after the actual send of
  the request ``floor(rate)`` places before it. A thread that woke up late therefore cannot line
  up with the next ones: any ``floor(rate) + 1`` requests include two that are a multiple of
  ``floor(rate)`` places apart, hence over a second apart, so no one-second window, as the server
  sees it, holds more than ``rate`` requests. That earlier send is known when a request takes its
  slot, so each request sleeps once, and a send wakes no other thread (on a VM every wake-up costs
  about 0.1 ms of CPU);
* backs off multiplicatively when the API answers 429/503 and recovers additively as requests
  succeed (AIMD).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Room for the time between a send and its arrival at the server (thread wake-up, network).
WINDOW_MARGIN = 0.01
# Slots are sums of floats: a slot due exactly when the window opens may land a hair before it.
_ROUNDING = 1e-6


class Slot:
    """One request's place in line: its planned send time until it is released, then the time it
    went out (see :meth:`RateLimiter.mark_written`)."""

    __slots__ = ("at", "sent", "waited")

    def __init__(self, at: float) -> None:
        self.at = at
        self.sent = False
        self.waited = 0.0


class RateLimiter:
    """Hand out send slots spaced ``1 / rate`` seconds apart, to any number of threads.

    :param rate: the most requests per second, and the rate returned to after a slow-down.
    :param min_rate: the floor that :meth:`slow_down` never goes below.
    :param recovery_per_success: requests per second regained after each successful request.
    """

    def __init__(
        self,
        rate: float,
        *,
        min_rate: float | None = None,
        recovery_per_success: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.max_rate = float(rate)
        self.min_rate = float(min_rate) if min_rate is not None else max(0.5, self.max_rate / 20)
        self.recovery_per_success = (
            recovery_per_success if recovery_per_success is not None else self.max_rate / 50
        )
        self._rate = self.max_rate
        self._next_slot = 0.0
        # The last floor(rate) requests to take a slot, in the order they took it.
        size = max(1, math.floor(self.max_rate))
        self._window: deque[Slot] = deque(maxlen=size)
        self._windowed = self.max_rate >= 1
        self._window_interval = (1.0 + WINDOW_MARGIN) / size if self._windowed else 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._last_cut = float("-inf")
        self.slow_downs = 0

    @property
    def rate(self) -> float:
        """The rate in force now (below ``max_rate`` after a slow-down)."""
        return self._rate

    def acquire(self) -> float:
        """Block until this caller may send; return the seconds waited."""
        return self.acquire_slot().waited

    def acquire_slot(self) -> Slot:
        """Block until this caller may send; its :class:`Slot` (``waited`` says how long)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval()
            window = self._window
            earlier = window[0] if self._windowed and len(window) == window.maxlen else None
            if earlier is not None:
                slot = max(slot, earlier.at + 1.0 + WINDOW_MARGIN)
            mine = Slot(slot)
            window.append(mine)
        waited = 0.0
        while True:
            if slot > now:
                self._sleep(slot - now)
                waited += slot - now
            with self._lock:
                now = self._clock()
                if earlier is not None and not earlier.sent:
                    # Rare: the request floor(rate) places earlier has not gone yet (it woke up
                    # late, or more threads wait than a second holds). Look again shortly.
                    slot = max(now + self._interval(), earlier.at + 1.0 + WINDOW_MARGIN)
                    continue
                if earlier is not None and now < earlier.at + 1.0 + WINDOW_MARGIN - _ROUNDING:
                    slot = earlier.at + 1.0 + WINDOW_MARGIN  # it went out later than planned
                    continue
                mine.at = now
                mine.sent = True
                mine.waited = waited
                return mine

    def mark_written(self, slot: Slot) -> None:
        """The request has been handed to the network: time it from now, not from its release.

        A thread can stall between its release and the write (another thread's work, a garbage
        collection); the requests a window later then wait for the actual write.
        """
        slot.at = max(slot.at, self._clock())

    def _interval(self) -> float:
        """Seconds between slots: ``1 / rate``, and never so short that the window would bind."""
        return max(1.0 / self._rate, self._window_interval)

    def slow_down(self, factor: float = 0.5, pause: float = 0.0, *, sent_at: float | None = None) -> None:
        """The API pushed back (429/503): cut the rate, and optionally hold every sender ``pause`` s.

        :param sent_at: when the pushed-back request was sent (this limiter's clock). Answers to
            requests sent before the last cut belong to the same congestion and do not cut again,
            so a burst of 429s to requests already in flight halves the rate once, not each time.
        """
        with self._lock:
            if sent_at is not None and sent_at < self._last_cut:
                return
            self._rate = max(self.min_rate, self._rate * factor)
            now = self._clock()
            self._last_cut = now
            if pause > 0:
                self._next_slot = max(self._next_slot, now + pause)
            self.slow_downs += 1

    def record_success(self) -> None:
        """A request went through: regain a little of the rate lost to slow-downs."""
        if self._rate < self.max_rate:
            with self._lock:
                self._rate = min(self.max_rate, self._rate + self.recovery_per_success)
