"""Push customer records to ChartMogul concurrently, and account for every one of them.

Records stream in (from XCom or SQL) and are parsed, resolved, planned and written by a bounded
pool of worker threads sharing the hook's session, rate limiter and connection cap. Only a
bounded number of records is held at once, the customer listing is indexed outside the heap, and
the report keeps counts and failures, not successes (docs/large-accounts.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulCancelledError,
    ChartMogulFatalError,
    ChartMogulValidationError,
)
from airflow_provider_chartmogul.push.checkpoint import Checkpoint
from airflow_provider_chartmogul.push.intake import CustomerIntake
from airflow_provider_chartmogul.push.mirror import MirrorPlan, PlanRefused, stopped_by
from airflow_provider_chartmogul.push.options import PushOptions
from airflow_provider_chartmogul.push.plan import (
    ObservedTypes,
    Plan,
    check_answer,
    find_conflicts,
    plan_add,
    plan_sync,
)
from airflow_provider_chartmogul.push.records import CustomerRecord, describe_record, parse_record
from airflow_provider_chartmogul.push.report import Outcome, RunReport
from airflow_provider_chartmogul.push.resolve import CustomerResolver, ResolutionError
from airflow_provider_chartmogul.push.send import apply_plan, customer_moved
from airflow_provider_chartmogul.push.sql_rows import RejectedInput
from airflow_provider_chartmogul.push.write_order import Entry

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook

# How long a stopped run waits for the requests in flight (each ends within its own deadline).
_STOP_GRACE_SECONDS = 1.5
# Worker threads per connection. More would keep threads free while customers sleep in retry
# back-off, but each extra thread also waits for a send slot, and that wait counts against its
# retry budget: when throttled (429s), 4 per connection made some customers fail unsent.
_WORKERS_PER_CONNECTION = 1

# Records read but not finished, at most: bounds memory when many wait for the listing.
MAX_WAITING = 10_000


class RunAborted(Exception):
    """The run stopped early (a refused key, ``stop()``); ``report`` says what had happened until then."""

    def __init__(self, message: str, report: RunReport) -> None:
        super().__init__(message)
        self.report = report


class CustomAttributesPusher:
    """Runs records through parse → resolve → (read state →) plan → write, concurrently, keeping
    each customer's writes in input order (:mod:`airflow_provider_chartmogul.push.write_order`)."""

    def __init__(
        self,
        hook: ChartMogulHook,
        options: PushOptions,
        log: logging.Logger | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.hook = hook
        self.options = options
        self.checkpoint = checkpoint or Checkpoint(None)  # a no-op without a task state store
        self.log = log or logging.getLogger(__name__)
        self.observed = ObservedTypes()
        self.resolver = CustomerResolver(hook, self.observed)
        self.report = RunReport(mode=options.mode, dry_run=options.dry_run, keep_plan=options.dry_run)
        self._wake = threading.Event()
        self.intake = CustomerIntake(
            hook,
            options,
            self.observed,
            submit_lookup=self._submit_lookup,
            finish=self._done,
            abort=self._set_abort,
            notify=self._wake.set,
            log=self.log,
        )
        self._last_progress = time.monotonic()
        self._started = time.monotonic()
        self._parse_stream: Iterator[CustomerRecord | Outcome] | None = None
        self._input: Iterable[Any] = ()
        self._read = 0  # input items taken so far
        self._exhausted = False  # the input was read to its end
        self._stop_reason: str | None = None
        self._abort: str | None = None
        self._stopped_by: ChartMogulFatalError | None = None
        self._live: dict[int, Entry] = {}
        self._ready: deque[Entry] = deque()
        self._pending: dict[Future[Any], tuple[str, Entry]] = {}
        self._finished_queue: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._wake_after = 1
        self._executor: ThreadPoolExecutor | None = None
        self._finished = False
        self.mirror: MirrorPlan | None = None

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

    def _write(
        self, record: CustomerRecord, uuid: str, current: dict[str, Any] | None, plan: Plan | None = None
    ) -> tuple[Outcome, dict[str, Any] | None]:
        """Plan (unless given) and write one record: its outcome, the attributes after (None: unknown)."""
        try:
            try:
                return self._attempt(record, uuid, current, plan)
            except (ChartMogulAPIError, ResolutionError) as exc:
                if not customer_moved(record, exc):
                    raise
            uuid = self.resolver.resolve(record)  # once more: a merge gives the customer a new uuid
            outcome, after = self._attempt(record, uuid, None, None)
            outcome.re_resolved = True
            return outcome, after
        except ChartMogulFatalError:
            raise
        except ResolutionError as exc:
            return Outcome.failure("resolution", record.label, record, str(exc), http_status=exc.status), None
        except ChartMogulAPIError as exc:
            outcome = Outcome.failure(
                "api", record.label, record, str(exc), http_status=exc.status, customer_uuid=uuid
            )
            return outcome, None
        except ChartMogulValidationError as exc:
            return Outcome.failure("validation", record.label, record, str(exc), customer_uuid=uuid), None

    def _attempt(
        self, record: CustomerRecord, uuid: str, current: dict[str, Any] | None, plan: Plan | None
    ) -> tuple[Outcome, dict[str, Any] | None]:
        if plan is None:
            if current is None and self.options.needs_state:
                current = self.resolver.current_attributes(uuid)
            decided = self._decide(record, uuid, current)
            if isinstance(decided, Outcome):
                return decided, None
            plan = decided
        after = None if self.options.dry_run else apply_plan(self.hook, uuid, plan, current)
        if problems := check_answer(record.custom, plan, after):  # answered, but did not take
            error = "the write was answered but did not take: " + "; ".join(problems)
            return Outcome.failure("verify", record.label, record, error, customer_uuid=uuid), after
        return Outcome("succeeded", record.label, record, customer_uuid=uuid, changes=plan.changes), after

    def _decide(self, record: CustomerRecord, uuid: str, current: dict[str, Any] | None) -> Plan | Outcome:
        """What to send for ``record``: a plan, or the outcome when nothing is to be sent."""
        if not record.custom:
            return Outcome("skipped", record.label, record, customer_uuid=uuid)
        conflicts = find_conflicts(record.custom, self.observed)
        if conflicts:
            error = "type conflict, nothing was sent: " + "; ".join(conflicts)
            return Outcome.failure("conflict", record.label, record, error, customer_uuid=uuid)
        if self.options.mode != "add":
            assert current is not None
            plan = plan_sync(record.custom, current, clear="remove" if self.options.keeps_nulls else "ignore")
        else:
            plan = plan_add(record.custom, current)
        if not plan.changes and not plan.writes:
            return Outcome("skipped", record.label, record, customer_uuid=uuid)
        return plan

    # ---- the stream ------------------------------------------------------------------------------

    def _parse(self, items: Iterable[Any]) -> Iterator[CustomerRecord | Outcome]:
        allow_clear, source = self.options.mode != "add", self.options.source
        for index, item in enumerate(items):
            self._read = index + 1
            if self.checkpoint.should_skip(index):  # an earlier try answered it
                continue
            if isinstance(item, RejectedInput):
                yield Outcome.failure(item.stage, item.label, item.record, item.message)  # type: ignore[arg-type]
            elif isinstance(item, CustomerRecord):  # a mirror's phase one parsed it: checked once
                yield item
            else:
                try:
                    yield parse_record(item, index=index, default_source=source, allow_clear=allow_clear)
                except ChartMogulValidationError as exc:
                    yield Outcome.failure("validation", describe_record(item, index), item, str(exc))
        self._exhausted = True

    # ---- the main loop -----------------------------------------------------------------------------

    def run(self, items: Iterable[Any]) -> RunReport:
        """Process every item; the report.

        Raises :class:`RunAborted` when the connection cannot work (401, 403, a refused TLS
        certificate) or the run was stopped (:meth:`stop`). An exception raised into this thread
        (``AirflowTaskTimeout``, Airflow 2's ``AirflowTaskTerminated``) cancels the hook, leaves
        the partial report in :attr:`report` and is re-raised. Either way the report names every
        record read: written, failed, or not attempted (ready to replay); the input not read yet
        is counted, not read (``input_complete`` false).
        """
        if self.options.mode == "mirror":
            items = self._plan_mirror(items)
        self._input = items = self.checkpoint.watch(items)
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
                f"Stopped: {abort}. Nothing more was sent. {self.report.summary()}",
                self.report,
            ) from self._stopped_by
        self._finish(None)
        return self.report

    def _plan_mirror(self, items: Iterable[Any]) -> Iterable[Any]:
        """Phase one of a mirror (push/mirror.py); a refused plan finishes the report and raises."""
        self.mirror = mirror = MirrorPlan(self.hook, self.options, self.observed, lambda: self._stop_reason)
        try:
            items = mirror.prepare(items)
        except ChartMogulAPIError as exc:  # _run stops at once: nothing was sent
            self._set_abort(self._stop_reason or f"the customer listing failed: {exc}", stopped_by(exc))
            return iter(())
        if mirror.refused is not None and not self.options.dry_run:
            self._finish(None)
            raise PlanRefused(mirror.refused, self.report)
        return items

    def _run(self, items: Iterable[Any]) -> str | None:
        """The main loop; why the run stopped early, or None when every record was processed."""
        workers = self.hook.max_connections * _WORKERS_PER_CONNECTION
        max_pending = workers  # every record handed out has a thread
        self._parse_stream = stream = self._parse(items)
        exhausted = False
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chartmogul")
        self.intake.start()
        try:
            while True:
                self._check_stop()
                self.intake.take_pages()
                self._collect()
                self.checkpoint.flush(time.monotonic())
                if self._abort is not None:
                    return self._abort
                while not exhausted and len(self._pending) + len(self._ready) < max_pending:
                    if len(self._live) >= MAX_WAITING:
                        self.intake.input_ended()
                        break
                    item = next(stream, None)
                    if item is None:
                        exhausted = True
                        self.intake.input_ended()
                    elif isinstance(item, Outcome):
                        self._record(item)
                    else:
                        entry = Entry(item)
                        self._live[entry.index] = entry
                        self.intake.admit(entry)
                    self._release_and_submit(max_pending)
                self._release_and_submit(max_pending)
                if exhausted and not self._live:
                    return None
                # Waking costs CPU (about 0.1 ms on a VM): with the pool full, once per few
                # finished records; otherwise at the first. With a timeout: stop() from a signal
                # handler does not set the event.
                self._wake_after = max_pending // 4 if len(self._pending) >= max_pending else 1
                listing = self.intake.listing
                if self._finished_queue.empty() and (listing is None or listing.pages.empty()):
                    self._wake.wait(0.2)
                self._wake.clear()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _release_and_submit(self, max_pending: int) -> None:
        # Records decided here finish at once and may release the next of their customer's.
        while True:
            self._ready.extend(self.intake.order.runnable())
            while self._ready and len(self._pending) < max_pending and self._abort is None:
                self._submit_write(self._ready.popleft())
            if self._ready or self._abort is not None or not self.intake.order.has_runnable():
                return

    def _submit_lookup(self, entry: Entry) -> None:
        assert self._executor is not None
        self._track(self._executor.submit(self.resolver.resolve, entry.record), "lookup", entry)

    def _submit_write(self, entry: Entry) -> None:
        assert self._executor is not None and entry.uuid is not None
        record, uuid = entry.record, entry.uuid
        if not entry.listed:
            self._track(self._executor.submit(self._write, record, uuid, None), "write", entry)
            return
        # The state is at hand: decide here, and hand a worker only what is to be sent (most
        # customers of a daily sync have nothing to send).
        current = self.intake.listed_state(uuid)
        if current is None:
            error = f"no ChartMogul customer has customer_uuid {uuid!r}"
            self._done(entry, Outcome.failure("resolution", record.label, record, error, http_status=404))
            return
        decided = self._decide(record, uuid, current)
        if isinstance(decided, Outcome):
            self._done(entry, decided)
        elif self.options.dry_run or not decided.writes:
            outcome = Outcome("succeeded", record.label, record, customer_uuid=uuid, changes=decided.changes)
            self._done(entry, outcome)
        else:
            self._track(self._executor.submit(self._write, record, uuid, current, decided), "write", entry)

    def _track(self, future: Future[Any], kind: str, entry: Entry) -> None:
        self._pending[future] = (kind, entry)
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Future[Any]) -> None:
        self._finished_queue.put(future)
        failed = not future.cancelled() and future.exception() is not None
        if failed or self._finished_queue.qsize() >= self._wake_after:
            self._wake.set()

    def _done(self, entry: Entry, outcome: Outcome) -> None:
        self._live.pop(entry.index, None)
        if outcome.status != "failed":
            self.checkpoint.mark_done(entry.index)
        if entry.uuid is not None and not entry.unresolved and entry.running:
            self.intake.order.done(entry)
        self._record(outcome)

    def _set_abort(self, reason: str, error: ChartMogulFatalError | None) -> None:
        if self._abort is None:
            self._abort, self._stopped_by = reason, error
            self.hook.cancel(f"the run stopped: {reason}")
            if self.intake.listing is not None:
                self.intake.listing.stop()

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
            try:
                result = future.result()
            except Exception as exc:
                self.intake.order.drop(entry)
                self._done(entry, self._failed(entry.record, exc))
                if not isinstance(exc, ChartMogulAPIError | ResolutionError):
                    raise  # a bug: the record is accounted for, and the error surfaces
                continue
            if kind == "lookup":
                self.intake.order.place(entry, result)
                continue
            outcome, after = result
            if after is not None and entry.listed and outcome.customer_uuid == entry.uuid:
                self.intake.written(entry.uuid, after)  # type: ignore[arg-type]
            self._done(entry, outcome)

    def _failed(self, record: CustomerRecord, exc: Exception) -> Outcome:
        """The outcome of a lookup or write that raised ``exc`` (a fatal one also stops the run)."""
        if isinstance(exc, ChartMogulCancelledError):
            self._set_abort(self._stop_reason or exc.api_message, None)
            return self._not_attempted(record, self._abort or "")
        if isinstance(exc, ChartMogulFatalError):
            self._set_abort(str(exc), exc)
        if isinstance(exc, ResolutionError):
            return Outcome.failure("resolution", record.label, record, str(exc), http_status=exc.status)
        if isinstance(exc, ChartMogulAPIError):
            return Outcome.failure("api", record.label, record, str(exc), http_status=exc.status)
        return Outcome.failure("api", record.label, record, f"unexpected error: {exc!r}")

    def _drain(self, reason: str) -> None:
        """After the run stopped: every record handed out reported, nothing sent, and the input
        not read yet counted without reading it."""
        if self.intake.listing is not None:
            self.intake.listing.stop()
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
        for entry in sorted(self._live.values(), key=lambda e: e.index):
            self.report.add(self._not_attempted(entry.record, reason))
        self._live.clear()
        self._close_input()

    def _close_input(self) -> None:
        """Count the input not read (a list has a length; a query or a generator has not) and
        close it, so that a SQL cursor is released without being read to the end."""
        if self._exhausted:
            return
        unread = len(self._input) - self._read if isinstance(self._input, Sized) else None
        if unread == 0:
            return
        self.report.input_complete = False
        self.report.records_not_read = unread
        for stream in (self._parse_stream, self._input):
            close = getattr(stream, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # a broken source must not hide the report
                    self.log.warning("Closing the input failed: %r", exc)
        counted = "an unknown number of records" if unread is None else f"{unread} records"
        self.log.warning(
            "The input was not read to the end: %s from record #%d on were not read, nor attempted; "
            "re-run to push them (re-running is safe)",
            counted,
            self._read,
        )

    def _finish(self, aborted: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self.intake.close()
        report = self.report
        report.mirror = self.mirror.close() if self.mirror is not None else None
        report.requests = self.hook.stats.snapshot()
        report.customer_lookup = self.intake.summary(self.resolver.lookup_requests)
        report.duration_seconds = round(time.monotonic() - self._started, 3)
        report.resumed = self.checkpoint.summary()
        budget = self.hook.shared_budget
        report.shared_budget = budget.status() if budget is not None else None
        self.checkpoint.flush(time.monotonic(), force=True)
        if any(failure["stage"] == "input" for failure in report.failures):
            report.input_complete = False  # the input broke: whatever came after was never read
        if aborted is not None:
            report.aborted = aborted
            report.not_attempted = sum(1 for f in report.failures if f["stage"] == "aborted")

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
            c = self.report.counts
            self.log.info(
                "Progress: %d customers done (%d succeeded, %d failed, %d skipped), %.1f customers/s",
                *(c[count] for count in ("total", "succeeded", "failed", "skipped")),
                c["total"] / max(now - self._started, 1e-9),
            )
