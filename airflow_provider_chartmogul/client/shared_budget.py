"""One task's side of the account-wide request budget: its threads take send slots and connection
leases from a budget store (Redis) one at a time, keep their leases renewed, and go on with a
conservative in-process limit when the store fails. The rules are in docs/shared-budget.md."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from airflow_provider_chartmogul.client.budget_store import Decision
from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.client.send_control import SendCancelled
from airflow_provider_chartmogul.exceptions import shorten

# The budget's name holds a one-way digest of the key, never the key: a fixed HMAC key makes the
# digest useless anywhere else, and 16 hex digits (64 bits) keep two accounts apart.
_NAME_HMAC_KEY = b"airflow-provider-chartmogul/shared-budget/v1"
NAME_DIGEST_CHARS = 16
# Longest pause between two questions to the store, so a task notices others leaving; a task
# waiting below its share is owed a slot only while it keeps asking (budget_store.Timings.waiting_ttl
# is longer than this).
MAX_POLL = 0.2
# A connection comes back when an answer does, at no time the store can tell: poll, from this
# fast to MAX_LEASE_POLL.
FIRST_LEASE_POLL = 0.002
MAX_LEASE_POLL = 0.02
RENEW_EVERY = 1.0
# A released lease goes back with the task's next question to the store, or at the background
# thread's next tick (this often), whichever comes first: one round trip per request instead of
# two. When connections are scarce (a task was refused one, or most are held) it goes back at once.
RELEASE_DELAY = 0.1
SCARCE = 0.75
# When the store fails, each task assumes at least this many tasks share the account.
FALLBACK_TASKS = 4

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from airflow_provider_chartmogul.client.classify import Classified
    from airflow_provider_chartmogul.client.send_control import Ticket


class BudgetStore(Protocol):
    """What :class:`SharedBudget` needs of a store (``budget_store.RedisBudgetStore``)."""

    name: str

    def acquire(
        self, task: str, lease: str, *, per_window: int, connections: int, released: list[str]
    ) -> Decision: ...
    def renew(self, task: str, leases: list[str]) -> int: ...
    def release(self, task: str, leases: list[str]) -> None: ...
    def leave(self, task: str, leases: list[str]) -> None: ...


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


class Lease:
    """A send slot and its connection, given back once by :meth:`release`; ``id`` is ``None`` when
    it came from the in-process limit."""

    __slots__ = ("_budget", "_released", "id")

    def __init__(self, budget: SharedBudget, lease_id: str | None) -> None:
        self._budget = budget
        self._released = False
        self.id = lease_id

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget.release(self)


def _wait(event: threading.Event, timeout: float | None) -> None:
    event.wait(timeout)


class SharedBudget:
    """The budget as one task sees it: a gate of the engine's send control (``SendGate``, see
    docs/flow-control.md). Thread-safe; one thread at a time asks the store.

    :param store: where the budget lives (a ``RedisBudgetStore``).
    :param limits: the account-wide limits.
    :param errors: the exceptions that mean the store failed (redis-py's ``RedisError``,
        ``OSError``); on the first, the task goes on with the in-process limit for the rest of its
        run, and says so once in the log and in :meth:`status`.
    :param where: names the store in the log (e.g. ``Redis connection 'budget_redis'``).
    :param clock: seconds, monotonic; ``wait`` blocks on an event for at most a timeout (both
        injected in tests).
    :param renew_every: seconds between lease renewals on a thread of its own, which also gives
        back released leases no question to the store took along; ``None``: no thread, the caller
        calls :meth:`renew` and :meth:`flush` (tests).
    """

    def __init__(
        self,
        store: BudgetStore,
        limits: BudgetLimits,
        *,
        errors: tuple[type[BaseException], ...] = (OSError,),
        where: str = "the budget store",
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float | None], None] = _wait,
        renew_every: float | None = RENEW_EVERY,
        logger: Any = None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.task = uuid.uuid4().hex[:12]
        self._errors = errors
        self._where = where
        self._clock = clock
        self._wait = wait
        self._renew_every = renew_every
        self._log = logger or log
        self._started = clock()
        self._ids = itertools.count(1)
        self._turn = threading.Lock()
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._released: list[str] = []
        self._released_since = 0.0
        self._scarce = False
        self._release_due = threading.Event()
        self._cancelled = threading.Event()
        self._closed = threading.Event()
        self._renewer: threading.Thread | None = None
        self._tasks_seen = 0
        self._waited = 0.0
        self._fallback: dict[str, Any] | None = None
        self._fallback_rate: RateLimiter | None = None
        self._fallback_slots: ConcurrencyLimit | None = None

    # ---- taking and giving back --------------------------------------------------------------------

    def acquire(self, *, priority: bool = False, timeout: float | None = None) -> Lease | None:
        """Block until this task may send one request; its lease, or ``None`` when none came within
        ``timeout`` seconds. ``priority`` changes nothing here: the task's own rate limiter, just
        before, already let its listing pages go first.

        :raises SendCancelled: :meth:`cancel` was called, before or during the wait.
        """
        if self._cancelled.is_set():
            raise SendCancelled
        give_up = None if timeout is None else self._clock() + timeout
        if self._fallback is None:
            if not self._turn.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                return None
            try:
                lease = self._ask_store(give_up)
            finally:
                self._turn.release()
            if not isinstance(lease, bool):
                return lease
        return self._acquire_in_process(give_up)

    def _ask_store(self, give_up: float | None) -> Lease | Literal[False] | None:
        """A lease from the store, ``None`` at ``give_up``, ``False`` when the store failed."""
        self._start_renewing()
        lease_poll = FIRST_LEASE_POLL
        started = self._clock()
        try:
            while True:
                if self._cancelled.is_set():
                    raise SendCancelled
                if self._fallback is not None:
                    return False
                lease_id = f"{self.task}:{next(self._ids)}"
                with self._lock:
                    released, self._released = self._released, []
                try:
                    decision = self.store.acquire(
                        self.task,
                        lease_id,
                        per_window=self.limits.per_window,
                        connections=self.limits.leases,
                        released=released,
                    )
                except self._errors as exc:
                    self._fall_back(exc)
                    return False
                self._tasks_seen = max(self._tasks_seen, decision.active)
                self._scarce = (not decision.admitted and decision.wait == 0) or (
                    decision.held + 1 >= SCARCE * self.limits.leases
                )
                if decision.admitted:
                    with self._lock:
                        self._held.add(lease_id)
                    return Lease(self, lease_id)
                if decision.wait > 0:
                    pause = min(decision.wait, MAX_POLL)
                else:
                    pause, lease_poll = lease_poll, min(2 * lease_poll, MAX_LEASE_POLL)
                now = self._clock()
                if give_up is not None:
                    if now >= give_up:
                        return None
                    pause = min(pause, give_up - now)
                self._wait(self._cancelled, pause)
        finally:
            self._waited += self._clock() - started

    def _acquire_in_process(self, give_up: float | None) -> Lease | None:
        slots, rate = self._fallback_slots, self._fallback_rate
        assert slots is not None and rate is not None
        left = None if give_up is None else max(0.0, give_up - self._clock())
        if not slots.acquire(timeout=left):
            if self._cancelled.is_set():
                raise SendCancelled
            return None
        try:
            left = None if give_up is None else max(0.0, give_up - self._clock())
            if rate.acquire(timeout=left) is None:
                slots.release(sent=False)
                return None
        except SendCancelled:
            slots.release(sent=False)
            raise
        slots.sending()
        return Lease(self, None)

    def release(self, lease: Lease) -> None:
        """The lease's request is over (answered, failed, or never sent); :meth:`Lease.release`
        calls it once."""
        if lease.id is None:
            if self._fallback_slots is not None:
                self._fallback_slots.release()
            return
        with self._lock:
            self._held.discard(lease.id)
            if self._fallback is not None:
                return  # the store failed: the lease expires there on its own
            if not self._released:
                self._released_since = self._clock()
            self._released.append(lease.id)
        if self._scarce:
            self._release_due.set()

    def flush(self, *, older_than: float = 0.0) -> None:
        """Give back the released leases that no question to the store took along yet (only if
        the first of them was released at least ``older_than`` seconds ago)."""
        with self._lock:
            if not self._released or self._clock() - self._released_since < older_than:
                return
            released, self._released = self._released, []
        if not released or self._fallback is not None:
            return
        try:
            self.store.release(self.task, released)
        except self._errors as exc:
            self._fall_back(exc)

    def on_answer(self, ticket: Ticket, outcome: Classified, now: float) -> None:
        """Nothing: a 429 or a crowded 503 slows this task down through its own flow control (the
        second line); the budget's limits stay as configured."""

    # ---- the store's health ------------------------------------------------------------------------

    def _fall_back(self, exc: BaseException) -> None:
        with self._lock:
            if self._fallback is not None:
                return
            tasks = max(FALLBACK_TASKS, self._tasks_seen)
            rate = self.limits.per_window / tasks
            connections = max(1, self.limits.leases // tasks)
            reason = shorten(f"{type(exc).__name__}: {exc}", 300, quote=False)
            self._fallback_rate = RateLimiter(rate, clock=self._clock, wait=self._wait)
            self._fallback_slots = ConcurrencyLimit(connections)
            if self._cancelled.is_set():
                self._fallback_rate.cancel()
                self._fallback_slots.cancel()
            self._fallback = {
                "reason": reason,
                "after_seconds": round(self._clock() - self._started, 3),
                "requests_per_second": round(rate, 3),
                "connections": connections,
            }
        self._log.warning(
            "Shared request budget unavailable (%s: %s): this task goes on with its in-process "
            "flow control at %.2f requests/s over %d connections (the budget's %d/s and %d "
            "connections shared by at least %d tasks) for the rest of its run",
            self._where,
            reason,
            rate,
            connections,
            self.limits.per_window,
            self.limits.leases,
            tasks,
        )

    @property
    def degraded(self) -> bool:
        """Whether the store failed and the in-process limit took over."""
        return self._fallback is not None

    def renew(self) -> None:
        """Keep this task present and its leases held (the renewing thread calls it every second)."""
        if self._fallback is not None:
            return
        with self._lock:
            held = sorted(self._held)
        try:
            self.store.renew(self.task, held)
        except self._errors as exc:
            self._fall_back(exc)

    def _start_renewing(self) -> None:
        if self._renew_every is None or self._renewer is not None:
            return
        with self._lock:
            if self._renewer is not None:
                return
            self._renewer = threading.Thread(
                target=self._keep_renewing, name=f"chartmogul-budget-{self.task}", daemon=True
            )
            self._renewer.start()

    def _keep_renewing(self) -> None:
        assert self._renew_every is not None
        renew_at = self._clock() + self._renew_every
        while not self._closed.is_set() and self._fallback is None:
            scarce = self._release_due.wait(RELEASE_DELAY)
            self._release_due.clear()
            self.flush(older_than=0.0 if scarce else RELEASE_DELAY)
            if self._clock() >= renew_at:
                self.renew()
                renew_at = self._clock() + self._renew_every

    # ---- stopping --------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Wake every waiter and refuse every later :meth:`acquire` (the task was stopped)."""
        self._cancelled.set()
        with self._lock:
            if self._fallback_rate is not None and self._fallback_slots is not None:
                self._fallback_rate.cancel()
                self._fallback_slots.cancel()

    def close(self) -> None:
        """Leave the budget: this task's leases and its place in the fair shares go at once."""
        self._closed.set()
        self._release_due.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        with self._lock:
            held, self._held = sorted(self._held) + self._released, set()
            self._released = []
        if self._fallback is None and (held or self._renewer is not None):
            with contextlib.suppress(*self._errors):  # what it held expires on its own
                self.store.leave(self.task, held)

    def status(self) -> dict[str, Any]:
        """For the run's report: the budget, and whether the task had to do without it."""
        return {
            "name": self.store.name,
            "where": self._where,
            "requests_per_second": self.limits.per_window,
            "connections": self.limits.leases,
            "reserve": self.limits.reserve,
            "tasks_seen": self._tasks_seen,
            "waited_seconds": round(self._waited, 3),
            "state": "in-process" if self._fallback is not None else "shared",
            "fallback": dict(self._fallback) if self._fallback is not None else None,
        }
