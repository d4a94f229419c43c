"""AddCustomAttributesOperator: put computed attributes on every ChartMogul customer they are for."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence, Sized
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.assets import record_asset_events
from airflow_provider_chartmogul.client.settings import check_override
from airflow_provider_chartmogul.exceptions import (
    ChartMogulConfigurationError,
    ChartMogulUnavailableError,
    CustomAttributesFatalError,
    CustomAttributesPushError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.metrics import RunCounts
from airflow_provider_chartmogul.push import dead_letter
from airflow_provider_chartmogul.push.checkpoint import Checkpoint
from airflow_provider_chartmogul.push.mirror import PlanRefused
from airflow_provider_chartmogul.push.options import (
    Clear,
    CustomerLookup,
    Mode,
    PushOptions,
    check_whole_number,
)
from airflow_provider_chartmogul.push.report import RunReport
from airflow_provider_chartmogul.push.run import CustomAttributesPusher, RunAborted
from airflow_provider_chartmogul.push.sources import customers_as_data, iter_customer_input, iter_sql_records
from airflow_provider_chartmogul.push.sql_rows import validate_attribute_types
from airflow_provider_chartmogul.version_compat import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowTaskTimeout,
    BaseHook,
    BaseOperator,
)

if TYPE_CHECKING:
    try:
        from airflow.sdk import Context
    except ImportError:
        from airflow.utils.context import Context  # type: ignore[no-redef,attr-defined]
    from airflow.providers.openlineage.extractors import OperatorLineage

_FAILURES_NAMED = 5
_PLAN_LINES_LOGGED = 200
# The reason on_kill gives: Airflow calls it on SIGTERM ("mark failed", a cleared task, a worker
# shutting down) and, on Airflow 3, after execution_timeout.
KILLED = "the task was stopped (on_kill: marked failed or cleared, or its worker shut down)"


def check_input(task_id: str, customers: Any, sql: Any, sql_conn_id: Any, parameters: Any) -> None:
    """Exactly one input: ``customers``, or ``sql`` with the connection it runs on.

    :raises ValueError: saying which arguments go together.
    """
    if (customers is None) == (sql is None):
        raise ValueError(
            f"{task_id}: give exactly one of customers (records or an XComArg) or sql "
            "(a query with sql_conn_id)"
        )
    if sql is not None and not sql_conn_id:
        raise ValueError(f"{task_id}: sql needs sql_conn_id, the connection to run it on")
    if sql is None and (sql_conn_id or parameters):
        raise ValueError(f"{task_id}: sql_conn_id and parameters only go with sql")


class AddCustomAttributesOperator(BaseOperator):
    """Add custom attributes to ChartMogul customers, customer by customer, and report on each one.

    Records come either from ``customers`` or from the rows of ``sql``. Every record is attempted;
    bad records are rejected with their reason and nothing is sent for them; the task fails at the
    end if more than ``max_failures`` customers failed. The return value (XCom) is the run's report:
    ``total``, ``succeeded``, ``failed``, ``skipped``, per-attribute ``added`` / ``changed`` /
    ``unchanged`` / ``cleared`` counts, and ``failures``, each with the customer, the HTTP status,
    the error and the record itself, in the shape this operator accepts, so a report can be fed
    back as ``customers`` to replay what failed.

    Arguments are checked when the DAG is parsed: the run's options by
    :class:`~airflow_provider_chartmogul.push.options.PushOptions` (``self.options``), the others
    here. ``customers`` is the one argument not stored as given: records are wrapped in Airflow's
    ``literal()`` here, in ``__init__``, because that is the one step every way of running the
    task passes through; a mapped task (``partial()`` / ``expand()``) is rendered by Airflow's
    ``MappedOperator`` without calling this class's ``render_template_fields``.

    :param customers: records, each the seed call's body plus the customer's identifier:
        ``{"customer_uuid": "cus_...", "custom": [{"type", "key", "value", "source"?}, ...]}``;
        instead of ``customer_uuid`` a record may carry ``external_id`` (with ``data_source_uuid``
        when several data sources may share the id) or ``email``. A list, an ``XComArg``, a JSON
        string, or the report of an earlier run (its failed records are replayed). (templated,
        but only a string that is not itself records is a template, e.g.
        ``"{{ ti.xcom_pull(task_ids='load') }}"``; records are never rendered)
    :param sql: a query, or a ``.sql`` file, whose every row is one customer: identifier columns
        ``customer_uuid``, ``external_id``, ``data_source_uuid``, ``email``; every other column is
        an attribute; NULL leaves that attribute alone (or clears it, see ``clear``). (templated)
    :param sql_conn_id: the Airflow connection the query runs on (any DB-API hook: SQLite,
        PostgreSQL, MySQL, Snowflake, ...).
    :param parameters: parameters bound to ``sql``. (templated)
    :param attribute_types: ``{"column": "Integer", ...}``; columns not named here get their type
        from the database value (str String, bool Boolean, int Integer, float/Decimal Decimal,
        date/datetime Timestamp).
    :param source: the ``source`` label of attributes that carry none, shown in ChartMogul's UI,
        e.g. ``"airflow:{{ dag.dag_id }}"``. (templated)
    :param chartmogul_conn_id: the ``chartmogul`` connection holding the API key.
    :param max_failures: how many customers may fail before the task fails (after all were tried).
    :param mode: ``"add"`` posts every attribute (the seed call); ``"sync"`` reads what ChartMogul
        holds and sends only the differences; ``"mirror"`` is a sync that also clears the managed
        keys on customers the source no longer lists, after reading the whole listing and input
        and checking the guards (docs/running-every-day.md).
    :param dry_run: read and plan, send no write; the report's ``plan`` says per customer and
        attribute what would be added, changed, left unchanged or cleared.
    :param clear: in sync mode, ``"remove"`` deletes an attribute whose value is NULL/None;
        ``"ignore"`` (default) leaves it alone.
    :param managed_keys: in mirror mode, the attribute keys the mirror owns (cleared on customers
        the source no longer lists, and by a NULL); default: the keys the input carries. Keys
        outside them are never touched. (templated)
    :param max_clear_fraction: in mirror mode, refuse (``AirflowFailException``, nothing sent) a
        plan that clears managed keys on more than this share of the customers holding them.
    :param allow_empty_source: in mirror mode, let a source of 0 rows, or of only NULL managed
        values, clear managed keys (refused by default).
    :param customer_lookup: how ``external_id`` / ``email`` records are matched: ``"per_customer"``
        lookups, one pass over the ``"listing"`` of all customers, or ``"auto"`` (listing once
        more than ``listing_threshold`` records need a lookup).
    :param listing_threshold: see ``customer_lookup``.
    :param resume: on Airflow 3.3+, a retry of the task skips the customers an earlier try of
        it already answered (progress is kept in the task state store); ``False`` re-sends
        everything on every try, as on older Airflow. See docs/running-every-day.md.
    :param max_requests_per_second: client-side rate limit; overrides the connection's.
    :param max_connections: requests in flight at once; overrides the connection's.
    :param shared_budget_conn_id: a ``redis`` connection holding the account-wide request budget
        that every task on this ChartMogul account shares (docs/shared-budget.md); overrides the
        connection's extra of the same name.
    :param fetch_size: rows fetched from the database at a time.
    :param dead_letter_conn_id: a SQL connection to also write every failure to, one row each
        with the record as JSON, so failures outlive the run (with ``dead_letter_table``).
    :param dead_letter_table: the table for those rows, created when missing.
    """

    template_fields: Sequence[str] = ("customers", "sql", "parameters", "source", "managed_keys")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "customers": "json", "parameters": "json"}
    ui_color = "#13a89e"

    def __init__(
        self,
        *,
        customers: Any = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        attribute_types: Mapping[str, str] | None = None,
        source: str | None = None,
        chartmogul_conn_id: str = ChartMogulHook.default_conn_name,
        max_failures: int = 0,
        mode: Mode = "add",
        dry_run: bool = False,
        clear: Clear = "ignore",
        managed_keys: Sequence[str] | None = None,
        max_clear_fraction: float = 0.1,
        allow_empty_source: bool = False,
        customer_lookup: CustomerLookup = "auto",
        listing_threshold: int = 500,
        resume: bool = True,
        max_requests_per_second: float | None = None,
        max_connections: int | None = None,
        shared_budget_conn_id: str | None = None,
        fetch_size: int = 1000,
        dead_letter_conn_id: str | None = None,
        dead_letter_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_input(self.task_id, customers, sql, sql_conn_id, parameters)
        self.customers = customers_as_data(customers)  # see the class docstring
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.source = source
        self.managed_keys = managed_keys
        self.attribute_types = validate_attribute_types(attribute_types)
        self.chartmogul_conn_id = chartmogul_conn_id
        self.options = PushOptions(
            mode=mode,
            dry_run=dry_run,
            clear=clear,
            source=source,
            customer_lookup=customer_lookup,
            listing_threshold=listing_threshold,
            max_failures=max_failures,
            resume=resume,
            # A template or an XComArg is checked once rendered (execute).
            managed_keys=managed_keys if isinstance(managed_keys, list | tuple) else None,
            max_clear_fraction=max_clear_fraction,
            allow_empty_source=allow_empty_source,
        )
        # The hook's own checks, run here so that a bad value fails when the DAG is parsed.
        self.max_requests_per_second = check_override("max_requests_per_second", max_requests_per_second)
        self.max_connections = check_override("max_connections", max_connections)
        self.shared_budget_conn_id = check_override("shared_budget_conn_id", shared_budget_conn_id)
        self.fetch_size = check_whole_number("fetch_size", fetch_size, 1)
        dead_letter.check_target(dead_letter_conn_id, dead_letter_table)
        self.dead_letter_conn_id = dead_letter_conn_id
        self.dead_letter_table = dead_letter_table

    @cached_property
    def hook(self) -> ChartMogulHook:
        return ChartMogulHook(
            self.chartmogul_conn_id,
            max_requests_per_second=self.max_requests_per_second,
            max_connections=self.max_connections,
            shared_budget_conn_id=self.shared_budget_conn_id,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        # The rendered fields.
        options = dataclasses.replace(self.options, source=self.source, managed_keys=self.managed_keys)
        records = self._records(options)
        checkpoint = Checkpoint.from_context(
            context,
            # A mirror's retry plans again from the listing: it sends only what is not done yet.
            enabled=options.resume and not options.dry_run and options.mode != "mirror",
            interval=options.checkpoint_interval,
            log=self.log,
        )
        report = self._push(context, records, options, checkpoint)
        result = self._publish(context, report)
        result = self._decide(report, result)
        record_asset_events(
            self.outlets, context.get("outlet_events"), result, chartmogul_conn_id=self.chartmogul_conn_id
        )
        checkpoint.finish()  # the task succeeds: a later run of it starts from the top
        return result

    # ---- the steps of execute ------------------------------------------------------------------

    def _records(self, options: PushOptions) -> Iterable[Any]:
        """The input, read lazily; the connections it needs checked first (nothing read or sent
        yet), and the dead-letter table made, so that a wrong connection fails before anything
        is written and the SQL hook's imports (seconds) are not paid after a stop."""
        self._check_connection()
        self._prepare_dead_letters()
        records: Iterable[Any]
        if self.sql is not None:
            assert self.sql_conn_id is not None
            records = iter_sql_records(
                sql_conn_id=self.sql_conn_id,
                sql=self.sql,
                parameters=self.parameters,
                attribute_types=self.attribute_types,
                fetch_size=self.fetch_size,
                keep_nulls=options.keeps_nulls,
            )
            described = f"SQL on connection {self.sql_conn_id!r}"
        else:
            records = iter_customer_input(self.customers)
            size = f"{len(records)} records" if isinstance(records, Sized) else "records"
            described = f"{size} from customers"
        self.log.info(
            "Pushing custom attributes to ChartMogul: %s, mode=%s%s, connection %r",
            described,
            options.mode,
            " (dry run: nothing will be written)" if options.dry_run else "",
            self.chartmogul_conn_id,
        )
        return records

    def _push(
        self, context: Context, records: Iterable[Any], options: PushOptions, checkpoint: Checkpoint
    ) -> RunReport:
        """Run the push; a run that stopped early publishes its partial report and raises."""
        with self.hook as hook:
            pusher = CustomAttributesPusher(hook, options, log=self.log, checkpoint=checkpoint)  # type: ignore[arg-type]
            self._running = (hook, pusher)
            if self._kill_reason is not None:  # on_kill came before the run started
                self._stop_run(self._kill_reason)
            try:
                report = pusher.run(records)
            except PlanRefused as exc:
                self.log.error("%s", exc)
                self._publish(context, exc.report)
                raise AirflowFailException(str(exc)) from None
            except RunAborted as exc:
                message = self._stopped_message(exc.report, exc.__cause__, checkpoint.active)
                self.log.warning("%s", message)
                self._publish(context, exc.report)
                raise self._stopped_error(message, exc.report, exc.__cause__) from None
            except BaseException as exc:
                # AirflowTaskTimeout, Airflow 2's AirflowTaskTerminated: the run stopped itself and
                # left what it did in its report; that report outlives the task, then the error goes on.
                if pusher.report.aborted is not None:
                    self.log.warning("%s", self._stopped_message(pusher.report, exc, checkpoint.active))
                    self._publish(context, pusher.report)
                raise
            finally:
                self._running = None
        self._log_outcome(report, options)
        return report

    def _decide(self, report: RunReport, result: dict[str, Any]) -> dict[str, Any]:
        """The report when the run may pass; else the error that fails the task."""
        broken = next((f for f in report.failures if f["stage"] == "input"), None)
        if broken is not None:
            # Whatever max_failures allows: the rest of the input was never read.
            raise CustomAttributesPushError(f"The input broke: {broken['error']}", result)
        if report.failed > self.options.max_failures:
            raise CustomAttributesPushError(self._failure_message(report), result)
        return result

    # ---- stopping ------------------------------------------------------------------------------

    _running: tuple[ChartMogulHook, CustomAttributesPusher] | None = None
    _kill_reason: str | None = None

    def on_kill(self) -> None:
        """Stop the push (Airflow calls this on SIGTERM: "mark failed", a cleared run, a timeout):
        no new request starts, queued records are cancelled, and ``execute`` raises within about
        two seconds with the partial report in XCom, the dead-letter table and the log.

        Only sets flags: on Airflow 3 this runs in a signal handler in the main thread."""
        self._kill_reason = self._kill_reason or KILLED
        self._stop_run(self._kill_reason)

    def _stop_run(self, reason: str) -> None:
        running = self._running
        if running is not None:
            hook, pusher = running
            hook.cancel(reason)
            pusher.stop(reason)

    def _stopped_message(self, report: RunReport, cause: BaseException | None, resumes: bool) -> str:
        """What happened and what to do about it, for a run that stopped before its end;
        ``resumes``: the next try of this task instance skips what this one answered."""
        left = (
            f"Nothing more was sent; {report.not_attempted or 0} customers not attempted are listed "
            "in the report (XCom" + (", and the dead-letter table" if self.dead_letter_table else "") + ")"
        )
        if isinstance(cause, AirflowFailException):  # a refused key or TLS certificate
            todo = "fix the connection and re-run (re-running is safe)"
            what = report.aborted
        elif isinstance(cause, ChartMogulUnavailableError):
            todo = (
                "ChartMogul or the way to it is failing, not the records: Airflow retries the task "
                "if it has retries left (re-running is safe)"
            )
            what = report.aborted
        elif isinstance(cause, AirflowTaskTimeout):
            what = f"the task ran past its execution_timeout ({self.execution_timeout})"
            todo = (
                "Airflow retries it if it has retries left; if every try runs out of time, raise "
                "execution_timeout or split the input over several tasks"
            )
        elif self._kill_reason is not None:
            what = self._kill_reason
            todo = "clear the task to finish the push (re-running is safe)"
        else:
            what = report.aborted
            todo = "re-running is safe"
        if resumes and not isinstance(cause, AirflowFailException):
            todo += "; the next try skips the customers this one answered"
        return f"Stopped: {what}. {left}; {todo}. {report.summary()}"

    @staticmethod
    def _stopped_error(
        message: str, report: RunReport, cause: BaseException | None
    ) -> CustomAttributesPushError:
        """Fatal (no Airflow retry) when ``cause`` is: no retry succeeds until the connection is fixed."""
        if isinstance(cause, AirflowFailException):
            return CustomAttributesFatalError(message, report.as_dict())
        return CustomAttributesPushError(message, report.as_dict())

    # ---- making the report last ----------------------------------------------------------------

    def _check_connection(self) -> None:
        """Read the ChartMogul connection before anything else, so that a missing one is reported
        as missing (and not as a run that stopped with an empty report)."""
        try:
            self.hook.settings  # noqa: B018 (reads and checks the connection)
        except AirflowNotFoundException:
            raise ChartMogulConfigurationError(
                f"The Airflow connection {self.chartmogul_conn_id!r} does not exist, so nothing was "
                "read or sent: add a connection of type 'chartmogul' with that id and the API key as "
                "its password (Admin > Connections, or AIRFLOW_CONN_"
                f"{self.chartmogul_conn_id.upper()}), or set chartmogul_conn_id to the one to use"
            ) from None

    def _publish(self, context: Context, report: RunReport) -> dict[str, Any]:
        """Make the report last: failures to the dead-letter table when one is set, and the report
        to XCom even when the task is about to fail, so a downstream task can replay it."""
        result = report.as_dict()
        self._last_report = result  # for get_openlineage_facets_on_complete / _on_failure
        self.hook.metrics.run_finished(
            RunCounts.from_report(result, unchanged_customers=report.customers_unchanged)
        )
        ti = context.get("ti") if isinstance(context, Mapping) else None
        # XCom first: a stopped task is killed a few seconds after SIGTERM, and XCom is the
        # cheapest way to keep the report.
        if ti is not None and (report.failed > self.options.max_failures or report.aborted):
            ti.xcom_push(key="return_value", value=result)
        if self.dead_letter_conn_id and self.dead_letter_table and report.failures:
            written = dead_letter.write_dead_letters(
                conn_id=self.dead_letter_conn_id,
                table=self.dead_letter_table,
                failures=report.failures,
                dag_id=self.dag_id if self.has_dag() else None,
                task_id=self.task_id,
                run_id=getattr(ti, "run_id", None),
                try_number=getattr(ti, "try_number", None),
                map_index=getattr(ti, "map_index", None),
            )
            self.log.info("Wrote %d failed records to %s", written, self.dead_letter_table)
        return result

    def _prepare_dead_letters(self) -> None:
        if self.dead_letter_conn_id and self.dead_letter_table:
            hook = BaseHook.get_connection(self.dead_letter_conn_id).get_hook()
            if hasattr(hook, "run"):
                dead_letter.prepare_table(hook, self.dead_letter_table)

    # ---- the log ---------------------------------------------------------------------------------

    def _log_outcome(self, report: RunReport, options: PushOptions) -> None:
        self.log.info("%s", report.summary())
        lookup, requests = report.customer_lookup, report.requests
        self.log.info(
            "Cost: %d requests (%d retries, %d answered 429, %d answered 503); customer lookups and "
            "state reads: %s, %d requests",
            requests["requests"],
            requests["retries"],
            requests["rate_limited"],
            requests["too_many_connections"],
            lookup.strategy,
            lookup.requests,
        )
        if options.dry_run:
            self._log_plan(report)

    def _failure_message(self, report: RunReport) -> str:
        named = "; ".join(f"{f['customer']}: {f['error']}" for f in report.failures[:_FAILURES_NAMED])
        more = report.failed - _FAILURES_NAMED
        tail = f"; and {more} more" if more > 0 else ""
        return (
            f"{report.failed} of {report.counts['total']} customers failed (max_failures="
            f"{self.options.max_failures}); every other customer was processed. {named}{tail}. "
            "The report (XCom) lists every failure with its record, ready to replay."
        )

    def _log_plan(self, report: RunReport) -> None:
        lines = []
        for entry in report.plan:
            for change in entry["changes"]:
                old = change.get("old", "")
                new = change.get("new", "")
                detail = (
                    f"{old!r} -> {new!r}"
                    if change["action"] == "changed"
                    else repr(new if new != "" else old)
                )
                lines.append(f"{entry['customer']:<48} {change['key']:<24} {change['action']:<9} {detail}")
        if not lines:
            return
        shown = lines[:_PLAN_LINES_LOGGED]
        extra = (
            f"\n... and {len(lines) - len(shown)} more lines in the report's 'plan'"
            if len(lines) > len(shown)
            else ""
        )
        header = f"{'customer':<48} {'key':<24} {'action':<9} detail"
        self.log.info("Dry run plan:\n%s\n%s%s", header, "\n".join(shown), extra)

    # ---- OpenLineage (the ``openlineage`` extra; see openlineage/lineage.py) ----------

    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        """Inputs (the tables ``sql`` reads, or the upstream tasks ``customers`` comes from) and
        the ChartMogul customers as the output."""
        try:
            from airflow_provider_chartmogul.openlineage import lineage
        except ImportError:
            self.log.debug("apache-airflow-providers-openlineage is not installed: no lineage")
            return None
        return lineage.lineage_on_start(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """As on start, plus a ``chartmogul`` run facet with the counts of the run's report."""
        try:
            from airflow_provider_chartmogul.openlineage import lineage
        except ImportError:
            return None
        return lineage.lineage_on_complete(self, getattr(self, "_last_report", None))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        return self.get_openlineage_facets_on_complete(task_instance)
