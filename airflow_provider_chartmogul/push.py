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
    """The run stopped early; ``report`` says what had happened until then."""

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
        """Process every item; the report. Raises :class:`RunAborted` when the connection cannot
        work (401, 403, a refused TLS certificate); the report still names every record."""
        workers = self.hook.max_connections
        max_pending = workers * 4
        pending: set[Future[Outcome]] = set()
        waiting: dict[Future[Outcome], CustomerRecord] = {}
        # Finished futures arrive here through a done-callback: polling them with
        # concurrent.futures.wait() after every submit installed and removed a waiter on every
        # pending future each time (about 0.35 ms of CPU per customer).
        finished: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
        # Waking this thread costs CPU (about 0.1 ms on a VM), so while the queue of work is full
        # it is woken once per few finished records, or at once when one failed unexpectedly.
        wake = threading.Event()
        wake_after = workers

        def on_done(future: Future[Outcome]) -> None:
            finished.put(future)
            if finished.qsize() >= wake_after or (not future.cancelled() and future.exception()):
                wake.set()

        abort: ChartMogulFatalError | None = None

        def collect(block: bool) -> None:
            nonlocal abort
            while pending:
                try:
                    future = finished.get(block=block)
                except queue.Empty:
                    return
                block = False
                if future not in waiting:  # cancelled after an abort: already reported
                    continue
                pending.discard(future)
                record = waiting.pop(future)
                try:
                    self._record(future.result())
                except ChartMogulFatalError as exc:
                    abort = abort or exc
                    self.report.add(
                        Outcome.failure("api", record.label, record, str(exc), http_status=exc.status)
                    )

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chartmogul") as executor:
            for item in self._schedule(items):
                if isinstance(item, Outcome):
                    self._record(item)
                    continue
                future = executor.submit(self._process, item)
                pending.add(future)
                waiting[future] = item
                future.add_done_callback(on_done)
                while len(pending) >= max_pending:
                    wake.wait()
                    wake.clear()
                    collect(block=False)
                collect(block=False)
                if abort is not None:
                    break
            if abort is not None:
                for future in list(pending):
                    if future.cancel():
                        pending.discard(future)
                        self._record_not_attempted(waiting.pop(future), abort)
            while pending:
                collect(block=True)
        if abort is not None:
            # Nothing handed to the operator may go unreported: the rest of the input is read
            # (no request is sent for it) and listed as not attempted, ready to replay.
            while self._held:
                self._record_not_attempted(self._held.popleft(), abort)
            for item in self._parsed(items):
                if isinstance(item, Outcome):
                    self._record(item)
                else:
                    self._record_not_attempted(item, abort)

        self.report.extra["requests"] = self.hook.stats.snapshot()
        self.report.extra["customer_lookup"] = self._lookup_summary()
        self.report.extra["duration_seconds"] = round(time.monotonic() - self._started, 3)
        if abort is not None:
            self.report.aborted = str(abort)
            raise RunAborted(
                f"Stopped: {abort}. Nothing more was sent; fix the connection and re-run "
                f"(re-running is safe). {self.report.summary()}",
                self.report,
            )
        return self.report

    def _record_not_attempted(self, record: CustomerRecord, abort: ChartMogulFatalError) -> None:
        self.report.add(
            Outcome.failure(
                "aborted",
                record.label,
                record,
                f"not attempted: the run stopped ({abort.api_message})",
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
