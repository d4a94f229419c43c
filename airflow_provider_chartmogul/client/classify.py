"""How an answer is classified: the one home of which answers are retried, which slow the task
down, which count against ChartMogul's health and which end a request (docs/flow-control.md).

Pure: no I/O and no imports from this package, so the engine, the send control and the
exceptions all read it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal


class Verdict(enum.Enum):
    """What an attempt's outcome says."""

    OK = "ok"  # answered 2xx
    THROTTLED = "throttled"  # 429: the account's request rate
    CROWDED = "crowded"  # a 503 that says "too many connections": the account's connections
    FAILED = "failed"  # the server failed (transient 5xx, 408, 425, no answer): retried under the quota
    REFUSED = "refused"  # a final answer (any other 4xx, 501...): the server is up, retrying cannot help

    @property
    def retried(self) -> bool:
        """Whether a later attempt may succeed."""
        return self in (Verdict.THROTTLED, Verdict.CROWDED, Verdict.FAILED)

    @property
    def server_up(self) -> bool:
        """Whether the answer shows ChartMogul answering (what the circuit breaker and the rate
        curves count as a success)."""
        return self in (Verdict.OK, Verdict.REFUSED)


#: The finer cause, as the metrics name it (``metrics.RequestOutcome``).
Cause = Literal[
    "ok", "rate_limited", "crowded", "server_error", "client_error", "timeout", "connection_error"
]


@dataclass(frozen=True, slots=True)
class Classified:
    """One attempt's outcome: the verdict and its finer cause."""

    verdict: Verdict
    cause: Cause


OK: Final = Classified(Verdict.OK, "ok")
THROTTLED: Final = Classified(Verdict.THROTTLED, "rate_limited")
CROWDED: Final = Classified(Verdict.CROWDED, "crowded")
SERVER_ERROR: Final = Classified(Verdict.FAILED, "server_error")
CLIENT_ERROR: Final = Classified(Verdict.REFUSED, "client_error")
TIMEOUT: Final = Classified(Verdict.FAILED, "timeout")
CONNECTION_ERROR: Final = Classified(Verdict.FAILED, "connection_error")

#: Transient server failures besides 500/502/503/504: request timeout, too early, and the
#: Cloudflare-style 521-530 (origin down, unreachable, timed out, TLS handshake failed...).
TRANSIENT_STATUSES: Final = frozenset({408, 425, 500, 502, 503, 504, 520, *range(521, 531)})

# ChartMogul answers 503 above 20 parallel connections; its message says so. Any other 503 (a
# proxy's "Service Unavailable" page) is server trouble.
_TOO_MANY_CONNECTIONS = re.compile(r"too many (?:parallel |concurrent |open )?connections|concurren", re.I)


def crowded_threshold(max_connections: int) -> int:
    """The in-flight count from which a 503 that says nothing about its cause is taken as "too
    many connections": a task with fewer requests in flight cannot be crowding the account."""
    return max(3, max_connections // 4)


def classify_status(
    status: int, message: str = "", *, on_wire: int = 0, crowded_at: int | None = None
) -> Classified:
    """Classify an HTTP answer.

    :param message: the API's message read from the body (``error_body.error_message``); only a
        503's is read.
    :param on_wire: requests of this task on the wire when this one was sent.
    :param crowded_at: see :func:`crowded_threshold`; ``None``: a silent 503 is a failure.
    """
    if 200 <= status < 300:
        return OK
    if status == 429:
        return THROTTLED
    if status == 503:
        if _TOO_MANY_CONNECTIONS.search(message):
            return CROWDED
        silent = message.strip() in ("", "(empty body)")
        if silent and crowded_at is not None and on_wire >= crowded_at:
            return CROWDED
        return SERVER_ERROR
    if status in TRANSIENT_STATUSES:
        return SERVER_ERROR
    return CLIENT_ERROR


def classify_no_answer(*, timeout: bool) -> Classified:
    """No whole answer: the deadline passed, or the connection failed (refused, reset, dropped)."""
    return TIMEOUT if timeout else CONNECTION_ERROR


def is_retried_status(status: int | None) -> bool:
    """Whether an error with this status (``None``: no answer) may succeed when replayed."""
    return status is None or classify_status(status).verdict.retried
