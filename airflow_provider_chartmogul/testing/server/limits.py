"""The account's limits: requests per second (a sliding one-second window) and requests in flight."""

from __future__ import annotations

import bisect
from collections import deque
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.testing.server.replies import (
    TOO_MANY_PARALLEL_BODY,
    Reply,
    json_reply,
    rate_limit_reply,
)

if TYPE_CHECKING:
    from airflow_provider_chartmogul.testing.server.settings import Settings


class Limits:
    """Admits API requests or answers 429 / 503, and counts both. Not thread-safe (see the server)."""

    def __init__(self) -> None:
        # Arrival times of the requests admitted in the last second, ascending.
        self._window: deque[float] = deque()
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Forget the window and the counters (requests in flight stay in flight)."""
        self._window.clear()
        self.rate_limited = 0
        self.parallel_rejected = 0
        self.max_in_flight = self.in_flight

    def admit(self, arrived: float, settings: Settings) -> Reply | None:
        """None when the request may go on (it is then in flight: release() it), else the rejection."""
        if settings.rate_limit is not None:
            horizon = arrived - 1.0
            while self._window and self._window[0] <= horizon:
                self._window.popleft()
            if len(self._window) >= settings.rate_limit:
                self.rate_limited += 1
                return rate_limit_reply(settings.rate_limit_retry_after, "rate_limit")
            # Arrival times are taken before the server's lock, so they may come in slightly out of order.
            bisect.insort(self._window, arrived)
        if settings.max_parallel is not None and self.in_flight >= settings.max_parallel:
            self.parallel_rejected += 1
            return json_reply(503, TOO_MANY_PARALLEL_BODY, fault="max_parallel")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return None

    def release(self) -> None:
        """An admitted request has been answered (or dropped)."""
        self.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "rate_limited": self.rate_limited,
            "parallel_rejected": self.parallel_rejected,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
