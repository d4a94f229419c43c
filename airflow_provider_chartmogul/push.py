"""Push customer records to ChartMogul concurrently, and account for every one of them.

Records stream in (from XCom or SQL) and are parsed, resolved, planned and written by a bounded
pool of worker threads sharing the hook's session, rate limiter and connection cap. Only a
bounded number of records is held at once, and the report keeps counts and failures, not
successes, so memory does not grow with the number of customers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulCancelledError,
    ChartMogulFatalError,
    ChartMogulValidationError,
)
from airflow_provider_chartmogul.plan import ObservedTypes, find_conflicts, plan_add, plan_sync
from airflow_provider_chartmogul.records import CustomerRecord, RowError, describe_record, parse_record
from airflow_provider_chartmogul.report import Outcome, RunReport
from airflow_provider_chartmogul.resolve import CustomerResolver, ResolutionError

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook

Mode = Literal["add", "sync"]
Clear = Literal["ignore", "remove"]
CustomerLookup = Literal["auto", "per_customer", "listing"]

# How long a stopped run waits for the requests in flight (each ends within its own deadline).
_STOP_GRACE_SECONDS = 1.5


@dataclass(frozen=True)
class PushOptions:
    """How a run treats its records (the operator's arguments of the same names)."""

    mode: Mode = "add"
    dry_run: bool = False
    clear: Clear = "ignore"
    source: str | None = None
    customer_lookup: CustomerLookup = "auto"
    listing_threshold: int = 500
    progress_interval: float = 30.0

    @property
    def needs_state(self) -> bool:
        """Whether each customer's current attributes must be read before planning."""
        return self.mode == "sync" or self.dry_run


class RunAborted(Exception):
    """The run stopped early (a refused key, ``stop()``); ``report`` says what had happened until then."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class CustomAttributesPusher:
    """Runs records through parse → resolve → (read state →) plan → write, concurrently."""

    def __init__(self, hook: ChartMogulHook, options: PushOptions, log: logging.Logger | None = None) -> None:
        self.hook = hook
        self.options = options
        self.log = log or logging.getLogger(__name__)
        self.observed = ObservedTypes()
        self.resolver = CustomerResolver(hook, self.observed)
        self.report = RunReport(mode=options.mode, dry_run=options.dry_run, keep_plan=options.dry_run)
        self._last_progress = time.monotonic()
        self._started = time.monotonic()
        self._held: deque[CustomerRecord] = deque()
        self._parse_stream: Iterator[CustomerRecord | Outcome] | None = None
        self._stop_reason: str | None = None
        self._wake = threading.Event()

    def stop(self, reason: str) -> None:
        """Stop the run from any thread, a signal handler included: nothing more is submitted,
        queued records are cancelled, and :meth:`run` raises :class:`RunAborted` once the records
        in flight are back (or their grace time is over). Cancel the hook too, so that requests
        not yet sent are not sent."""
        if self._stop_reason is None:
            self._stop_reason = reason
        # A signal handler runs in the main thread, which may be inside wake.wait() holding the
        # event's lock: setting it there could deadlock. The main thread polls the reason instead.
        if threading.current_thread() is not threading.main_thread():
            self._wake.set()

    # ---- one record (runs in a worker thread) ---------------------------------------------------

    def _process(self, record: CustomerRecord) -> Outcome:
        raw = record  # turned into a replayable dict only if it fails
        uuid: str | None = record.customer_uuid
        try:
            uuid = self.resolver.resolve(record)
            current = self.resolver.current_attributes(uuid) if self.options.needs_state else None
            if not record.custom:
                return Outcome("skipped", record.label, raw, customer_uuid=uuid)
            conflicts = find_conflicts(record.custom, self.observed)
            if conflicts:
                return Outcome.failure(
                    "conflict",
                    record.label,
                    raw,
                    "type conflict, nothing was sent: " + "; ".join(conflicts),
                    customer_uuid=uuid,
                )
            if self.options.mode == "sync":
                assert current is not None
                plan = plan_sync(record.custom, current, clear=self.options.clear)
            else:
                plan = plan_add(record.custom, current)
            if not plan.changes and not plan.writes:
                return Outcome("skipped", record.label, raw, customer_uuid=uuid)
            if not self.options.dry_run:
                written = 0
                try:
                    if plan.post:
                        self.hook.add_custom_attributes(uuid, plan.post)
                        written += 1
                    if plan.put:
                        self.hook.update_custom_attributes(uuid, plan.put)
                        written += 1
                    if plan.delete:
                        self.hook.remove_custom_attributes(uuid, plan.delete)
                        written += 1
                except ChartMogulAPIError as exc:
                    if written and not isinstance(exc, ChartMogulFatalError):
                        exc.api_message += (
                            f" ({written} of {plan.writes} requests for this customer went through;"
                            " replaying it is safe)"
                        )
                        exc.refresh_message()
                    raise
            return Outcome("succeeded", record.label, raw, customer_uuid=uuid, changes=plan.changes)
        except ChartMogulFatalError:
            raise
        except ResolutionError as exc:
            return Outcome.failure("resolution", record.label, raw, str(exc), http_status=exc.status)
        except ChartMogulAPIError as exc:
            return Outcome.failure(
                "api", record.label, raw, str(exc), http_status=exc.status, customer_uuid=uuid
            )
        except ChartMogulValidationError as exc:
            return Outcome.failure("validation", record.label, raw, str(exc), customer_uuid=uuid)

    # ---- the stream ------------------------------------------------------------------------------

    def _parse(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        allow_clear = self.options.mode == "sync"
        for index, item in enumerate(items):
            if isinstance(item, RowError):
                yield Outcome.failure("validation", item.label, item.record, item.message)
                continue
            try:
                yield parse_record(
                    item, index=index, default_source=self.options.source, allow_clear=allow_clear
                )
            except ChartMogulValidationError as exc:
                yield Outcome.failure("validation", describe_record(item, index), item, str(exc))

    def _needs_lookup(self, record: CustomerRecord) -> bool:
        return record.customer_uuid is None or self.options.needs_state

    def _schedule(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        """Parsed records in the order to process them, building the directory when it pays off.

        With ``customer_lookup="auto"``, records that need a lookup are held back (up to
        ``listing_threshold`` of them): if more arrive, one pass over the customer listing
        replaces them all; if the input ends first, each is looked up on its own.
        """
        options = self.options
        if options.customer_lookup == "listing":
            self._build_directory("customer_lookup='listing'")
        held = self._held
        for item in self._parsed(items):
            if (
                isinstance(item, Outcome)
                or options.customer_lookup != "auto"
                or self.resolver.directory is not None
                or not self._needs_lookup(item)
            ):
                yield item
                continue
            held.append(item)
            if len(held) > options.listing_threshold:
                self._build_directory(f"more than {options.listing_threshold} customers to look up")
                while held:
                    yield held.popleft()
        if held:
            self.log.info("Looking up %d customers one by one (per-customer lookups)", len(held))
        while held:
            yield held.popleft()

    def _parsed(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        if self._parse_stream is None:
            self._parse_stream = self._parse(items)
        return self._parse_stream

    def _build_directory(self, why: str) -> None:
        started = time.monotonic()
        directory = self.resolver.build_directory(keep_state=self.options.needs_state)
        self.log.info(
            "Indexed %d ChartMogul customers from the customer listing (%s): %d requests in %.1f s",
            directory.customers,
            why,
            directory.requests,
            time.monotonic() - started,
        )

    def _record(self, outcome: Outcome) -> None:
        self.report.add(outcome)
        if outcome.status == "failed":
            error = outcome.error or ""
            # Validation errors already start with the record's label.
            subject = "" if error.startswith(outcome.label) else f"{outcome.label}: "
            self.log.warning("Failed (%s): %s%s", outcome.stage, subject, error)
        now = time.monotonic()
        if now - self._last_progress >= self.options.progress_interval:
            self._last_progress = now
            counts = self.report.counts
            self.log.info(
                "Progress: %d customers done (%d succeeded, %d failed, %d skipped), %.1f customers/s",
                counts["total"],
                counts["succeeded"],
                counts["failed"],
                counts["skipped"],
                counts["total"] / max(now - self._started, 1e-9),
            )

    def run(self, items: Iterable[Any]) -> RunReport:
        """Process every item; the report.

        Raises :class:`RunAborted` when the connection cannot work (401, 403, a refused TLS
        certificate) or the run was stopped (:meth:`stop`). An exception raised into this thread
        (``AirflowTaskTimeout``, Airflow 2's ``AirflowTaskTerminated``) cancels the hook, leaves
        the partial report in :attr:`report` and is re-raised. Either way the report names every
        record: written, failed, or not attempted (ready to replay).
        """
        self._finished = False
        try:
            abort = self._run(items)
        except BaseException as exc:
            reason = f"the task was interrupted ({type(exc).__name__}: {exc})".replace(": )", ")")
            self.stop(reason)
            self.hook.cancel(reason)
            self._drain(reason)
            self._finish(reason)
            raise
        if abort is not None:
            self._drain(abort)
            self._finish(abort)
            raise RunAborted(
                f"Stopped: {abort}. Nothing more was sent; fix the connection and re-run "
                f"(re-running is safe). {self.report.summary()}",
                self.report,
            ) from self._stopped_by
        self._finish(None)
        return self.report

    def _run(self, items: Iterable[Any]) -> str | None:
        """The main loop; why the run stopped early, or None when every record was processed."""
        workers = self.hook.max_connections
        max_pending = workers * 4
        self._pending: set[Future[Outcome]] = set()
        self._waiting: dict[Future[Outcome], CustomerRecord] = {}
        pending, waiting = self._pending, self._waiting
        # Finished futures arrive here through a done-callback: polling them with
        # concurrent.futures.wait() after every submit installed and removed a waiter on every
        # pending future each time (about 0.35 ms of CPU per customer).
        finished: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
        self._finished_queue = finished
        # Waking this thread costs CPU (about 0.1 ms on a VM), so while the queue of work is full
        # it is woken once per few finished records, or at once when one failed unexpectedly.
        wake = self._wake
        wake_after = workers

        def on_done(future: Future[Outcome]) -> None:
            finished.put(future)
            if finished.qsize() >= wake_after or (not future.cancelled() and future.exception()):
                wake.set()

        self._executor = executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chartmogul")
        try:
            try:
                for item in self._schedule(items):
                    if isinstance(item, Outcome):
                        self._record(item)
                    else:
                        future = executor.submit(self._process, item)
                        pending.add(future)
                        waiting[future] = item
                        future.add_done_callback(on_done)
                    while len(pending) >= max_pending and self._abort is None:
                        # With a timeout: stop() from a signal handler does not set the event.
                        wake.wait(0.2)
                        wake.clear()
                        self._collect(block=False)
                        self._check_stop()
                    self._collect(block=False)
                    self._check_stop()
                    if self._abort is not None:
                        return self._abort
            except ChartMogulFatalError as exc:  # the listing, read in this thread, failed
                if self._abort is None:
                    self._stopped_by = exc
                self._abort = self._abort or self._reason(exc)
                return self._abort
            while pending and self._abort is None:
                self._collect(block=True, timeout=0.2)
                self._check_stop()
            return self._abort
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    _abort: str | None = None
    # The error that set _abort, if one did: RunAborted is raised from it (the operator fails
    # without Airflow retries when it is an AirflowFailException).
    _stopped_by: ChartMogulFatalError | None = None
    _executor: ThreadPoolExecutor | None = None

    @staticmethod
    def _reason(exc: ChartMogulFatalError) -> str:
        return exc.api_message if isinstance(exc, ChartMogulCancelledError) else str(exc)

    def _check_stop(self) -> None:
        if self._stop_reason is not None and self._abort is None:
            self._abort = self._stop_reason
            self.hook.cancel(self._stop_reason)

    def _collect(self, block: bool, timeout: float | None = None) -> None:
        pending, waiting = self._pending, self._waiting
        while pending:
            try:
                future = self._finished_queue.get(block=block, timeout=timeout)
            except queue.Empty:
                return
            block = False
            if future not in waiting:  # cancelled after an abort: already reported
                continue
            pending.discard(future)
            record = waiting.pop(future)
            try:
                self._record(future.result())
            except ChartMogulCancelledError as exc:
                self._abort = self._abort or self._stop_reason or exc.api_message
                self._record_not_attempted(record, self._abort)
            except ChartMogulFatalError as exc:
                if self._abort is None:
                    self._stopped_by = exc
                self._abort = self._abort or str(exc)
                self.hook.cancel(f"the run stopped: {exc}")
                self.report.add(
                    Outcome.failure("api", record.label, record, str(exc), http_status=exc.status)
                )
            except Exception as exc:  # a bug: still account for the record, then let it surface
                self.report.add(Outcome.failure("api", record.label, record, f"unexpected error: {exc!r}"))
                raise

    def _drain(self, reason: str) -> None:
        """After the run stopped: every record handed out or still unread reported, nothing sent."""
        pending: set[Future[Outcome]] = getattr(self, "_pending", set())
        waiting = getattr(self, "_waiting", {})
        for future in list(pending):
            if future.cancel():
                pending.discard(future)
                self._record_not_attempted(waiting.pop(future), reason)
        # Requests in flight end within their deadline; a record whose answer takes longer than the
        # grace time is reported as in flight (it may or may not have been applied).
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while pending and (remaining := deadline - time.monotonic()) > 0:
            self._collect(block=True, timeout=min(remaining, 0.2))
        for future in list(pending):
            pending.discard(future)
            record = waiting.pop(future)
            self.report.add(
                Outcome.failure(
                    "aborted",
                    record.label,
                    record,
                    f"in flight when the run stopped ({reason}): it may or may not have been "
                    "applied; replaying it is safe",
                )
            )
        # Nothing handed to the operator may go unreported: the rest of the input is read
        # (no request is sent for it) and listed as not attempted, ready to replay.
        while self._held:
            self._record_not_attempted(self._held.popleft(), reason)
        if self._parse_stream is not None:
            for item in self._parse_stream:
                if isinstance(item, Outcome):
                    self._record(item)
                else:
                    self._record_not_attempted(item, reason)

    def _finish(self, aborted: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self.report.extra["requests"] = self.hook.stats.snapshot()
        self.report.extra["customer_lookup"] = self._lookup_summary()
        self.report.extra["duration_seconds"] = round(time.monotonic() - self._started, 3)
        if aborted is not None:
            self.report.aborted = aborted
            self.report.extra["not_attempted"] = sum(
                1 for f in self.report.failures if f["stage"] == "aborted"
            )

    def _record_not_attempted(self, record: CustomerRecord, reason: str) -> None:
        self.report.add(
            Outcome.failure(
                "aborted",
                record.label,
                record,
                f"not attempted: the run stopped ({reason})",
            )
        )

    def _lookup_summary(self) -> dict[str, Any]:
        directory = self.resolver.directory
        if directory is not None:
            return {
                "strategy": "listing",
                "requests": directory.requests + self.resolver.lookup_requests,
                "customers_indexed": directory.customers,
            }
        if self.resolver.lookup_requests:
            return {"strategy": "per_customer", "requests": self.resolver.lookup_requests}
        return {"strategy": "none", "requests": 0}
