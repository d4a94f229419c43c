"""One task's side of the account-wide request budget: its threads take send slots and connection
leases from a budget store (Redis), several per call while the task is alone on the budget, keep
their leases renewed, and go on with a conservative in-process limit when the store fails. The
rules are in docs/shared-budget.md."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_chartmogul.client.budget_local import (
    FALLBACK_TASKS,
    BudgetLimits,
    BudgetStore,
    InProcessLimit,
    Slot,
    budget_name,
)
from airflow_provider_chartmogul.client.budget_store import Decision
from airflow_provider_chartmogul.client.send_control import SendCancelled
from airflow_provider_chartmogul.exceptions import shorten

__all__ = ["FALLBACK_TASKS", "BudgetLimits", "BudgetStore", "Lease", "SharedBudget", "budget_name"]

# Longest pause between two questions to the store, so a task notices others leaving; a task
# waiting below its share is owed a slot only while it keeps asking (budget_store.Timings.waiting_ttl
# is longer than this).
MAX_POLL = 0.2
# A connection comes back when an answer does, at no time the store can tell: poll, from this
# fast to MAX_LEASE_POLL.
FIRST_LEASE_POLL = 0.002
MAX_LEASE_POLL = 0.02
RENEW_EVERY = 2.0
# While a task is alone on the budget, one call to the store takes up to this many send slots
# (spaced as the task's own requests come, within budget_store.Timings.horizon) and this many
# leases; a lease whose request is over stays with the task for its next one, and goes back after
# IDLE_KEEP seconds unused. Once another task is present, every call takes one of each, and a lease
# goes back as soon as its request is over (with the task's next call, or on the background thread
# at once), as the shares between tasks need.
SLOT_BATCH = 16
LEASE_BATCH = 4
IDLE_KEEP = 1.0
# Slots are asked for as far apart as the task's requests came lately when slots did not hold them
# back (the lower quartile of this many gaps; a request that waited for its slot counts 0, so a
# task held back by the budget asks for slots as close as the window allows).
GAPS = 8

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from airflow_provider_chartmogul.client.classify import Classified
    from airflow_provider_chartmogul.client.send_control import Ticket


class Lease:
    """A send slot and its connection, given back once by :meth:`release`; ``id`` (the
    connection lease's) is ``None`` when it came from the in-process limit, ``moment`` is the
    slot's on the store's clock (the send goes within ``Timings.slack`` of it)."""

    __slots__ = ("_budget", "_released", "id", "moment")

    def __init__(self, budget: SharedBudget, lease_id: str | None, moment: float | None = None) -> None:
        self._budget = budget
        self._released = False
        self.id = lease_id
        self.moment = moment

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
        self._held: set[str] = set()  # every lease of this task, in use or idle
        self._idle: list[tuple[str, float]] = []  # leases in no request, and since when
        self._slots: deque[Slot] = deque()  # slots granted and not yet sent in
        self._released: list[str] = []  # leases to give back
        self._unused: list[str] = []  # slots missed, to give back
        self._gaps: deque[float] = deque(maxlen=GAPS)
        self._last_arrival: float | None = None
        self._quiet = False  # the store's last word: this task is alone on the budget
        self._scarce = False
        self._release_due = threading.Event()
        self._cancelled = threading.Event()
        self._closed = threading.Event()
        self._renewer: threading.Thread | None = None
        self._tasks_seen = 0
        self._calls = 0
        self._waited = 0.0
        self._fallback: dict[str, Any] | None = None
        self._in_process: InProcessLimit | None = None

    # ---- taking and giving back --------------------------------------------------------------------

    def acquire(self, *, priority: bool = False, timeout: float | None = None) -> Lease | None:
        """Block until this task may send one request; its lease, or ``None`` when none came within
        ``timeout`` seconds. ``priority`` changes nothing here: the task's own rate limiter, just
        before, already let its listing pages go first.

        :raises SendCancelled: :meth:`cancel` was called, before or during the wait.
        """
        if self._cancelled.is_set():
            raise SendCancelled
        now = self._clock()
        give_up = None if timeout is None else now + timeout
        if self._fallback is None:
            lease = self._from_store(now, give_up)
            if not isinstance(lease, bool):
                return lease
        return self._acquire_in_process(give_up)

    def _from_store(self, arrived: float, give_up: float | None) -> Lease | Literal[False] | None:
        """A lease from the store, ``None`` at ``give_up``, ``False`` when the store failed. The
        slot is claimed with one thread at a time asking the store; its moment is waited for
        without, so the next thread claims the next slot meanwhile."""
        self._start_renewing()
        started = self._clock()
        try:
            while True:
                claimed = self._claim(give_up)
                if not isinstance(claimed, tuple):
                    return claimed
                pending: Slot | None = claimed[0]
                slot, lease_id, supply_bound = claimed
                try:
                    now = self._clock()
                    supply_bound = supply_bound or slot.start > arrived
                    while now < slot.start:
                        if self._cancelled.is_set():
                            raise SendCancelled
                        if give_up is not None and give_up < slot.start:
                            return None
                        self._wait(self._cancelled, slot.start - now)
                        now = self._clock()
                    if self._cancelled.is_set():
                        raise SendCancelled
                    if now <= slot.end:
                        self._demand(arrived, supply_bound)
                        pending = None
                        return Lease(self, lease_id, slot.moment)
                finally:
                    with self._lock:
                        if pending is not None:  # not sent in: the slot goes back, or is kept if early
                            if self._clock() > pending.end:
                                self._unused.append(pending.id)
                            else:
                                self._slots.appendleft(pending)
                            self._idle.append((lease_id, self._clock()))
        finally:
            self._waited += self._clock() - started

    def _demand(self, arrived: float, supply_bound: bool) -> None:
        """Learn how far apart this task's requests come when slots are not what holds them back
        (the gap is 0 when one waited for its slot: the task would go faster)."""
        with self._lock:
            gap = 0.0 if supply_bound or self._last_arrival is None else arrived - self._last_arrival
            self._last_arrival = arrived
            self._gaps.append(max(0.0, gap))

    def _claim(self, give_up: float | None) -> tuple[Slot, str, bool] | Literal[False] | None:
        """A slot and a lease for the calling thread (asking the store for what the task lacks), and
        whether the store made it wait; ``None`` at ``give_up``, ``False`` when the store failed."""
        if not self._turn.acquire(timeout=-1 if give_up is None else max(0.0, give_up - self._clock())):
            return None
        lease_poll = FIRST_LEASE_POLL
        slot: Slot | None = None
        lease_id: str | None = None
        waited = missed = False
        try:
            while True:
                if self._cancelled.is_set():
                    raise SendCancelled
                if self._fallback is not None:
                    return False
                now = self._clock()
                with self._lock:
                    while slot is None and self._slots:
                        slot = self._slots.popleft()
                        if now > slot.end:  # missed: it goes back unsent
                            self._unused.append(slot.id)
                            slot, missed = None, True
                    if lease_id is None and self._idle:
                        lease_id = self._idle.pop()[0]
                if slot is not None and lease_id is not None:
                    claimed, slot, lease_id = (slot, lease_id, waited and not missed), None, None
                    return claimed
                decision = self._ask(slot is not None, lease_id is not None)
                if decision is None:
                    return False
                taken = self._take(decision)
                slot = slot or taken[0]
                lease_id = lease_id or taken[1]
                if decision.admitted:
                    continue
                waited = True
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
            with self._lock:  # what was taken and not claimed goes back to the pool
                if slot is not None:
                    self._slots.appendleft(slot)
                if lease_id is not None:
                    self._idle.append((lease_id, self._clock()))
            self._turn.release()

    def _ask(self, has_slot: bool, has_lease: bool) -> Decision | None:
        """One question to the store, carrying what goes back; ``None`` when the store failed."""
        with self._lock:
            released, self._released = self._released, []
            unused, self._unused = self._unused, []
            gaps = sorted(self._gaps)
        spacing = gaps[len(gaps) // 4] if len(gaps) >= GAPS // 2 else 0.0
        self._calls += 1
        try:
            return self.store.acquire(
                self.task,
                f"{self.task}:{next(self._ids)}",
                per_window=self.limits.per_window,
                connections=self.limits.leases,
                slots=SLOT_BATCH,
                leases=LEASE_BATCH,
                has_slot=has_slot,
                has_lease=has_lease,
                spacing=spacing,
                released=released,
                unused=unused,
            )
        except self._errors as exc:
            self._fall_back(exc)
            return None

    def _take(self, decision: Decision) -> tuple[Slot | None, str | None]:
        """Keep what the store granted; the first slot and lease for the asking thread."""
        after = self._clock()  # the store decided before this: a slot's start is never early
        slack = self.store.timings.slack
        slots = [
            Slot(i, moment, after + moment - decision.at, after + moment - decision.at + slack)
            for i, moment in decision.slots
        ]
        leases = list(decision.leases)
        self._tasks_seen = max(self._tasks_seen, decision.active)
        quiet = decision.active == 1
        with self._lock:
            self._quiet = quiet
            self._scarce = not quiet or (not decision.admitted and decision.wait == 0)
            self._held.update(leases)
            self._slots.extend(slots[1:])
            self._idle.extend((lease, after) for lease in leases[1:])
            if not quiet and self._idle:
                self._give_back_idle()
        return (slots[0] if slots else None), (leases[0] if leases else None)

    def _give_back_idle(self) -> None:
        """Another task is present: every idle lease goes back at once (called with the lock held)."""
        for lease, _ in self._idle:
            self._held.discard(lease)
            self._released.append(lease)
        self._idle.clear()
        self._release_due.set()

    def _acquire_in_process(self, give_up: float | None) -> Lease | None:
        limit = self._in_process
        assert limit is not None
        return Lease(self, None) if limit.acquire(give_up, self._cancelled) else None

    def release(self, lease: Lease) -> None:
        """The lease's request is over (answered, failed, or never sent); :meth:`Lease.release`
        calls it once."""
        if lease.id is None:
            if self._in_process is not None:
                self._in_process.release()
            return
        with self._lock:
            if self._fallback is not None:
                self._held.discard(lease.id)
                return  # the store failed: the lease expires there on its own
            if self._quiet and not self._scarce and not self._closed.is_set():
                self._idle.append((lease.id, self._clock()))
                return
            self._held.discard(lease.id)
            self._released.append(lease.id)
        self._release_due.set()

    def flush(self) -> None:
        """Give back the released leases and missed slots that no call to the store took along."""
        with self._lock:
            if not (self._released or self._unused):
                return
            ids = self._released + self._unused
            self._released, self._unused = [], []
        if self._fallback is not None:
            return
        self._calls += 1
        try:
            self.store.release(self.task, ids)
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
            limit = InProcessLimit(self.limits, self._tasks_seen, clock=self._clock, wait=self._wait)
            if self._cancelled.is_set():
                limit.cancel()
            self._in_process = limit
            reason = shorten(f"{type(exc).__name__}: {exc}", 300, quote=False)
            self._fallback = {
                "reason": reason,
                "after_seconds": round(self._clock() - self._started, 3),
                "requests_per_second": round(limit.rate, 3),
                "connections": limit.connections,
            }
        self._log.warning(
            "Shared request budget unavailable (%s: %s): this task goes on with its in-process "
            "flow control at %.2f requests/s over %d connections (the budget's %d/s and %d "
            "connections shared by at least %d tasks) for the rest of its run",
            self._where,
            reason,
            limit.rate,
            limit.connections,
            self.limits.per_window,
            self.limits.leases,
            limit.tasks,
        )

    @property
    def degraded(self) -> bool:
        """Whether the store failed and the in-process limit took over."""
        return self._fallback is not None

    def renew(self) -> None:
        """Keep this task present and its leases held; leases idle for :data:`IDLE_KEEP` seconds
        go back (the renewing thread calls it every second)."""
        if self._fallback is not None:
            return
        now = self._clock()
        with self._lock:
            stale = [lease for lease, since in self._idle if now - since >= IDLE_KEEP]
            self._idle = [(lease, since) for lease, since in self._idle if now - since < IDLE_KEEP]
            self._held.difference_update(stale)
            held = sorted(self._held)
            give_back = stale + self._released + self._unused
            self._released, self._unused = [], []
        self._calls += 1
        try:
            _, active = self.store.renew(self.task, held, give_back=give_back)
        except self._errors as exc:
            self._fall_back(exc)
            return
        if active > 1:
            with self._lock:
                self._quiet = False
                self._scarce = True
                if self._idle:
                    self._give_back_idle()

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
            # Wakes for a renewal, or when something is to go back at once; a wake-up costs CPU.
            due = self._release_due.wait(max(0.0, renew_at - self._clock()))
            self._release_due.clear()
            if due:
                self.flush()
            if self._clock() >= renew_at:
                self.renew()
                renew_at = self._clock() + self._renew_every

    # ---- stopping --------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Wake every waiter and refuse every later :meth:`acquire` (the task was stopped)."""
        self._cancelled.set()
        with self._lock:
            if self._in_process is not None:
                self._in_process.cancel()

    def close(self) -> None:
        """Leave the budget: this task's leases and its place in the fair shares go at once."""
        self._closed.set()
        self._release_due.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        with self._lock:
            ids = sorted(self._held) + self._released + self._unused + [slot.id for slot in self._slots]
            self._held, self._released, self._unused, self._idle = set(), [], [], []
            self._slots.clear()
        if self._fallback is None and (ids or self._renewer is not None):
            with contextlib.suppress(*self._errors):  # what it held expires on its own
                self.store.leave(self.task, ids)

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
            "store_calls": self._calls,
            "state": "in-process" if self._fallback is not None else "shared",
            "fallback": dict(self._fallback) if self._fallback is not None else None,
        }
