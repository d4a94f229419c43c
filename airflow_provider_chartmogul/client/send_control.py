"""The one object the request engine tells about each send and each answer (as botocore's
``ClientRateLimiter`` is): it holds the task's concurrency cap and rate limiter, and any number of
further gates (the account-wide budget), all passed in. The contract is in docs/flow-control.md
("The send control").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from airflow_provider_chartmogul.client.classify import Classified, Verdict

if TYPE_CHECKING:
    from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
    from airflow_provider_chartmogul.client.ratelimit import RateLimiter


class SendCancelled(Exception):
    """The send control (or one of its gates) was cancelled: no more sends are allowed."""


class Lease(Protocol):
    """What a gate handed out for one send; released once, when the exchange is over."""

    def release(self) -> None: ...


class SendGate(Protocol):
    """One more say over when a request may be sent (the account-wide budget on Redis)."""

    def acquire(self, *, priority: bool, timeout: float | None) -> Lease | None:
        """Block until this request may be sent: a lease, or ``None`` when none came within
        ``timeout`` seconds (``None``: no limit). Called on the sending thread, last before the
        request goes on the wire.

        :raises SendCancelled: after :meth:`cancel`, also when it is called during the wait.
        """
        ...

    def on_answer(self, ticket: Ticket, outcome: Classified, now: float) -> None:
        """What the attempt sent with ``ticket`` ended in (called on the sending thread)."""
        ...

    def cancel(self) -> None:
        """Wake every waiter in :meth:`acquire`; every later call raises :class:`SendCancelled`."""
        ...


class Ticket:
    """One permitted send: when it was released, how many were on the wire with it, and what it
    holds (a concurrency slot and the gates' leases), given back by :meth:`release`."""

    __slots__ = (
        "_concurrency",
        "_leases",
        "_lock",
        "_on_wire",
        "_released",
        "on_wire",
        "priority",
        "sent_at",
    )

    def __init__(self, concurrency: ConcurrencyLimit, *, priority: bool) -> None:
        self._concurrency = concurrency
        self._leases: list[Lease] = []
        self._lock = threading.Lock()
        self._released = False
        self._on_wire = False
        self.priority = priority
        self.sent_at = 0.0
        self.on_wire = 0

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give back the slot and every lease; safe to call more than once, from any thread."""
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            for lease in reversed(self._leases):
                lease.release()
        finally:
            self._concurrency.release(sent=self._on_wire)


class SendControl:
    """Decides when each attempt may be sent, and learns from each answer.

    :param concurrency: the task's cap on requests in flight (cut on crowded 503s).
    :param rate: the task's rate limiter; its ``control`` (``AdaptiveRate``) is cut on 429s.
    :param gates: further gates, asked in order after the rate limiter (the account-wide budget).
    :param clock: seconds, monotonic (injected in tests).
    """

    def __init__(
        self,
        *,
        concurrency: ConcurrencyLimit,
        rate: RateLimiter,
        gates: Sequence[SendGate] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency = concurrency
        self.rate = rate
        self.gates = tuple(gates)
        self._clock = clock
        self._cancelled = threading.Event()

    def on_sending_request(self, *, priority: bool = False, timeout: float | None = None) -> Ticket | None:
        """Block until the attempt may go: a ticket, or ``None`` when it could not within
        ``timeout`` seconds (everything taken meanwhile is given back).

        :raises SendCancelled: :meth:`cancel` was called, before or during the wait.
        """
        if self._cancelled.is_set():
            raise SendCancelled
        give_up = None if timeout is None else self._clock() + timeout
        if not self.concurrency.acquire(timeout=timeout):
            if self._cancelled.is_set():
                raise SendCancelled
            return None
        ticket = Ticket(self.concurrency, priority=priority)
        try:
            sent_at = self.rate.acquire(priority=priority, timeout=self._left(give_up))
            if sent_at is None:
                ticket.release()
                return None
            for gate in self.gates:
                lease = gate.acquire(priority=priority, timeout=self._left(give_up))
                if lease is None:
                    ticket.release()
                    return None
                ticket._leases.append(lease)
            if self._cancelled.is_set():
                raise SendCancelled
        except BaseException:
            ticket.release()
            raise
        ticket.sent_at = sent_at if not self.gates else self._clock()
        ticket.on_wire = self.concurrency.sending()
        ticket._on_wire = True
        return ticket

    def _left(self, give_up: float | None) -> float | None:
        return None if give_up is None else max(0.0, give_up - self._clock())

    def on_receiving_response(self, ticket: Ticket, outcome: Classified) -> None:
        """The attempt sent with ``ticket`` ended in ``outcome`` (called on the sending thread,
        before the engine decides whether to retry)."""
        now = self._clock()
        verdict = outcome.verdict
        if verdict is Verdict.THROTTLED:
            self.rate.control.on_throttled(ticket.sent_at, now)
        elif verdict is Verdict.CROWDED:
            self.concurrency.on_too_many(ticket.sent_at, ticket.on_wire)
        elif verdict.server_up:
            self.rate.control.on_success(now)
            self.concurrency.on_success(now)
        for gate in self.gates:
            gate.on_answer(ticket, outcome, now)

    def cancel(self) -> None:
        """Wake every waiter; every later :meth:`on_sending_request` raises :class:`SendCancelled`."""
        self._cancelled.set()
        self.rate.cancel()
        self.concurrency.cancel()
        for gate in self.gates:
            gate.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
