"""The provider's metrics, sent through Airflow's own ``Stats`` (docs/metrics.md).

They go wherever the deployment sends Airflow's metrics (StatsD, Datadog, OpenTelemetry, as
``[metrics]`` configures it), under one prefix, ``chartmogul.``, tagged as Airflow tags a task's
metrics (``dag_id``, ``task_id``). Nothing is sent when Airflow's metrics are off.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from airflow_provider_chartmogul.version_compat import Stats, get_current_context

if TYPE_CHECKING:
    from airflow_provider_chartmogul.client.classify import Classified
    from airflow_provider_chartmogul.client.send_control import Ticket

PREFIX: Final = "chartmogul"

RequestOutcome = Literal[
    "ok", "rate_limited", "crowded", "server_error", "client_error", "timeout", "connection_error"
]
# What an attempt that went on the wire ended in, as the request engine classifies its answer:
# 2xx; 429; a 503 while the task had many requests in flight (the account's 20 connections);
# any other 5xx (a 2xx whose JSON cannot be read counts here too); any other 4xx; no whole answer
# within the timeout; no answer at all (refused, reset, TLS).
REQUEST_OUTCOMES: Final[tuple[RequestOutcome, ...]] = (
    "ok",
    "rate_limited",
    "crowded",
    "server_error",
    "client_error",
    "timeout",
    "connection_error",
)

REQUESTS: Final = f"{PREFIX}.requests"  # + "." + outcome: a counter
REQUEST_DURATION: Final = f"{PREFIX}.request.duration"  # a timer, one attempt on the wire
SEND_RATE: Final = f"{PREFIX}.send_rate"  # a gauge, requests/s the limiter allows now
CUSTOMERS: Final = f"{PREFIX}.customers"  # + ".written" / ".failed" / ".skipped" / ".unchanged"
ATTRIBUTES: Final = f"{PREFIX}.attributes"  # + ".added" / ".changed" / ".cleared"

# A send-rate change smaller than this is not worth a packet (the rate moves after every answer).
_RATE_STEP = 0.1


class StatsBackend(Protocol):
    """What this module uses of Airflow's ``Stats`` (the same on Airflow 2.10+ and 3.x)."""

    def incr(self, stat: str, count: int = ..., rate: float = ..., *, tags: Any = ...) -> None: ...
    def gauge(
        self, stat: str, value: float, rate: float = ..., delta: bool = ..., *, tags: Any = ...
    ) -> None: ...
    def timing(self, stat: str, dt: Any, *, tags: Any = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What one run did, in the metrics' terms.

    :param written: customers at least one write was sent for and applied.
    :param unchanged: customers that succeeded with nothing to send (sync mode, values equal).
    """

    written: int
    failed: int
    skipped: int
    unchanged: int
    added: int
    changed: int
    cleared: int

    @classmethod
    def from_report(cls, report: Mapping[str, Any], *, unchanged_customers: int = 0) -> RunCounts:
        """From the operator's report (``RunReport.as_dict()``); ``unchanged_customers`` are the
        succeeded customers that had nothing to write. A dry run writes nothing: only its failed
        and skipped customers count."""
        dry_run = bool(report.get("dry_run"))
        succeeded = int(report.get("succeeded", 0))
        return cls(
            written=0 if dry_run else succeeded - unchanged_customers,
            failed=int(report.get("failed", 0)),
            skipped=int(report.get("skipped", 0)),
            unchanged=0 if dry_run else unchanged_customers,
            added=0 if dry_run else int(report.get("added", 0)),
            changed=0 if dry_run else int(report.get("changed", 0)),
            cleared=0 if dry_run else int(report.get("cleared", 0)),
        )


def task_tags(context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{"dag_id": ..., "task_id": ...}`` of the running task (``context``, else Airflow's current
    context), as Airflow tags its own task metrics; ``{}`` outside a task."""
    if context is None:
        try:
            context = get_current_context()
        except Exception:  # no task is running (a unit test, a script): no tags
            return {}
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return {}
    return {"dag_id": str(ti.dag_id), "task_id": str(ti.task_id)}


class ChartMogulMetrics:
    """One task's metrics. Thread-safe: the request engine calls it from every sending thread.

    :param tags: sent with every metric, e.g. :func:`task_tags`.
    :param stats: where metrics go; Airflow's ``Stats`` (a no-op until Airflow configures it).
    """

    def __init__(self, tags: Mapping[str, str] | None = None, *, stats: StatsBackend | None = None) -> None:
        self.tags = dict(tags or {})
        self._stats: Any = Stats if stats is None else stats
        self._lock = threading.Lock()
        self._last_rate: float | None = None

    def request_finished(self, outcome: RequestOutcome, seconds: float) -> None:
        """One attempt on the wire ended in ``outcome`` after ``seconds``."""
        if outcome not in REQUEST_OUTCOMES:
            raise ValueError(f"unknown request outcome {outcome!r}; one of {', '.join(REQUEST_OUTCOMES)}")
        self._stats.incr(f"{REQUESTS}.{outcome}", tags=self.tags)
        self._stats.timing(REQUEST_DURATION, dt.timedelta(seconds=max(0.0, seconds)), tags=self.tags)

    def send_rate(self, rate: float) -> None:
        """The limiter now allows ``rate`` requests/s; sent when it moved by 0.1/s or more."""
        with self._lock:
            if self._last_rate is not None and abs(rate - self._last_rate) < _RATE_STEP:
                return
            self._last_rate = rate
        self._stats.gauge(SEND_RATE, round(rate, 2), tags=self.tags)

    def run_finished(self, counts: RunCounts) -> None:
        """The run's customer and attribute counts, once at its end (zeros are sent too, so a
        dashboard tells a run that wrote nothing from one that sent no metrics)."""
        for name, value in (
            ("written", counts.written),
            ("failed", counts.failed),
            ("skipped", counts.skipped),
            ("unchanged", counts.unchanged),
        ):
            self._stats.incr(f"{CUSTOMERS}.{name}", value, tags=self.tags)
        for name, value in (
            ("added", counts.added),
            ("changed", counts.changed),
            ("cleared", counts.cleared),
        ):
            self._stats.incr(f"{ATTRIBUTES}.{name}", value, tags=self.tags)


class _NoLease:
    def release(self) -> None:
        pass


class RequestMetrics:
    """A send gate (``client.send_control.SendGate``) that holds nothing back and only listens:
    the engine's send control tells it the classified outcome of every attempt, and it sends the
    request counter, the latency (from the attempt's send slot to the end of its answer) and the
    send rate through :class:`ChartMogulMetrics`.

    :param metrics: where the metrics go.
    :param send_rate: the task's current send rate, requests/s (the rate limiter's ``rate``).
    """

    _LEASE: Final = _NoLease()

    def __init__(self, metrics: ChartMogulMetrics, *, send_rate: Callable[[], float] | None = None) -> None:
        self.metrics = metrics
        self._send_rate = send_rate

    def acquire(self, *, priority: bool, timeout: float | None) -> _NoLease:
        return self._LEASE

    def on_answer(self, ticket: Ticket, outcome: Classified, now: float) -> None:
        self.metrics.request_finished(outcome.cause, now - ticket.sent_at)
        if self._send_rate is not None:
            self.metrics.send_rate(self._send_rate())

    def cancel(self) -> None:
        pass
