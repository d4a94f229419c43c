"""Where customer records come from: a value handed to the operator, or a SQL query.

Both are iterated lazily. SQL rows are fetched in batches with ``fetchmany`` (on PostgreSQL
through a server-side cursor), so a query of any size runs in constant memory.

An input that breaks while it is read (an upstream generator or a lazy XCom sequence that raises,
a database connection lost between batches) ends with one :class:`~airflow_provider_chartmogul.
push.sql_rows.RejectedInput` saying so, instead of the exception: the run then reports every record read
before it, and that error, as a failure.
"""

from __future__ import annotations

import ast
import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_chartmogul.exceptions import ChartMogulSourceError, ChartMogulValidationError
from airflow_provider_chartmogul.push.report import failed_records
from airflow_provider_chartmogul.push.sql_rows import RejectedInput, records_from_rows
from airflow_provider_chartmogul.redaction import scrub
from airflow_provider_chartmogul.version_compat import AirflowException, BaseHook, LiteralValue, literal


def customers_as_data(customers: Any) -> Any:
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


def iter_customer_input(customers: Any) -> Iterable[Any]:
    """The records in ``customers``: a list (or any iterable, such as a lazy XCom sequence), a JSON
    string of one, or a report of an earlier run, whose failed records are replayed.
    """
    if isinstance(customers, LiteralValue):  # not rendered yet (execute called directly)
        customers = customers.value
    if isinstance(customers, str | bytes):
        customers = _parse_text(customers)
    if isinstance(customers, Mapping):
        if "failures" in customers and "total" in customers:
            return failed_records(customers)
        return [customers]
    if customers is None:
        raise ChartMogulSourceError("customers is None: nothing was handed to the operator")
    if not isinstance(customers, Iterable):
        raise ChartMogulSourceError(f"customers must be a list of records, got {type(customers).__name__}")
    if isinstance(customers, list | tuple):
        return customers
    return guarded(customers, "customers")


def _parse_text(customers: str | bytes) -> Any:
    try:
        text = customers.decode() if isinstance(customers, bytes) else customers
    except UnicodeDecodeError as exc:
        raise ChartMogulSourceError(f"customers is bytes that are not UTF-8 text: {exc}") from None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        # Jinja without native rendering turns a list into its Python repr.
        try:
            parsed = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            raise ChartMogulSourceError(
                f"customers is a string that is neither JSON nor a Python literal: {text[:80]!r}; "
                "pass a list of records, an XComArg, or set render_template_as_native_obj=True "
                "on the DAG"
            ) from None
    if isinstance(parsed, str):
        raise ChartMogulSourceError(
            f"customers is a JSON string that holds another string ({parsed[:80]!r}): is it encoded "
            "twice? Pass the records themselves, or their JSON once"
        )
    return parsed


def guarded(items: Iterable[Any], what: str) -> Iterator[Any]:
    """``items``, iterated; if iterating raises, the exception becomes a last :class:`RejectedInput`.

    Airflow's own exceptions (on Airflow 2, ``AirflowTaskTimeout`` and ``AirflowTaskTerminated``)
    go through: they stop the task, they are not a broken input.
    """
    index = 0
    try:
        for item in items:
            yield item
            index += 1
    except AirflowException:
        raise
    except Exception as exc:
        yield input_broke(index, what, exc)


def input_broke(index: int, what: str, exc: Exception) -> RejectedInput:
    """The :class:`RejectedInput` for an input that raised ``exc`` when record ``#index`` was to be read."""
    label = f"record #{index}"
    read = f"records #0 to #{index - 1} were read and are reported" if index else "no record was read"
    rule = scrub(
        f"reading {what} failed here with {type(exc).__name__}: {exc}; {read}, and whatever came "
        "after was never read. Fix the source and re-run (re-running is safe)"
    )
    error = ChartMogulValidationError(rule, customer=label)
    return RejectedInput(index, label, str(error), {}, None, error, stage="input")


def _is_postgres(hook: Any) -> bool:
    conn_type = getattr(hook, "conn_type", None) or ""
    return conn_type in ("postgres", "postgresql") or type(hook).__name__ == "PostgresHook"


def iter_sql_records(
    *,
    sql_conn_id: str,
    sql: str,
    parameters: Mapping[str, Any] | Sequence[Any] | None,
    attribute_types: Mapping[str, str] | None,
    fetch_size: int,
    keep_nulls: bool = False,
) -> Iterator[Any]:
    """Records from each row of ``sql`` on the Airflow connection ``sql_conn_id``.

    Any connection whose hook is a DB-API hook works (SQLite, PostgreSQL, MySQL, Snowflake, ...).
    """
    hook = BaseHook.get_connection(sql_conn_id).get_hook()
    # Every Airflow hook has get_conn(); only a DB-API connection has cursor().
    conn = hook.get_conn()
    if not callable(getattr(conn, "cursor", None)):
        if callable(getattr(conn, "close", None)):
            conn.close()
        raise ChartMogulSourceError(
            f"connection {sql_conn_id!r} has a {type(hook).__name__}, which is not a SQL (DB-API) hook"
        )
    try:
        if _is_postgres(hook):
            cursor = conn.cursor(name=f"chartmogul_{uuid.uuid4().hex[:12]}")
        else:
            cursor = conn.cursor()
        try:
            if parameters:
                cursor.execute(sql, parameters)
            else:
                cursor.execute(sql)
            # A server-side cursor describes its columns only after the first fetch.
            first = cursor.fetchmany(fetch_size)
            if cursor.description is None:
                raise ChartMogulSourceError("the SQL statement returned no result set (is it a SELECT?)")
            columns = [column[0] for column in cursor.description]
            # records_from_rows checks the columns (raising) before reading any row.
            records = records_from_rows(
                columns,
                _batches(cursor, first, fetch_size),
                attribute_types=attribute_types,
                keep_nulls=keep_nulls,
            )
            yield from guarded(records, f"the rows of the SQL query on {sql_conn_id!r}")
        finally:
            cursor.close()
    finally:
        with contextlib.suppress(Exception):  # some drivers have nothing to roll back
            conn.rollback()
        conn.close()


def _batches(cursor: Any, first: list[Any], fetch_size: int) -> Iterator[Sequence[Any]]:
    rows = first
    while rows:
        yield from rows
        rows = cursor.fetchmany(fetch_size)
