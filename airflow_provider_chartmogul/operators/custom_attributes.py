"""AddCustomAttributesOperator: put computed attributes on every ChartMogul customer they are for."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, get_args

from airflow_provider_chartmogul.client.settings import check_override
from airflow_provider_chartmogul.exceptions import CustomAttributesFatalError, CustomAttributesPushError
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.push.dead_letter import (
    create_table_sql,
    validate_table_name,
    write_dead_letters,
)
from airflow_provider_chartmogul.push.report import RunReport
from airflow_provider_chartmogul.push.run import (
    Clear,
    CustomAttributesPusher,
    CustomerLookup,
    Mode,
    PushOptions,
    RunAborted,
)
from airflow_provider_chartmogul.push.sources import iter_customer_input, iter_sql_records
from airflow_provider_chartmogul.push.sql_rows import validate_attribute_types
from airflow_provider_chartmogul.version_compat import (
    AirflowFailException,
    BaseHook,
    BaseOperator,
    literal,
)

if TYPE_CHECKING:
    try:
        from airflow.sdk import Context
    except ImportError:
        from airflow.utils.context import Context  # type: ignore[no-redef,attr-defined]
    from airflow.providers.openlineage.extractors import OperatorLineage

_FAILURES_NAMED = 5
_PLAN_LINES_LOGGED = 200


def push_error(
    message: str, report: dict[str, Any], cause: BaseException | None
) -> CustomAttributesPushError:
    """The error a run that stopped on ``cause`` raises: fatal (no Airflow retry) when ``cause`` is."""
    if isinstance(cause, AirflowFailException):
        return CustomAttributesFatalError(message, report)
    return CustomAttributesPushError(message, report)


def _as_template_or_data(customers: Any) -> Any:
    """``customers`` as Airflow should render it: records are data, never Jinja templates.

    Only a string that is not itself records (JSON or a Python literal of a list or a dict) is a
    template, such as ``"{{ ti.xcom_pull(task_ids='load') }}"``; an ``XComArg`` is resolved as
    usual. Anything else (lists, dicts, strings holding records) is wrapped in Airflow's literal,
    so that ``"Promo {{ 7*7 }}"`` or ``"50% {% off"`` in a record is sent as it is, and rendering
    does not walk thousands of records.
    """
    if isinstance(customers, str):
        return literal(customers) if _holds_records(customers) else customers
    if isinstance(customers, list | tuple | Mapping):
        return literal(customers)
    return customers


def _holds_records(text: str) -> bool:
    stripped = text.strip()
    if not stripped.startswith(("[", "{", "(")):
        return False
    try:
        value = json.loads(stripped)
    except ValueError:
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return isinstance(value, list | tuple | dict)


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _whole_number(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


class AddCustomAttributesOperator(BaseOperator):
    """Add custom attributes to ChartMogul customers, customer by customer, and report on each one.

    Records come either from ``customers`` or from the rows of ``sql``. Every record is attempted;
    bad records are rejected with their reason and nothing is sent for them; the task fails at the
    end if more than ``max_failures`` customers failed. The return value (XCom) is the run's report:
    ``total``, ``succeeded``, ``failed``, ``skipped``, per-attribute ``added`` / ``changed`` /
    ``unchanged`` / ``cleared`` counts, and ``failures``, each with the customer, the HTTP status,
    the error and the record itself, in the shape this operator accepts, so a report can be fed
    back as ``customers`` to replay what failed.

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
        holds and sends only the differences.
    :param dry_run: read and plan, send no write; the report's ``plan`` says per customer and
        attribute what would be added, changed, left unchanged or cleared.
    :param clear: in sync mode, ``"remove"`` deletes an attribute whose value is NULL/None;
        ``"ignore"`` (default) leaves it alone.
    :param customer_lookup: how ``external_id`` / ``email`` records are matched: ``"per_customer"``
        lookups, one pass over the ``"listing"`` of all customers, or ``"auto"`` (listing once
        more than ``listing_threshold`` records need a lookup).
    :param listing_threshold: see ``customer_lookup``.
    :param max_requests_per_second: client-side rate limit; overrides the connection's.
    :param max_connections: requests in flight at once; overrides the connection's.
    :param fetch_size: rows fetched from the database at a time.
    :param dead_letter_conn_id: a SQL connection to also write every failure to, one row each
        with the record as JSON, so failures outlive the run (with ``dead_letter_table``).
    :param dead_letter_table: the table for those rows, created when missing.
    """

    template_fields: Sequence[str] = ("customers", "sql", "parameters", "source")
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
        customer_lookup: CustomerLookup = "auto",
        listing_threshold: int = 500,
        max_requests_per_second: float | None = None,
        max_connections: int | None = None,
        fetch_size: int = 1000,
        dead_letter_conn_id: str | None = None,
        dead_letter_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (customers is None) == (sql is None):
            raise ValueError(
                f"{self.task_id}: give exactly one of customers (records or an XComArg) or sql "
                "(a query with sql_conn_id)"
            )
        if sql is not None and not sql_conn_id:
            raise ValueError(f"{self.task_id}: sql needs sql_conn_id, the connection to run it on")
        if sql is None and (sql_conn_id or parameters):
            raise ValueError(f"{self.task_id}: sql_conn_id and parameters only go with sql")
        _choice("mode", mode, get_args(Mode))
        _choice("clear", clear, get_args(Clear))
        _choice("customer_lookup", customer_lookup, get_args(CustomerLookup))
        if clear == "remove" and mode != "sync":
            raise ValueError("clear='remove' needs mode='sync' (add mode never removes attributes)")
        _whole_number("max_failures", max_failures, 0)
        _whole_number("fetch_size", fetch_size, 1)
        _whole_number("listing_threshold", listing_threshold, 0)
        if not isinstance(dry_run, bool):
            raise ValueError(f"dry_run must be True or False, got {dry_run!r} ({type(dry_run).__name__})")
        # The hook's own check, run here so that a bad value fails when the DAG is parsed.
        check_override("max_requests_per_second", max_requests_per_second)
        check_override("max_connections", max_connections)
        if (dead_letter_conn_id is None) != (dead_letter_table is None):
            raise ValueError("dead_letter_conn_id and dead_letter_table go together")
        if dead_letter_table is not None:
            validate_table_name(dead_letter_table)
        self.customers = _as_template_or_data(customers)
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.attribute_types = validate_attribute_types(attribute_types or {})
        self.source = source
        self.chartmogul_conn_id = chartmogul_conn_id
        self.max_failures = max_failures
        self.mode = mode
        # Not self.dry_run: that name is BaseOperator's dry_run() method.
        self.plan_only = dry_run
        self.clear = clear
        self.customer_lookup = customer_lookup
        self.listing_threshold = listing_threshold
        self.max_requests_per_second = max_requests_per_second
        self.max_connections = max_connections
        self.fetch_size = fetch_size
        self.dead_letter_conn_id = dead_letter_conn_id
        self.dead_letter_table = dead_letter_table

    def get_hook(self) -> ChartMogulHook:
        return ChartMogulHook(
            self.chartmogul_conn_id,
            max_requests_per_second=self.max_requests_per_second,
            max_connections=self.max_connections,
        )

    def _records(self) -> tuple[Iterable[Any], str]:
        if self.sql is not None:
            assert self.sql_conn_id is not None
            records = iter_sql_records(
                sql_conn_id=self.sql_conn_id,
                sql=self.sql,
                parameters=self.parameters,
                attribute_types=self.attribute_types,
                fetch_size=self.fetch_size,
                keep_nulls=self.mode == "sync" and self.clear == "remove",
            )
            return records, f"SQL on connection {self.sql_conn_id!r}"
        customers = iter_customer_input(self.customers)
        size = f"{len(customers)} records" if isinstance(customers, Sized) else "records"
        return customers, f"{size} from customers"

    def execute(self, context: Context) -> dict[str, Any]:
        records, described = self._records()
        self._prepare_dead_letters()
        self.log.info(
            "Pushing custom attributes to ChartMogul: %s, mode=%s%s, connection %r",
            described,
            self.mode,
            " (dry run: nothing will be written)" if self.plan_only else "",
            self.chartmogul_conn_id,
        )
        options = PushOptions(
            mode=self.mode,
            dry_run=self.plan_only,
            clear=self.clear,
            source=self.source,
            customer_lookup=self.customer_lookup,
            listing_threshold=self.listing_threshold,
        )
        with self.get_hook() as hook:
            pusher = CustomAttributesPusher(hook, options, log=self.log)  # type: ignore[arg-type]
            self._running = (hook, pusher)
            if self._kill_reason is not None:  # on_kill came before the run started
                self._stop_run(self._kill_reason)
            try:
                report = pusher.run(records)
            except RunAborted as exc:
                self.log.warning("%s", exc)
                self._publish(context, exc.report)
                raise push_error(str(exc), exc.report.as_dict(), exc.__cause__) from None
            except BaseException:
                # AirflowTaskTimeout, Airflow 2's AirflowTaskTerminated: the run stopped itself and
                # left what it did in its report; that report outlives the task, then the error goes on.
                if pusher.report.aborted is not None:
                    self.log.warning("Stopped: %s. %s", pusher.report.aborted, pusher.report.summary())
                    self._publish(context, pusher.report)
                raise
            finally:
                self._running = None
        self.log.info("%s", report.summary())
        lookup, requests = report.extra["customer_lookup"], report.extra["requests"]
        self.log.info(
            "Cost: %d requests (%d retries, %d answered 429, %d answered 503); customer lookups and "
            "state reads: %s, %d requests",
            requests["requests"],
            requests["retries"],
            requests["rate_limited"],
            requests["too_many_connections"],
            lookup["strategy"],
            lookup["requests"],
        )
        if self.plan_only:
            self._log_plan(report)
        result = self._publish(context, report)
        broken = next((f for f in report.failures if f["stage"] == "input"), None)
        if broken is not None:
            # Whatever max_failures allows: the rest of the input was never read.
            raise CustomAttributesPushError(f"The input broke: {broken['error']}", result)
        if report.failed > self.max_failures:
            raise CustomAttributesPushError(self._failure_message(report), result)
        return result

    _running: tuple[ChartMogulHook, CustomAttributesPusher] | None = None
    _kill_reason: str | None = None

    def on_kill(self) -> None:
        """Stop the push (Airflow calls this on SIGTERM: "mark failed", a cleared run, a timeout):
        no new request starts, queued records are cancelled, and ``execute`` raises within about
        two seconds with the partial report in XCom, the dead-letter table and the log.

        Only sets flags: on Airflow 3 this runs in a signal handler in the main thread."""
        reason = "the task was stopped (on_kill)"
        self._kill_reason = self._kill_reason or reason
        self._stop_run(self._kill_reason)

    def _stop_run(self, reason: str) -> None:
        running = self._running
        if running is not None:
            hook, pusher = running
            hook.cancel(reason)
            pusher.stop(reason)

    def _publish(self, context: Context, report: RunReport) -> dict[str, Any]:
        """Make the report last: failures to the dead-letter table when one is set, and the report
        to XCom even when the task is about to fail, so a downstream task can replay it."""
        result = report.as_dict()
        self._last_report = result  # for get_openlineage_facets_on_complete / _on_failure
        ti = context.get("ti") if isinstance(context, Mapping) else None
        # XCom first: a stopped task is killed a few seconds after SIGTERM, and XCom is the
        # cheapest way to keep the report.
        if ti is not None and (report.failed > self.max_failures or report.aborted):
            ti.xcom_push(key="return_value", value=result)
        if self.dead_letter_conn_id and self.dead_letter_table and report.failures:
            written = write_dead_letters(
                conn_id=self.dead_letter_conn_id,
                table=self.dead_letter_table,
                failures=report.failures,
                dag_id=self.dag_id if self.has_dag() else None,
                task_id=self.task_id,
                run_id=getattr(ti, "run_id", None),
            )
            self.log.info("Wrote %d failed records to %s", written, self.dead_letter_table)
        return result

    def _prepare_dead_letters(self) -> None:
        """Create the dead-letter table before anything is sent: a wrong connection fails the task
        while nothing was written, and the SQL hook's imports (seconds) are not paid after a stop."""
        if self.dead_letter_conn_id and self.dead_letter_table:
            hook = BaseHook.get_connection(self.dead_letter_conn_id).get_hook()
            if hasattr(hook, "run"):
                hook.run(create_table_sql(self.dead_letter_table))

    def _failure_message(self, report: RunReport) -> str:
        named = "; ".join(f"{f['customer']}: {f['error']}" for f in report.failures[:_FAILURES_NAMED])
        more = report.failed - _FAILURES_NAMED
        tail = f"; and {more} more" if more > 0 else ""
        return (
            f"{report.failed} of {report.counts['total']} customers failed (max_failures="
            f"{self.max_failures}); every other customer was processed. {named}{tail}. "
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
