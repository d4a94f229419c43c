"""What one task keeps of the account-wide budget besides its calls to the store: the budget's
name and limits, what it needs of a store, the send slots it was granted, and the in-process limit
it goes on with when the store fails (docs/shared-budget.md)."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event
from typing import Protocol
from urllib.parse import urlsplit

from airflow_provider_chartmogul.client.budget_store import Decision, Timings
from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.client.send_control import SendCancelled

# The budget's name holds a one-way digest of the key, never the key: a fixed HMAC key makes the
# digest useless anywhere else, and 16 hex digits (64 bits) keep two accounts apart.
_NAME_HMAC_KEY = b"airflow-provider-chartmogul/shared-budget/v1"
NAME_DIGEST_CHARS = 16
# When the store fails, each task assumes at least this many tasks share the account.
FALLBACK_TASKS = 4


class BudgetStore(Protocol):
    """What ``SharedBudget`` needs of a store (``budget_store.RedisBudgetStore``)."""

    name: str
    timings: Timings

    def acquire(
        self,
        task: str,
        prefix: str,
        *,
        per_window: int,
        connections: int,
        slots: int,
        leases: int,
        has_slot: bool,
        has_lease: bool,
        spacing: float,
        released: list[str],
        unused: list[str],
    ) -> Decision: ...
    def renew(self, task: str, leases: list[str], *, give_back: list[str]) -> tuple[int, int]: ...
    def release(self, task: str, ids: list[str]) -> None: ...
    def leave(self, task: str, ids: list[str]) -> None: ...


def budget_name(base_url: str, api_key: str) -> str:
    """The default budget name: the API host and a one-way digest of the key, so every task of
    one account, and no other, shares it."""
    host = urlsplit(base_url).netloc or base_url
    digest = hmac.new(_NAME_HMAC_KEY, api_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{host}:{digest[:NAME_DIGEST_CHARS]}"


@dataclass(frozen=True)
class BudgetLimits:
    """The account-wide limits the tasks share.

    :param requests_per_second: the most requests in any one-second window, account-wide.
    :param connections: the most requests in flight at once, account-wide.
    :param reserve: the share of both (0 to 0.9) left to the account's other integrations.
    """

    requests_per_second: float
    connections: int
    reserve: float = 0.0

    @property
    def per_window(self) -> int:
        """Whole sends allowed in one window, the reserve taken off."""
        return max(1, math.floor(self.requests_per_second * (1 - self.reserve) + 1e-9))

    @property
    def leases(self) -> int:
        """Connections the tasks may hold together, the reserve taken off."""
        return max(1, math.floor(self.connections * (1 - self.reserve) + 1e-9))


@dataclass
class Slot:
    """A send slot the store granted: its id there, and when it may be sent in, on our clock."""

    id: str
    moment: float  # on the store's clock
    start: float
    end: float


class InProcessLimit:
    """The limit a task goes on with once the store failed: the budget divided among the larger
    of :data:`FALLBACK_TASKS` and ``tasks_seen`` tasks, its sends spaced evenly (never a burst to
    catch up), and as many connections."""

    def __init__(
        self,
        limits: BudgetLimits,
        tasks_seen: int,
        *,
        clock: Callable[[], float],
        wait: Callable[[Event, float | None], None],
    ) -> None:
        self.tasks = max(FALLBACK_TASKS, tasks_seen)
        self.rate = limits.per_window / self.tasks
        self.connections = max(1, limits.leases // self.tasks)
        self._clock = clock
        self._limiter = RateLimiter(self.rate, clock=clock, wait=wait)
        self._slots = ConcurrencyLimit(self.connections)

    def acquire(self, give_up: float | None, cancelled: Event) -> bool:
        """Block until a send may go (``False`` at ``give_up``).

        :raises SendCancelled: after :meth:`cancel`.
        """
        if not self._slots.acquire(timeout=self._left(give_up)):
            if cancelled.is_set():
                raise SendCancelled
            return False
        try:
            if self._limiter.acquire(timeout=self._left(give_up)) is None:
                self._slots.release(sent=False)
                return False
        except SendCancelled:
            self._slots.release(sent=False)
            raise
        self._slots.sending()
        return True

    def _left(self, give_up: float | None) -> float | None:
        return None if give_up is None else max(0.0, give_up - self._clock())

    def release(self) -> None:
        self._slots.release()

    def cancel(self) -> None:
        self._limiter.cancel()
        self._slots.cancel()
