"""The dead-letter table: a run's failed records, kept in SQL so that they outlive the run.

Its columns, how tries are told apart and the replay query (:func:`replay_sql`) are in
docs/running-every-day.md.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_chartmogul.redaction import scrub
from airflow_provider_chartmogul.version_compat import BaseHook

DEAD_LETTER_COLUMNS = (
    "dag_id",
    "task_id",
    "run_id",
    "failed_at",
    "customer",
    "customer_uuid",
    "stage",
    "status",
    "error",
    "record",
    "try_number",
    "map_index",
)
#: Columns added after the table's first release: added to an older table when it is prepared.
_ADDED_COLUMNS = {"try_number": "INTEGER", "map_index": "INTEGER"}
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def validate_table_name(table: str) -> str:
    """``table`` or ``schema.table`` made of plain identifiers (it goes into SQL text)."""
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ValueError(
            f"dead_letter_table must be a plain table name like 'chartmogul_dead_letter' or "
            f"'ops.chartmogul_dead_letter', got {table!r}"
        )
    return table


def check_target(conn_id: str | None, table: str | None) -> None:
    """The operator's ``dead_letter_conn_id`` and ``dead_letter_table``: both or neither, and a
    plain table name.

    :raises ValueError: naming the argument.
    """
    if (conn_id is None) != (table is None):
        raise ValueError("dead_letter_conn_id and dead_letter_table go together")
    if table is not None:
        validate_table_name(table)


def create_table_sql(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {validate_table_name(table)} ("
        "dag_id VARCHAR(250), task_id VARCHAR(250), run_id VARCHAR(250), failed_at VARCHAR(40), "
        "customer TEXT, customer_uuid VARCHAR(250), stage VARCHAR(20), status INTEGER, "
        "error TEXT, record TEXT, try_number INTEGER, map_index INTEGER)"
    )


def prepare_table(hook: Any, table: str) -> None:
    """Create ``table`` on the SQL ``hook`` when missing, and give a table made by an earlier
    release of this provider the columns it lacks."""
    hook.run(create_table_sql(table))
    present = hook.run(
        f"SELECT * FROM {validate_table_name(table)} WHERE 1 = 0",
        handler=lambda cursor: {column[0].lower() for column in cursor.description},
    )
    for column, kind in _ADDED_COLUMNS.items():
        if present is not None and column not in present:
            hook.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def replay_sql(table: str) -> str:
    """The rows to replay: for each task instance, those of its latest try that wrote any.

    Add ``AND d.run_id = ...`` (and ``d.dag_id``, ``d.task_id``) to choose a run; select
    ``d.record`` for the records to feed back as ``customers``. Rows written before
    ``try_number`` existed count as try 0.
    """
    name = validate_table_name(table)
    return (
        f"SELECT d.* FROM {name} d WHERE COALESCE(d.try_number, 0) = ("
        f"SELECT MAX(COALESCE(l.try_number, 0)) FROM {name} l "
        "WHERE l.dag_id = d.dag_id AND l.run_id = d.run_id AND l.task_id = d.task_id "
        "AND COALESCE(l.map_index, -1) = COALESCE(d.map_index, -1))"
    )


def write_dead_letters(
    *,
    conn_id: str,
    table: str,
    failures: Sequence[Mapping[str, Any]],
    dag_id: str | None,
    task_id: str | None,
    run_id: str | None,
    try_number: int | None = None,
    map_index: int | None = None,
) -> int:
    """Insert one row per failure into ``table`` on the SQL connection ``conn_id``; the rows written.

    :param try_number: the task instance's try that failed these records (its rows supersede
        those of earlier tries in :func:`replay_sql`).
    :param map_index: the mapped task instance's index (``-1`` when not mapped).
    """
    if not failures:
        return 0
    hook = BaseHook.get_connection(conn_id).get_hook()
    if not hasattr(hook, "insert_rows"):
        raise ValueError(f"dead_letter_conn_id {conn_id!r} is not a SQL connection ({type(hook).__name__})")
    prepare_table(hook, table)
    failed_at = dt.datetime.now(dt.timezone.utc).isoformat()
    rows = [
        (
            dag_id,
            task_id,
            run_id,
            failed_at,
            failure.get("customer"),
            failure.get("customer_uuid"),
            failure.get("stage"),
            failure.get("status"),
            scrub(failure.get("error") or "") or None,
            json.dumps(failure.get("record"), default=str),
            try_number,
            map_index,
        )
        for failure in failures
    ]
    # One executemany per batch instead of a statement per row (about 50x faster on SQLite): a
    # stopped task has seconds before Airflow kills it. Hooks without the option insert row by row.
    options = {"executemany": True} if "executemany" in inspect.signature(hook.insert_rows).parameters else {}
    hook.insert_rows(table, rows, target_fields=list(DEAD_LETTER_COLUMNS), commit_every=1000, **options)
    return len(rows)
