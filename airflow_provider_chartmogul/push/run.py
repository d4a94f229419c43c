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
from airflow_provider_chartmogul.push.intake import CustomerIntake, Strategy
from airflow_provider_chartmogul.push.listing import ListingReader
from airflow_provider_chartmogul.push.plan import ObservedTypes, find_conflicts, plan_add, plan_sync
from airflow_provider_chartmogul.push.records import CustomerRecord, describe_record, parse_record
from airflow_provider_chartmogul.push.report import Outcome, RunReport
from airflow_provider_chartmogul.push.resolve import CustomerResolver, ResolutionError
from airflow_provider_chartmogul.push.schedule import CustomerOrder, Entry
from airflow_provider_chartmogul.push.sql_rows import RowError

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


# Records read but not finished, at most: bounds memory when many wait for the listing.
MAX_WAITING = 10_000


class CustomAttributesPusher(CustomerIntake):
    """Runs records through parse → resolve → (read state →) plan → write, concurrently, keeping
    each customer's writes in input order (:mod:`airflow_provider_chartmogul.push.schedule`)."""

    def __init__(self, hook: ChartMogulHook, options: PushOptions, log: logging.Logger | None = None) -> None:
        self.hook = hook
        self.options = options
        self.log = log or logging.getLogger(__name__)
        self.observed = ObservedTypes()
        self.resolver = CustomerResolver(hook, self.observed)
        self.report = RunReport(mode=options.mode, dry_run=options.dry_run, keep_plan=options.dry_run)
        self._last_progress = time.monotonic()
        self._started = time.monotonic()
        self._parse_stream: Iterator[CustomerRecord | Outcome] | None = None
        self._stop_reason: str | None = None
        self._wake = threading.Event()
        self.order = CustomerOrder(self._known)
        self._live: dict[int, Entry] = {}
        self._held: list[Entry] = []  # waiting for the choice between lookups and the listing
        self._lookups_needed = 0
        self._strategy: Strategy = {"auto": "undecided", "per_customer": "per_customer"}.get(
            options.customer_lookup, "listing"
        )  # type: ignore[assignment]
        self._listing: ListingReader | None = None
        self._listed = False  # the whole listing is indexed
        self._waiting_ids: dict[tuple[str, str], list[Entry]] = {}
        self._ready: deque[Entry] = deque()
        self._pending: dict[Future[Any], tuple[str, Entry]] = {}
        self._finished_queue: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._wake_after = 1
        self._executor: ThreadPoolExecutor | None = None
        self._finished = False

    _abort: str | None = None
    _stopped_by: ChartMogulFatalError | None = None

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

    def _lookup(self, record: CustomerRecord) -> str:
        return self.resolver.resolve(record)

    def _write(
        self, record: CustomerRecord, uuid: str, current: dict[str, Any] | None
    ) -> tuple[Outcome, dict[str, Any] | None]:
        """Plan and write one record; its outcome and the customer's attributes after it (None
        when unknown or unchanged)."""
        raw = record  # turned into a replayable dict only if it fails
        try:
            if current is None and self.options.needs_state:
                current = self.resolver.current_attributes(uuid)
            if not record.custom:
                return Outcome("skipped", record.label, raw, customer_uuid=uuid), None
            conflicts = find_conflicts(record.custom, self.observed)
            if conflicts:
                error = "type conflict, nothing was sent: " + "; ".join(conflicts)
                return Outcome.failure("conflict", record.label, raw, error, customer_uuid=uuid), None
            if self.options.mode == "sync":
                assert current is not None
                plan = plan_sync(record.custom, current, clear=self.options.clear)
            else:
                plan = plan_add(record.custom, current)
            if not plan.changes and not plan.writes:
                return Outcome("skipped", record.label, raw, customer_uuid=uuid), None
            after: dict[str, Any] | None = None
            if not self.options.dry_run:
                written = 0
                try:
                    if plan.post:
                        after = self.hook.add_custom_attributes(uuid, plan.post)
                        written += 1
                    if plan.put:
                        after = self.hook.update_custom_attributes(uuid, plan.put)
                        written += 1
                    if plan.delete:
                        removed = self.hook.remove_custom_attributes(uuid, plan.delete)
                        base = after if after is not None else dict(current or {})
                        after = (
                            removed
                            if removed is not None
                            else {k: v for k, v in base.items() if k not in plan.delete}
                        )
                        written += 1
                except ChartMogulAPIError as exc:
                    if written and not isinstance(exc, ChartMogulFatalError):
                        exc.api_message += (
                            f" ({written} of {plan.writes} requests for this customer went through;"
                            " replaying it is safe)"
                        )
                        exc.refresh_message()
                    raise
            outcome = Outcome("succeeded", record.label, raw, customer_uuid=uuid, changes=plan.changes)
            return outcome, after
        except ChartMogulFatalError:
            raise
        except ResolutionError as exc:
            return Outcome.failure("resolution", record.label, raw, str(exc), http_status=exc.status), None
        except ChartMogulAPIError as exc:
            outcome = Outcome.failure(
                "api", record.label, raw, str(exc), http_status=exc.status, customer_uuid=uuid
            )
            return outcome, None
        except ChartMogulValidationError as exc:
            return Outcome.failure("validation", record.label, raw, str(exc), customer_uuid=uuid), None

    # ---- the stream ------------------------------------------------------------------------------

    def _parse(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        allow_clear = self.options.mode == "sync"
        for index, item in enumerate(items):
            if isinstance(item, RowError):
                yield Outcome.failure(item.stage, item.label, item.record, item.message)  # type: ignore[arg-type]
                continue
            try:
                yield parse_record(
                    item, index=index, default_source=self.options.source, allow_clear=allow_clear
                )
            except ChartMogulValidationError as exc:
                yield Outcome.failure("validation", describe_record(item, index), item, str(exc))

    def _parsed(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        if self._parse_stream is None:
            self._parse_stream = self._parse(items)
        return self._parse_stream

    # ---- the main loop -----------------------------------------------------------------------------

    def run(self, items: Iterable[Any]) -> RunReport:
        """Process every item; the report.

        Raises :class:`RunAborted` when the connection cannot work (401, 403, a refused TLS
        certificate) or the run was stopped (:meth:`stop`). An exception raised into this thread
        (``AirflowTaskTimeout``, Airflow 2's ``AirflowTaskTerminated``) cancels the hook, leaves
        the partial report in :attr:`report` and is re-raised. Either way the report names every
        record: written, failed, or not attempted (ready to replay).
        """
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
        stream = self._parsed(items)
        exhausted = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chartmogul")
        if self._strategy == "listing":
            self._strategy = "undecided"
            self._start_listing("customer_lookup='listing'")
        try:
            while True:
                self._check_stop()
                self._take_pages()
                self._collect()
                if self._abort is not None:
                    return self._abort
                while not exhausted and len(self._pending) + len(self._ready) < max_pending:
                    if len(self._live) >= MAX_WAITING:
                        self._decide_per_customer()
                        break
                    item = next(stream, None)
                    if item is None:
                        exhausted = True
                        self._decide_per_customer()
                    elif isinstance(item, Outcome):
                        self._record(item)
                    else:
                        self._admit(item)
                    self._release()
                    self._submit(max_pending)
                self._release()
                self._submit(max_pending)
                if exhausted and not self._live:
                    return None
                # Waking costs CPU (about 0.1 ms on a VM): with the pool full, once per few
                # finished records; otherwise at the first. With a timeout: stop() from a signal
                # handler does not set the event.
                self._wake_after = workers if len(self._pending) >= max_pending else 1
                if self._finished_queue.empty() and (self._listing is None or self._listing.pages.empty()):
                    self._wake.wait(0.2)
                self._wake.clear()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self) -> None:
        self._ready.extend(self.order.runnable())

    def _submit(self, max_pending: int) -> None:
        while self._ready and len(self._pending) < max_pending and self._abort is None:
            entry = self._ready.popleft()
            self._submit_now("write", entry)

    def _submit_now(self, kind: str, entry: Entry) -> None:
        assert self._executor is not None
        record = entry.record
        future: Future[Any]
        if kind == "lookup":
            future = self._executor.submit(self._lookup, record)
        else:
            uuid = entry.uuid
            assert uuid is not None
            current = None
            if entry.listed:
                directory = self.resolver.directory
                assert directory is not None
                try:
                    current = directory.state(uuid)
                except ResolutionError as exc:
                    outcome = Outcome.failure("resolution", record.label, record, str(exc), http_status=404)
                    self._done(entry, outcome)
                    return
            future = self._executor.submit(self._write, record, uuid, current)
        self._pending[future] = (kind, entry)
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Future[Any]) -> None:
        self._finished_queue.put(future)
        if self._finished_queue.qsize() >= self._wake_after or (
            not future.cancelled() and future.exception()
        ):
            self._wake.set()

    def _done(self, entry: Entry, outcome: Outcome) -> None:
        self._live.pop(entry.index, None)
        if entry.uuid is not None and not entry.unresolved and entry.running:
            self.order.done(entry)
        self._record(outcome)

    def _set_abort(self, reason: str, error: ChartMogulFatalError | None) -> None:
        if self._abort is None:
            self._abort, self._stopped_by = reason, error
            self.hook.cancel(f"the run stopped: {reason}")
            if self._listing is not None:
                self._listing.stop()

    def _notify(self) -> None:
        self._wake.set()

    def _check_stop(self) -> None:
        if self._stop_reason is not None and self._abort is None:
            self._set_abort(self._stop_reason, None)

    def _collect(self, timeout: float | None = None) -> None:
        """Handle the finished futures (waiting up to ``timeout`` for the first, if given)."""
        block = timeout is not None
        while self._pending:
            try:
                future = self._finished_queue.get(block=block, timeout=timeout)
            except queue.Empty:
                return
            block = False
            taken = self._pending.pop(future, None)
            if taken is None:  # cancelled after an abort: already reported
                continue
            kind, entry = taken
            record = entry.record
            try:
                result = future.result()
            except ChartMogulCancelledError as exc:
                self._set_abort(self._stop_reason or exc.api_message, None)
                self.order.drop(entry)
                self._done(entry, self._not_attempted(record, self._abort or ""))
                continue
            except ChartMogulFatalError as exc:
                self._set_abort(str(exc), exc)
                self.order.drop(entry)
                self._done(
                    entry, Outcome.failure("api", record.label, record, str(exc), http_status=exc.status)
                )
                continue
            except ResolutionError as exc:  # a lookup
                self.order.drop(entry)
                self._done(
                    entry,
                    Outcome.failure("resolution", record.label, record, str(exc), http_status=exc.status),
                )
                continue
            except ChartMogulAPIError as exc:  # a lookup
                self.order.drop(entry)
                self._done(
                    entry, Outcome.failure("api", record.label, record, str(exc), http_status=exc.status)
                )
                continue
            except Exception as exc:  # a bug: still account for the record, then let it surface
                self.order.drop(entry)
                self._done(entry, Outcome.failure("api", record.label, record, f"unexpected error: {exc!r}"))
                raise
            if kind == "lookup":
                self.order.place(entry, result)
                continue
            outcome, after = result
            if after is not None and entry.listed and self.resolver.directory is not None:
                self.resolver.directory.set_state(entry.uuid, after)  # type: ignore[arg-type]
            self._done(entry, outcome)

    def _drain(self, reason: str) -> None:
        """After the run stopped: every record handed out or still unread reported, nothing sent."""
        if self._listing is not None:
            self._listing.stop()
        for future in list(self._pending):
            if future.cancel():
                _, entry = self._pending.pop(future)
                self._done(entry, self._not_attempted(entry.record, reason))
        # Requests in flight end within their deadline; a record whose answer takes longer than the
        # grace time is reported as in flight (it may or may not have been applied).
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while self._pending and (remaining := deadline - time.monotonic()) > 0:
            self._collect(timeout=min(remaining, 0.2))
        for _, entry in self._pending.values():
            self._done(
                entry,
                Outcome.failure(
                    "aborted",
                    entry.record.label,
                    entry.record,
                    f"in flight when the run stopped ({reason}): it may or may not have been "
                    "applied; replaying it is safe",
                ),
            )
        self._pending.clear()
        # Nothing handed to the operator may go unreported: the rest of the input is read
        # (no request is sent for it) and listed as not attempted, ready to replay.
        for entry in sorted(self._live.values(), key=lambda e: e.index):
            self.report.add(self._not_attempted(entry.record, reason))
        self._live.clear()
        if self._parse_stream is not None:
            for item in self._parse_stream:
                if isinstance(item, Outcome):
                    self._record(item)
                else:
                    self.report.add(self._not_attempted(item, reason))

    def _finish(self, aborted: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        if self._listing is not None and self.resolver.directory is not None:
            self.resolver.directory.requests = self._listing.requests
        self.report.extra["requests"] = self.hook.stats.snapshot()
        self.report.extra["customer_lookup"] = self._lookup_summary()
        self.report.extra["duration_seconds"] = round(time.monotonic() - self._started, 3)
        if aborted is not None:
            self.report.aborted = aborted
            self.report.extra["not_attempted"] = sum(
                1 for f in self.report.failures if f["stage"] == "aborted"
            )

    @staticmethod
    def _not_attempted(record: CustomerRecord, reason: str) -> Outcome:
        return Outcome.failure("aborted", record.label, record, f"not attempted: the run stopped ({reason})")

    def _record(self, outcome: Outcome) -> None:
        self.report.add(outcome)
        if outcome.status == "failed" and outcome.stage != "aborted":
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
