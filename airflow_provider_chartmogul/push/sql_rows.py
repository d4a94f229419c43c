"""SQL rows turned into customer records, and the typing of their attribute columns.

Columns named like :data:`~airflow_provider_chartmogul.push.records.IDENTIFIER_FIELDS` are
identifiers; every other column is an attribute keyed by the column name. Its type comes from
``attribute_types``, else it is inferred from the values (see :func:`records_from_rows`). The
records made are checked later, as any record is, by
:func:`~airflow_provider_chartmogul.push.records.parse_record`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_chartmogul.attributes import canonical_type, infer_type, normalize_value, validate_key
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError, shorten
from airflow_provider_chartmogul.push.records import (
    IDENTIFIER_FIELDS,
    LOOKUP_FIELDS,
    describe_record,
    invalid,
)
from airflow_provider_chartmogul.push.report import json_safe

__all__ = [
    "ATTRIBUTE_TYPES_LABEL",
    "SQL_RESULT_LABEL",
    "RejectedInput",
    "check_columns",
    "records_from_rows",
    "validate_attribute_types",
]

#: Label used in errors about a SQL result as a whole.
SQL_RESULT_LABEL = "SQL result"
#: Label used in errors about the ``attribute_types`` mapping.
ATTRIBUTE_TYPES_LABEL = "attribute_types"


@dataclass(frozen=True, slots=True)
class RejectedInput:
    """An input item that is not a record: a SQL row that could not be turned into one (yielded by
    :func:`records_from_rows` in its place; the run reports it and goes on with the next), or the
    point where the input itself broke (``stage="input"``, from
    :func:`~airflow_provider_chartmogul.push.sources.guarded`; nothing after it was read).

    :param index: 0-based position of the row (``start_index`` included).
    :param label: ``record #N (identifier=...)``, as for any record.
    :param message: the full message (label, column, value, rule).
    :param record: what could be read of the row, in record shape, JSON-serialisable, to help find the row:
        identifiers and the attributes that could be typed (values converted to JSON); the columns
        in error are left out, so this is not meant to be replayed unchanged.
    :param key: the (first) column in error.
    :param error: the same problem as an exception, to raise or to log.
    """

    index: int
    label: str
    message: str
    record: dict[str, Any]
    key: str | None = None
    error: ChartMogulValidationError | None = field(default=None, compare=False, repr=False)
    # "input": the input itself broke here (nothing after it was read), not one bad row.
    stage: str = "validation"


def validate_attribute_types(attribute_types: Mapping[str, str] | None) -> dict[str, str]:
    """Check an ``attribute_types`` mapping (column/key -> type name) and return it normalised.

    Type names are matched case-insensitively and returned in their documented spelling. Keys
    must be valid attribute keys and not identifier fields. ``None`` gives ``{}``.

    :raises ChartMogulValidationError: labelled ``attribute_types``.
    """
    if attribute_types is None:
        return {}
    if not isinstance(attribute_types, Mapping):
        raise invalid(
            f"must be a mapping of column name to type name, got {type(attribute_types).__name__}",
            ATTRIBUTE_TYPES_LABEL,
            attribute_types,
        )
    result: dict[str, str] = {}
    for key, type_name in attribute_types.items():
        validate_key(key, customer=ATTRIBUTE_TYPES_LABEL)
        if key in IDENTIFIER_FIELDS:
            raise invalid(
                f"{key!r} is an identifier column, not an attribute; it cannot have a type",
                ATTRIBUTE_TYPES_LABEL,
                type_name,
                key=key,
            )
        try:
            result[key] = canonical_type(type_name)
        except ValueError as exc:
            raise invalid(str(exc), ATTRIBUTE_TYPES_LABEL, type_name, key=key) from None
    return result


def check_columns(columns: Sequence[str], types: Mapping[str, str]) -> None:
    """Check the column names of a SQL result (and ``types``, as :func:`validate_attribute_types`
    returned it, against them).

    Errors: a non-string or duplicate column name; a non-identifier column whose name is not a
    valid attribute key; no ``customer_uuid``/``external_id``/``email`` column; a
    ``data_source_uuid`` column without ``external_id``; a type for a column the result does not
    have (an error rather than a warning: such a typo would otherwise silently change the inferred type).

    :raises ChartMogulValidationError: labelled ``SQL result``.
    """
    seen: set[str] = set()
    for name in columns:
        if not isinstance(name, str):
            raise invalid(f"column names must be strings, got {type(name).__name__}", SQL_RESULT_LABEL, name)
        if name in seen:
            raise invalid(
                f"column {shorten(name)} appears more than once (duplicate column name); "
                "alias the columns so each name is unique",
                SQL_RESULT_LABEL,
                name,
            )
        seen.add(name)
        if name not in IDENTIFIER_FIELDS:
            validate_key(
                name,
                customer=SQL_RESULT_LABEL,
                hint="the column name is not a valid attribute key: alias it in SQL",
            )
    if not seen.intersection(LOOKUP_FIELDS):
        raise invalid(
            "SQL result has no identifier column; expected one of customer_uuid, external_id, email",
            SQL_RESULT_LABEL,
            list(columns),
        )
    if "data_source_uuid" in seen and "external_id" not in seen:
        raise invalid(
            "column 'data_source_uuid' is only allowed together with an 'external_id' column",
            SQL_RESULT_LABEL,
            list(columns),
        )
    for key in types:
        if key not in seen:
            raise invalid(
                f"attribute_types names column {key!r} that the SQL result does not have",
                SQL_RESULT_LABEL,
                list(columns),
                key=key,
            )


def _identifier_from_sql(name: str, value: Any) -> Any:
    """SQL identifier values: integers (but in ``customer_uuid``, refused as in a record) and UUIDs
    become strings; the rest is checked by parse_record."""
    if isinstance(value, int) and not isinstance(value, bool) and name != "customer_uuid":
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def records_from_rows(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    attribute_types: Mapping[str, str] | None = None,
    start_index: int = 0,
    keep_nulls: bool = False,
) -> Iterator[dict[str, Any] | RejectedInput]:
    """Turn SQL rows into raw records (operator input shape), lazily, one per row.

    The columns are checked at once (:func:`check_columns`, raising); the rows are read only as the
    result is iterated, so a large result streams in constant memory.

    * Identifier columns: NULL is left out; ``int`` (except in ``customer_uuid``) and ``uuid.UUID``
      values become ``str``.
    * Attribute columns: NULL leaves the attribute out (nothing sent for it), unless
      ``keep_nulls``: then it is kept as ``"value": None`` (a clear, for sync mode with
      ``allow_clear``). A clear's type is never sent (removal takes keys only); it is the column's
      type when known and ``String`` otherwise, and a NULL never fixes an inferred type. The type is
      ``attribute_types[column]`` when given. Otherwise it is inferred with
      :func:`~airflow_provider_chartmogul.attributes.infer_type` from the column's **first non-NULL
      value** and kept for the rest of this call: a ChartMogul key has one type account-wide, so a
      column must not switch between Integer and Decimal from row to row (SQLite returns ``8`` and
      ``8.5`` from the same NUMERIC column). A later value of another Python type is sent with the
      column's type when it fits it (``8.0`` for Integer); when it does not, that row is a
      :class:`RejectedInput` that suggests setting ``attribute_types``. SQLite returns booleans as 0/1
      ``int`` (inferred Integer): map such columns to ``Boolean`` in ``attribute_types``.
    * Values are left as the database returned them (``datetime``, ``Decimal``...):
      :func:`~airflow_provider_chartmogul.push.records.parse_record` checks and converts them.
    * A value whose type cannot be determined (``bytes``, a ``dict`` from a JSON column) or a row
      with the wrong number of values yields a :class:`RejectedInput` in place of the record; the
      stream goes on.

    :param attribute_types: as :func:`validate_attribute_types` returned it: the operator checks
        ``attribute_types`` once, when the DAG is parsed, and everything after takes it as checked.
    :param start_index: index of the first row, for labels when results come in batches (the
        inferred column types are not carried from one call to the next).
    :param keep_nulls: keep NULL attribute values as ``None`` (clears) instead of leaving them out.
    :raises ChartMogulValidationError: from :func:`check_columns`, before any row is read.
    """
    columns = list(columns)
    types = dict(attribute_types or {})
    check_columns(columns, types)
    return _iter_records(columns, rows, types, start_index, keep_nulls)


def _iter_records(
    columns: list[str],
    rows: Iterable[Sequence[Any]],
    types: dict[str, str],
    start_index: int,
    keep_nulls: bool,
) -> Iterator[dict[str, Any] | RejectedInput]:
    identifiers = [(pos, name) for pos, name in enumerate(columns) if name in IDENTIFIER_FIELDS]
    attributes = [(pos, name) for pos, name in enumerate(columns) if name not in IDENTIFIER_FIELDS]
    # column -> (inferred type, index of the row it was inferred from)
    inferred: dict[str, tuple[str, int]] = {}

    for offset, row in enumerate(rows):
        index = start_index + offset
        values = tuple(row)
        record: dict[str, Any] = {}
        for pos, name in identifiers:
            if pos < len(values) and values[pos] is not None:
                record[name] = _identifier_from_sql(name, values[pos])
        if len(values) != len(columns):
            label = describe_record(record, index)
            error = invalid(
                f"row has {len(values)} values but the SQL result has {len(columns)} columns",
                label,
                has_value=False,
            )
            yield RejectedInput(index, label, str(error), json_safe({**record, "custom": []}), None, error)
            continue

        custom: list[dict[str, Any]] = []
        problems: list[tuple[str, Any, str]] = []
        for pos, name in attributes:
            value = values[pos]
            if value is None:
                if keep_nulls:
                    known = types.get(name) or inferred.get(name, ("String", 0))[0]
                    custom.append({"type": known, "key": name, "value": None})
                continue
            type_ = types.get(name)
            if type_ is None:
                type_, problem = _column_type(name, value, index, inferred)
                if problem is not None:
                    problems.append((name, value, problem))
                    continue
            custom.append({"type": type_, "key": name, "value": value})
        record["custom"] = custom
        if problems:
            yield _rejected_row(index, record, problems)
        else:
            yield record


def _column_type(
    name: str, value: Any, index: int, inferred: dict[str, tuple[str, int]]
) -> tuple[str, str | None]:
    """The type for ``value`` of column ``name`` without an explicit type, or a problem text."""
    try:
        own: str | None = infer_type(value)
    except ValueError as exc:
        own, own_problem = None, str(exc)
    known = inferred.get(name)
    if known is None:
        if own is None:
            return "", own_problem
        inferred[name] = (own, index)
        return own, None
    type_, first = known
    if own != type_:
        try:
            normalize_value(type_, value)
        except ValueError as exc:
            fix = f"; set attribute_types={{{name!r}: {own!r}}} to choose the type" if own else ""
            return "", (
                f"{exc} (the column's type {type_} was inferred from its first non-NULL value, "
                f"in record #{first}){fix}"
            )
    return type_, None


def _rejected_row(index: int, record: dict[str, Any], problems: list[tuple[str, Any, str]]) -> RejectedInput:
    label = describe_record(record, index)
    if len(problems) == 1:
        name, value, rule = problems[0]
        error = invalid(rule, label, value, key=name)
    else:
        rule = "; ".join(
            f"attribute {name!r}: value {shorten(value)}: {text}" for name, value, text in problems
        )
        error = invalid(rule, label, has_value=False)
    return RejectedInput(index, label, str(error), json_safe(record), problems[0][0], error)
