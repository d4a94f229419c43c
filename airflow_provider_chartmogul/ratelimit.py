"""A smooth, adaptive, thread-safe client-side rate limiter.

Why not a library: the rate-limiting libraries on PyPI (pyrate-limiter, limits, ratelimit) count
requests in windows, so they let a whole window's allowance out at once and then stall; they also
take whole-millisecond intervals and cannot change their rate while running. ChartMogul counts every
request of an account against 40/s, and other integrations may share that budget, so this limiter

* spaces requests evenly (a generic cell-rate algorithm with no burst);
* also keeps the last ``floor(rate)`` actual send times and holds a request until the window they
  span is at least one second plus a small margin: a thread that woke up late cannot line up with
  the next ones, so no one-second window, as the server sees it, holds more than ``rate``
  requests;
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
        self._sent: deque[float] = deque(maxlen=max(1, math.floor(self.max_rate)))
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._last_cut = float("-inf")
        self.total_wait = 0.0
        self.slow_downs = 0

    @property
    def rate(self) -> float:
        """The rate in force now (below ``max_rate`` after a slow-down)."""
        return self._rate

    def now(self) -> float:
        """This limiter's clock."""
        return self._clock()

    def acquire(self) -> float:
        """Block until this caller may send; return the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self._rate
        waited = 0.0
        while True:
            if slot > now:
                self._sleep(slot - now)
                waited += slot - now
            with self._lock:
                now = self._clock()
                window_full = len(self._sent) == self._sent.maxlen and self.max_rate >= 1
                if window_full and now < self._sent[0] + 1.0 + WINDOW_MARGIN:
                    # Judged on actual send times, which a late wake-up shifts.
                    slot = self._sent[0] + 1.0 + WINDOW_MARGIN
                    continue
                self._sent.append(now)
                self.total_wait += waited
                return waited

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
