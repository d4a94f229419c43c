"""Flow control that tells congestion from failure: the send rate, the concurrency cap, the retry
quota and the circuit breaker. No threads, no I/O: each takes the time from its caller, so the
hook's threads share them and tests drive them with a fake clock.

The designs and their sources are in docs/flow-control.md. No library fits: the retry libraries
(tenacity) decide when one call retries, not how a task's many calls share an account's limits.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import deque

# The AWS SDKs' adaptive mode uses CUBIC with a cut to 0.7 and a scale of 0.4; against a hard
# per-account window, a milder cut, a flatter curve and a plateau a little below the throttled rate
# gave the highest shares with the fewest 429s (the simulations in tests/client/test_flow.py).
CUBIC_BETA = 0.8
# The curve is relative to its plateau: plateau * (1 + scale * t**3), t seconds from reaching it,
# the same shape at every share. N tasks on one account each hold about 1/N of it and move 1/N as
# fast, so together they probe it as fast as one task alone; with TCP CUBIC's absolute scale (in
# requests per second) they would overshoot the account's window about N times as often
# (docs/flow-control.md). Back up to the plateau (room the account had for this task when it was
# throttled): 0.03 per 39/s, the AWS-derived curve this module used for ChartMogul's 39/s.
CUBIC_SCALE = 0.03 / 39.0
# Above the plateau every probe that finds the account full costs it a 429: slower.
PROBE_SCALE = 0.0075 / 39.0
# The curve flattens out this far below the rate that was throttled, not at it.
PLATEAU = 0.94
# The floor of a cut, as a share of the configured rate: 429s that keep coming whatever the rate
# (a per-minute compute limit, a proxy) must not stall a run completely.
FLOOR = 1 / 20
# How long the measured send rate looks back (ChartMogul's window), and how long sends are kept:
# the second before a throttled request, whose answer came a round trip later.
MEASURE_SECONDS = 1.0
HISTORY_SECONDS = 2 * MEASURE_SECONDS


class AdaptiveRate:
    """The send rate: cut on 429 only, then regained along a CUBIC curve (AWS adaptive mode).

    After a cut to ``beta`` times the rate measured when the throttled request was sent (or to the
    share of the account's window this task had, when that is less), the rate climbs fast,
    flattens out near that earlier rate (where the account's limit was met) and only then probes
    above it, slowly. The curve is relative to the rate it flattens out at, so tasks that share an
    account each move in proportion to their share and together probe it as one task would.

    :param max_rate: the configured rate: never exceeded, and returned to when nothing throttles.
    :param min_rate: the floor of a cut (default: a twentieth of ``max_rate``, at least 0.5/s).
    """

    def __init__(self, max_rate: float, *, min_rate: float | None = None) -> None:
        self.max_rate = float(max_rate)
        floor = max(0.5, self.max_rate * FLOOR) if min_rate is None else float(min_rate)
        self.min_rate = min(floor, self.max_rate)
        self._rate = self.max_rate
        self._last_max = self.max_rate
        self._k = 0.0
        self._cut_at: float | None = None
        self._sends: deque[float] = deque()
        self._throttled: deque[float] = deque()  # when the requests answered 429 were sent
        self._lock = threading.Lock()
        self.hold_until = -math.inf
        self.cuts = 0

    @property
    def rate(self) -> float:
        """Requests per second allowed now."""
        return self._rate

    def measured(self, now: float) -> float:
        """Requests actually sent per second over the last :data:`MEASURE_SECONDS`."""
        with self._lock:
            return self._measured(now)

    @staticmethod
    def _prune(times: deque[float], now: float) -> None:
        while times and times[0] <= now - HISTORY_SECONDS:
            times.popleft()

    @staticmethod
    def _between(times: deque[float], after: float, until: float) -> int:
        return sum(1 for t in times if after < t <= until)

    def _measured(self, now: float) -> float:
        self._prune(self._sends, now)
        return self._between(self._sends, now - MEASURE_SECONDS, now) / MEASURE_SECONDS

    def on_send(self, now: float) -> None:
        with self._lock:
            self._sends.append(now)
            if len(self._sends) > 2 * HISTORY_SECONDS * self.max_rate + 8:
                self._prune(self._sends, now)

    def on_throttled(self, sent_at: float, now: float) -> bool:
        """A 429 to a request sent at ``sent_at``; whether the rate was cut.

        Answers to requests sent before the last cut belong to the congestion already answered,
        so a burst of 429s to requests in flight cuts once.
        """
        with self._lock:
            self._throttled.append(sent_at)
            self._prune(self._throttled, now)
            if self._cut_at is not None and sent_at < self._cut_at:
                return False
            measured = self._measured(now)
            base = min(self._rate, measured) if measured > 0 else self._rate
            # Our share of the account: of our requests in the second before the throttled one
            # (all answered by now), those its rate limit let through, whatever they were answered
            # (a 503 for too many connections took a place in the window too). When several tasks
            # start at full speed together, a cut to beta times what was sent is not enough.
            window = self._between(self._sends, sent_at - MEASURE_SECONDS, sent_at)
            let_through = window - self._between(self._throttled, sent_at - MEASURE_SECONDS, sent_at)
            share = min(base, let_through / MEASURE_SECONDS) if let_through > 0 else base
            self._rate = max(self.min_rate, min(base * CUBIC_BETA, share))
            self._last_max = max(share * PLATEAU, self.min_rate)
            self._k = (
                ((1.0 - self._rate / self._last_max) / CUBIC_SCALE) ** (1 / 3)
                if self._rate < self._last_max
                else 0.0
            )
            self._cut_at = now
            # The account's window is full now, and stays full at least until the first of our
            # requests in it is a second old: sending before that only collects more 429s.
            recent = [t for t in self._sends if t > now - MEASURE_SECONDS]
            if recent:
                self.hold_until = max(self.hold_until, recent[0] + MEASURE_SECONDS)
            self.cuts += 1
            return True

    def on_success(self, now: float) -> None:
        """A request was not throttled: move along the curve."""
        if self._cut_at is None or self._rate >= self.max_rate:
            return
        with self._lock:
            if self._cut_at is None:
                return
            self._rate = min(self.max_rate, max(self._rate, self._curve(now - self._cut_at)))

    def _curve(self, t: float) -> float:
        """The rate ``t`` seconds after the cut: up to the plateau by ``_k`` seconds, then above it."""
        after = t - self._k
        return self._last_max * (1.0 + (CUBIC_SCALE if after < 0 else PROBE_SCALE) * after**3)


class ConcurrencyLimit:
    """How many requests may be in flight: cut on a 503 that says "too many connections", regained
    quickly (AIMD on the in-flight count, not on the rate).

    ChartMogul answers 503 above 20 parallel connections per account. A 503 while this task has
    only a few requests in flight cannot be its own doing: it is server trouble, a transient 5xx.

    :param maximum: the configured cap (the connection's ``max_connections``).
    :param crowded: a 503 is congestion only when at least this many requests were in flight.
    :param recover_after: successes that win back one slot.
    """

    def __init__(self, maximum: int, *, crowded: int | None = None, recover_after: int = 2) -> None:
        self.maximum = maximum
        self.crowded = crowded if crowded is not None else max(3, maximum // 4)
        self.recover_after = recover_after
        self._limit = maximum
        self._in_flight = 0  # holding a slot: waiting for a send slot, or on the wire
        self._on_wire = 0  # sent and not yet answered: what ChartMogul counts
        self._successes = 0
        self._cut_at: float | None = None
        self._cancelled = False
        self._free = threading.Condition()
        self.cuts = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a free slot; ``False`` when the wait timed out or :meth:`cancel` was called."""
        with self._free:
            ok = self._free.wait_for(lambda: self._cancelled or self._in_flight < self._limit, timeout)
            if not ok or self._cancelled:
                return False
            self._in_flight += 1
            return True

    def sending(self) -> int:
        """The slot's request goes on the wire now; how many are on the wire, this one included."""
        with self._free:
            self._on_wire += 1
            return self._on_wire

    def release(self, *, sent: bool = True) -> None:
        """The slot's request is over (``sent=False``: it never went on the wire)."""
        with self._free:
            self._in_flight -= 1
            if sent:
                self._on_wire -= 1
            self._free.notify()

    def cancel(self) -> None:
        """Wake every waiter; from now on :meth:`acquire` returns ``None``."""
        with self._free:
            self._cancelled = True
            self._free.notify_all()

    def is_crowded(self, in_flight_at_send: int) -> bool:
        """Whether a 503 to a request sent with this many in flight means "too many connections"."""
        return in_flight_at_send >= self.crowded

    def on_too_many(self, sent_at: float, in_flight_at_send: int) -> bool:
        """A crowded 503: halve the cap (once per episode, like :meth:`AdaptiveRate.on_throttled`)."""
        with self._free:
            if self._cut_at is not None and sent_at < self._cut_at:
                return False
            self._limit = max(1, min(self._limit, in_flight_at_send) // 2)
            self._cut_at = sent_at
            self._successes = 0
            self.cuts += 1
            return True

    def on_success(self, now: float) -> None:
        if self._limit >= self.maximum:
            return
        with self._free:
            self._successes += 1
            if self._successes >= self.recover_after and self._limit < self.maximum:
                self._successes = 0
                self._limit += 1
                self._cut_at = now
                self._free.notify()


class RetryQuota:
    """A task-wide budget of retries (the AWS SDKs' *standard* retry mode): each retry spends
    tokens, each success earns some back, and with the bucket empty failures are not retried, so a
    server in trouble gets no retry storm from us. Throttling (429) is left to :class:`AdaptiveRate`
    and spends nothing.
    """

    def __init__(
        self, capacity: int = 500, *, retry_cost: int = 5, timeout_cost: int = 10, refund: int = 1
    ) -> None:
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.refund = refund
        self._tokens = capacity
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def tokens(self) -> int:
        return self._tokens

    def take(self, *, timeout: bool = False) -> int | None:
        """Tokens for one retry (what to give back if it succeeds), or ``None``: do not retry."""
        cost = self.timeout_cost if timeout else self.retry_cost
        with self._lock:
            if self._tokens < cost:
                self.refused += 1
                return None
            self._tokens -= cost
            return cost

    def on_success(self, spent: int) -> None:
        """A request succeeded; ``spent`` is what its retries took (0 when it needed none)."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + (spent or self.refund))


class BreakerVerdict(enum.Enum):
    """What the engine does after telling the breaker about a failure."""

    CLOSED = "closed"  # go on
    PROBE = "probe"  # ask ChartMogul directly whether it is up (``GET /v1/ping``), then tell :meth:`on_probe`
    OPEN = "open"  # stop: ChartMogul is down


class CircuitBreaker:
    """Opens, for good, when ChartMogul is down, and not when some customers keep failing.

    Nothing has succeeded for ``open_after`` seconds and at least ``min_failures`` attempts failed
    since the last success; then it opens when

    - ``min_failures`` of them were connection failures (refused, reset, dropped: no customer
      causes those), or
    - the failures were spread over ``many_paths`` distinct request paths (customers), or
    - a probe (``GET /v1/ping``, asked for at most once per ``open_after``) fails too.

    The same few customers answering 500 again and again, while the probe is answered, never open
    it. A run then stops and reports the rest as not attempted instead of spending every
    customer's retry budget on a ChartMogul that is down. It never closes again: a later run
    starts with a new hook.
    """

    def __init__(
        self,
        *,
        open_after: float = 10.0,
        min_failures: int = 10,
        many_paths: int = 50,
        started: float = 0.0,
    ) -> None:
        self.open_after = open_after
        self.min_failures = min_failures
        self.many_paths = many_paths
        self._last_success = started
        self._alive_at = started  # the last success or answered probe
        self._failures = 0
        self._connection_failures = 0
        self._paths: set[str] = set()
        self._probing = False
        self._last_failure = ""
        self._open = False
        self._lock = threading.Lock()
        self.probes = 0

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def last_failure(self) -> str:
        return self._last_failure

    def on_success(self, now: float) -> None:
        if self._failures or now > self._last_success:
            with self._lock:
                self._failures = 0
                self._connection_failures = 0
                self._paths.clear()
                self._last_success = max(self._last_success, now)
                self._alive_at = max(self._alive_at, now)

    def on_failure(self, now: float, what: str, *, path: str, connection: bool = False) -> BreakerVerdict:
        """A failed attempt to ``path``; ``connection``: no connection or it broke (not a timeout,
        not an answer)."""
        with self._lock:
            if self._open:
                return BreakerVerdict.OPEN
            self._failures += 1
            self._last_failure = what
            if connection:
                self._connection_failures += 1
            self._paths.add(path)
            if self._failures < self.min_failures or now - self._last_success < self.open_after:
                return BreakerVerdict.CLOSED
            if self._connection_failures >= self.min_failures or len(self._paths) >= self.many_paths:
                self._open = True
                return BreakerVerdict.OPEN
            if self._probing or now - self._alive_at < self.open_after:
                return BreakerVerdict.CLOSED
            self._probing = True
            self.probes += 1
            return BreakerVerdict.PROBE

    def on_probe(self, now: float, *, alive: bool, what: str = "") -> bool:
        """The probe's outcome; whether the breaker is (now) open."""
        with self._lock:
            self._probing = False
            if alive:
                self._alive_at = max(self._alive_at, now)
            else:
                self._open = True
                if what:
                    self._last_failure = what
            return self._open

    def silent_for(self, now: float) -> float:
        """Seconds since the last success (or since the start)."""
        return now - self._last_success
