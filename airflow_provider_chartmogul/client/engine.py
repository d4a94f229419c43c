"""The request engine behind ChartMogulHook: send, read, classify, retry, and the flow control
that keeps one task's requests within the account's limits (docs/flow-control.md)."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from airflow_provider_chartmogul.client.classify import (
    SERVER_ERROR,
    Verdict,
    classify_no_answer,
    classify_status,
    crowded_threshold,
)
from airflow_provider_chartmogul.client.error_body import MAX_BODY_CHARS, error_message
from airflow_provider_chartmogul.client.flow import (
    BreakerVerdict,
    CircuitBreaker,
    ConcurrencyLimit,
    RetryQuota,
)
from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.client.send_control import SendCancelled, SendControl, SendGate, Ticket
from airflow_provider_chartmogul.client.settings import ClientSettings
from airflow_provider_chartmogul.client.transport import Answer, NoAnswer, Transport
from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulAuthError,
    ChartMogulCancelledError,
    ChartMogulForbiddenError,
    ChartMogulTLSError,
    ChartMogulUnavailableError,
    shorten,
)

# Longest Retry-After honoured; a longer one is left to the retry budget to refuse.
MAX_RETRY_AFTER = 60.0


@dataclass
class RequestStats:
    """What the hook's requests cost; thread-safe counters, read with :meth:`snapshot`."""

    requests: int = 0
    retries: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, status: int | None) -> None:
        with self._lock:
            self.requests += 1
            if status is None:
                self.connection_errors += 1
            else:
                self.by_status[status] = self.by_status.get(status, 0) + 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "by_status": dict(sorted(self.by_status.items())),
                "connection_errors": self.connection_errors,
                "rate_limited": self.by_status.get(429, 0),
                "too_many_connections": self.by_status.get(503, 0),
            }


class _Retryable(Exception):
    """An attempt failed in a way a later attempt may not (carried through tenacity). The error
    itself is built once the retries are over, when its attempts and any note are known.

    :param failure: a server failure (5xx, no answer): retried only under the retry quota.
    """

    def __init__(
        self,
        error_class: type[ChartMogulAPIError],
        message: str,
        *,
        retry_after: float | None = None,
        failure: bool = True,
        timeout: bool = False,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.fields = fields
        self.retry_after = retry_after
        self.failure = failure
        self.timeout = timeout
        self.note = ""

    def build(self, attempts: int) -> ChartMogulAPIError:
        message = f"{self.message} ({self.note})" if self.note else self.message
        return self.error_class(message, attempts=attempts, retryable=True, **self.fields)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


class RequestEngine:
    """Sends the hook's requests: every attempt passes the send control (concurrency cap, rate
    limiter, further gates), has a hard deadline, and is retried within ``max_retries`` and
    ``retry_budget``.

    :param settings: the connection's settings.
    :param stats: where requests are counted.
    :param clock: seconds, monotonic; ``sleep`` waits between retries (both injected in tests).
    :param gates: further send gates (the account-wide budget), see :class:`SendControl`.
    """

    def __init__(
        self,
        settings: ClientSettings,
        stats: RequestStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
        gates: Sequence[SendGate] = (),
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.log = log
        self._clock = clock
        self.transport = Transport(settings, clock=clock)
        self.limiter = RateLimiter(settings.max_requests_per_second, clock=clock)
        self.concurrency = ConcurrencyLimit(settings.max_connections)
        self.flow = SendControl(concurrency=self.concurrency, rate=self.limiter, gates=gates, clock=clock)
        self.quota = RetryQuota()
        self.breaker = CircuitBreaker(started=clock())
        self._crowded_at = crowded_threshold(settings.max_connections)
        # Which kinds of request ("read", "write") have succeeded: a 403 after that is one request's.
        self._succeeded: set[str] = set()
        self._cancelled = threading.Event()
        self._cancel_reason = ""
        self._call = threading.local()
        self._in_backoff = 0
        self._backoff_lock = threading.Lock()
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(settings.max_retries + 1)
            | tenacity.stop_before_delay(settings.retry_budget),
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=self._before_retry,
            sleep=self._sleep,
            reraise=True,
        )

    # ---- stopping --------------------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        self._cancel_reason = reason
        self._cancelled.set()
        self.flow.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def in_backoff(self) -> int:
        """Requests waiting out a retry's back-off now: each holds its caller's thread, and nothing
        else (no connection slot, no send slot, no lease)."""
        return self._in_backoff

    def _sleep(self, seconds: float) -> None:
        with self._backoff_lock:
            self._in_backoff += 1
        try:
            self._wait_between_attempts(seconds)
        finally:
            with self._backoff_lock:
                self._in_backoff -= 1

    def _wait_between_attempts(self, seconds: float) -> None:
        self._cancelled.wait(seconds)  # a cancel cuts the wait short; the next attempt then refuses

    def _refuse_if_stopped(self, method: str, path: str) -> None:
        if self._cancelled.is_set() or self.flow.cancelled:
            raise ChartMogulCancelledError(
                f"not sent: {self._cancel_reason or 'the send control was cancelled'}",
                method=method,
                path=path,
                retryable=True,
            )
        if self.breaker.is_open:
            raise ChartMogulUnavailableError(
                f"not sent: ChartMogul has answered nothing successfully for "
                f"{self.breaker.silent_for(self._clock()):.0f} s (last: {self.breaker.last_failure})",
                method=method,
                path=path,
                retryable=True,
            )

    # ---- one call ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        priority: bool = False,
    ) -> Any:
        """Send one API request (retried as the settings allow); the parsed JSON answer.

        :raises ValueError: ``json_body`` cannot be JSON (NaN, infinity); nothing was sent.
        """
        body = None if json_body is None else json.dumps(json_body, allow_nan=False).encode("utf-8")
        call = self._call
        call.spent = 0
        call.attempts = 0
        call.started = self._clock()
        try:
            return self._retrying(self._attempt, method, path, body, params, priority)
        except _Retryable as exc:
            raise exc.build(call.attempts) from None

    def _attempt(
        self, method: str, path: str, body: bytes | None, params: Mapping[str, Any] | None, priority: bool
    ) -> Any:
        self._refuse_if_stopped(method, path)
        call = self._call
        call.attempts += 1
        # Waiting for a connection and a send slot counts against the retry budget after the first
        # attempt; no attempt waits longer than what is left of it.
        left = None
        if call.attempts > 1:
            left = max(0.0, call.started + self.settings.retry_budget - self._clock())
        try:
            ticket = self.flow.on_sending_request(priority=priority, timeout=left)
        except SendCancelled:
            self._refuse_if_stopped(method, path)
            raise
        if ticket is None:
            self._refuse_if_stopped(method, path)
            raise self._no_slot(method, path)
        if call.attempts > 1:
            self.stats.count_retry()  # counted when sent: a retry that never got a slot is no request
        try:
            answer = self.transport.send(method, path, body=body, params=params, on_finished=ticket.release)
        except NoAnswer as exc:
            self.stats.count(None)
            self.flow.on_receiving_response(ticket, classify_no_answer(timeout=exc.timeout))
            raise self._no_answer(method, path, exc) from None
        except BaseException:
            ticket.release()  # the transport gives it back on every path it knows; this is the rest
            raise
        self.stats.count(answer.status)
        return self._read_answer(method, path, answer, ticket)

    def _no_answer(self, method: str, path: str, exc: NoAnswer) -> Exception:
        if exc.fatal is not None:
            return ChartMogulTLSError(
                exc.fatal,
                method=method,
                path=path,
                attempts=self._call.attempts,
                retryable=False,
            )
        self._failed(path, f"no answer ({exc.reason})", connection=not exc.timeout)
        what = (
            f"no whole answer within the {self.settings.timeout:g} s timeout ({exc.reason})"
            if exc.timeout
            else f"no answer ({exc.reason})"
        )
        return _Retryable(
            ChartMogulAPIError,
            f"{what}; the request may or may not have been applied",
            timeout=exc.timeout,
            method=method,
            path=path,
        )

    def _failed(self, path: str, what: str, *, connection: bool = False) -> None:
        """Tell the breaker; when it asks, probe ChartMogul itself before it opens."""
        verdict = self.breaker.on_failure(self._clock(), what, path=path, connection=connection)
        if verdict is BreakerVerdict.PROBE:
            self._probe()

    def _probe(self) -> None:
        """``GET /v1/ping`` through the send control: whether ChartMogul answers at all, when nothing
        else has succeeded for a while (some customers failing again and again, or ChartMogul down)."""
        outcome = None
        what = ""
        try:
            ticket = self.flow.on_sending_request(priority=True, timeout=self.settings.timeout)
        except SendCancelled:
            ticket = None
        if ticket is not None:
            try:
                answer = self.transport.send("GET", "/v1/ping", on_finished=ticket.release)
            except NoAnswer as exc:
                self.stats.count(None)
                outcome, what = classify_no_answer(timeout=exc.timeout), f"ping: no answer ({exc.reason})"
            except BaseException:
                ticket.release()
                self.breaker.on_probe(self._clock(), alive=True)
                raise
            else:
                self.stats.count(answer.status)
                message = (
                    ""
                    if answer.status < 300
                    else error_message(answer.text, answer.headers.get("Content-Type"))
                )
                outcome, what = classify_status(answer.status, message), f"ping: HTTP {answer.status}"
            self.flow.on_receiving_response(ticket, outcome)
        # No slot for the probe (cancelled, or none within the timeout) decides nothing.
        alive = outcome is None or outcome.verdict is not Verdict.FAILED
        self.breaker.on_probe(self._clock(), alive=alive, what=what)

    @staticmethod
    def _kind(method: str) -> str:
        return "read" if method.upper() in ("GET", "HEAD") else "write"

    def _no_slot(self, method: str, path: str) -> ChartMogulAPIError:
        # Not retried: the budget it waited for is spent. Only the attempts before it were sent.
        return ChartMogulAPIError(
            f"not sent: no send slot within the retry budget ({self.settings.retry_budget:g} s; the "
            f"send rate is {self.limiter.rate:.1f}/s after 429s)",
            method=method,
            path=path,
            attempts=max(1, self._call.attempts - 1),
            retryable=True,
        )

    def _read_answer(self, method: str, path: str, answer: Answer, ticket: Ticket) -> Any:
        status = answer.status
        data: Any = None
        malformed = False
        message = ""
        if 200 <= status < 300:
            if status != 204 and answer.body:
                try:
                    data = answer.json()
                except ValueError:
                    malformed = True
        else:
            message = error_message(answer.text, answer.headers.get("Content-Type"))
        outcome = (
            SERVER_ERROR
            if malformed
            else classify_status(status, message, on_wire=ticket.on_wire, crowded_at=self._crowded_at)
        )
        self.flow.on_receiving_response(ticket, outcome)
        now = self._clock()
        verdict = outcome.verdict
        if verdict is Verdict.FAILED:
            self._failed(path, f"HTTP {status}")
        elif verdict.server_up:
            self.breaker.on_success(now)
            if verdict is Verdict.OK:
                self.quota.on_success(self._call.spent)
                self._succeeded.add(self._kind(method))
        if verdict is Verdict.OK and not malformed:
            return data
        body = shorten(answer.text, MAX_BODY_CHARS, quote=False)
        if malformed:
            raise _Retryable(
                ChartMogulAPIError,
                f"malformed JSON in the answer: {shorten(answer.text, 200, quote=False)!r}",
                status=status,
                method=method,
                path=path,
                body=body,
            )
        if verdict.retried:
            raise _Retryable(
                ChartMogulAPIError,
                message,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
                failure=verdict is Verdict.FAILED,
                status=status,
                method=method,
                path=path,
                body=body,
            )
        error_class: type[ChartMogulAPIError] = ChartMogulAPIError
        if status == 401:
            error_class = ChartMogulAuthError
            message = f"{message} (check the API key in the connection's password field)"
        elif status == 403 and self._kind(method) in self._succeeded:
            error_class = ChartMogulForbiddenError
            message = f"{message} (this one request was refused: others like it succeeded with this key)"
        elif status == 403:
            error_class = ChartMogulAuthError
            message = (
                f"{message} (the API key may be read-only: writing custom attributes needs a read-write key)"
                if self._kind(method) == "write"
                else f"{message} (the API key may not read this account)"
            )
        raise error_class(
            message, status=status, method=method, path=path, body=body, attempts=self._call.attempts
        )

    # ---- retries -----------------------------------------------------------------------------------

    def _should_retry(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if not isinstance(exc, _Retryable):
            return False
        if self._cancelled.is_set():
            return True  # the wait ends at once and the next attempt is refused: the caller learns why
        call = self._call
        if call.attempts > self.settings.max_retries or (
            self._clock() - call.started >= self.settings.retry_budget
        ):
            return False  # the stop conditions end it: spend nothing on a retry that will not be
        if exc.failure:
            cost = self.quota.take(timeout=exc.timeout)
            if cost is None:
                exc.note = "not retried: the task's retry quota is spent, ChartMogul has been failing"
                return False
            call.spent += cost
        return True

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER) + random.uniform(0, 0.25)
        # Full-jitter exponential backoff: up to 0.5 s, 1 s, 2 s ... capped at 30 s.
        ceiling = min(30.0, 0.5 * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _before_retry(self, retry_state: tenacity.RetryCallState) -> None:
        if self.log is not None:
            outcome = retry_state.outcome
            exc = outcome.exception() if outcome is not None else None
            reason = exc.message if isinstance(exc, _Retryable) else repr(exc)
            self.log.debug(
                "Retrying in %.1f s (attempt %d): %s",
                retry_state.upcoming_sleep,
                retry_state.attempt_number + 1,
                reason,
            )

    def close(self) -> None:
        self.transport.close()
