"""Customer records: who to update and which attributes to push; SQL rows turned into records.

A record, in the operator's input shape::

    {"customer_uuid": "cus_...", "custom": [{"type": "String", "key": "channel", "value": "Facebook"}]}
    {"external_id": "42", "data_source_uuid": "ds_...", "custom": [...]}
    {"email": "a@example.com", "custom": [...]}

Record rules (:func:`parse_record`):

======================  ========================================================================
field                   rule
======================  ========================================================================
identifier              exactly one of ``customer_uuid``, ``external_id``, ``email``. A field
                        whose value is ``None`` counts as not given (JSON ``null``, SQL NULL).
``customer_uuid``       a non-empty ``str`` safe in a URL path (see
                        :func:`~airflow_provider_chartmogul.client.identifiers.validate_customer_uuid`);
                        any format, ``cus_`` + UUID not required. An ``int`` is refused, from a
                        record and from SQL alike (it is probably an ``external_id``).
``external_id``         a non-empty, non-blank ``str`` (no lone surrogates); an ``int`` (not
                        ``bool``) is accepted and converted with ``str()`` since SQL ids are
                        often integers.
``data_source_uuid``    only together with ``external_id``; a non-empty ``str`` without
                        whitespace or control characters.
``email``               a ``str`` with exactly one ``@`` and text on both sides (nothing stricter;
                        no lone surrogates).
``custom``              required; a list of attributes (an empty list is valid: nothing to send).
                        An attribute whose value is ``None`` is left out, as a SQL NULL is, unless
                        clears are allowed (then it removes the attribute).
``error`` ``status``    ignored, so that failure entries of our own report can be fed back as
``stage``               records.
anything else           rejected by name.
======================  ========================================================================

Errors are :class:`~airflow_provider_chartmogul.exceptions.ChartMogulValidationError` labelled
with :func:`describe_record` (``record #3 (external_id='abc')``), where ``#3`` is the 0-based
position in the input, the same number as :attr:`CustomerRecord.index`.

SQL rows (:func:`records_from_rows`): columns named like :data:`IDENTIFIER_FIELDS` are identifiers,
every other column is an attribute keyed by the column name. Its type comes from
``attribute_types``, else it is inferred from the values (see :func:`records_from_rows`).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_chartmogul.attributes import (
    CustomAttribute,
    canonical_type,
    infer_type,
    normalize_custom,
    normalize_value,
    validate_key,
)
from airflow_provider_chartmogul.attributes.text import surrogate_problem
from airflow_provider_chartmogul.client.identifiers import validate_customer_uuid
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError, shorten
from airflow_provider_chartmogul.push.report import json_safe

__all__ = [
    "IDENTIFIER_FIELDS",
    "LOOKUP_FIELDS",
    "RECORD_FIELDS",
    "REPORT_FIELDS",
    "CustomerRecord",
    "RowError",
    "check_columns",
    "describe_record",
    "parse_record",
    "records_from_rows",
    "validate_attribute_types",
]

IDENTIFIER_FIELDS = ("customer_uuid", "external_id", "data_source_uuid", "email")
#: The identifiers of which a record gives exactly one (``data_source_uuid`` only qualifies
#: ``external_id``).
LOOKUP_FIELDS = ("customer_uuid", "external_id", "email")
#: Fields a record may have.
RECORD_FIELDS = (*IDENTIFIER_FIELDS, "custom")
#: Fields of our failure report that are ignored when a report entry is fed back as a record.
REPORT_FIELDS = ("error", "status", "stage")

#: Label used in errors about a SQL result as a whole.
SQL_RESULT_LABEL = "SQL result"
#: Label used in errors about the ``attribute_types`` mapping.
ATTRIBUTE_TYPES_LABEL = "attribute_types"

_INT_UUID_HINT = (
    "ChartMogul customer uuids are strings such as 'cus_...'; an integer id is probably an "
    "external_id: name the field or column external_id"
)


@dataclass(slots=True)
class CustomerRecord:
    """One checked record: the customer to update and the attributes to send.

    :param index: 0-based position in the input.
    :param custom: checked attributes; may be empty (nothing to send).
    """

    index: int
    customer_uuid: str | None
    external_id: str | None
    data_source_uuid: str | None
    email: str | None
    custom: list[CustomAttribute]

    @property
    def label(self) -> str:
        """``customer_uuid=cus_...``, ``external_id=X (data_source_uuid=ds_...)`` or ``email=a@b.c``."""
        if self.customer_uuid is not None:
            return f"customer_uuid={shorten(self.customer_uuid, quote=False)}"
        if self.external_id is not None:
            label = f"external_id={shorten(self.external_id, quote=False)}"
            if self.data_source_uuid is not None:
                label += f" (data_source_uuid={shorten(self.data_source_uuid, quote=False)})"
            return label
        if self.email is not None:
            return f"email={shorten(self.email, quote=False)}"
        return f"record #{self.index}"

    def to_record(self) -> dict[str, Any]:
        """Back to the input shape: the identifier fields that are set, then ``custom``.

        JSON-serialisable, and :func:`parse_record` accepts it again (use ``allow_clear`` if it
        holds clears).
        """
        record: dict[str, Any] = {}
        for name in IDENTIFIER_FIELDS:
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        record["custom"] = [attribute.as_payload() for attribute in self.custom]
        return record


def describe_record(raw: Any, index: int) -> str:
    """Best-effort label for a record that may be invalid: ``record #3 (external_id='x')`` or ``record #3``.

    Every identifier field present (and not ``None``) is shown, values shortened.
    """
    label = f"record #{index}"
    if not isinstance(raw, Mapping):
        return label
    shown = [f"{name}={shorten(raw[name])}" for name in IDENTIFIER_FIELDS if raw.get(name) is not None]
    return f"{label} ({', '.join(shown)})" if shown else label


def _fail(rule: str, label: str, value: Any = None, *, has_value: bool = True) -> ChartMogulValidationError:
    return ChartMogulValidationError(rule, customer=label, value=value, has_value=has_value)


def _check_external_id(value: Any, label: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _fail(
            f"field 'external_id' must be a string (or an int), got {type(value).__name__}", label, value
        )
    if not value.strip():
        raise _fail("field 'external_id' must be a non-empty, non-blank string", label, value)
    problem = surrogate_problem(value)
    if problem:
        raise _fail(f"field 'external_id' {problem}", label, value)
    return value


def _check_data_source_uuid(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"field 'data_source_uuid' must be a string, got {type(value).__name__}", label, value)
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _fail(
            "field 'data_source_uuid' must be a non-empty string without whitespace or control characters",
            label,
            value,
        )
    return value


def _check_email(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"field 'email' must be a string, got {type(value).__name__}", label, value)
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise _fail("field 'email' must contain exactly one '@' with text on both sides", label, value)
    problem = surrogate_problem(value)
    if problem:
        raise _fail(f"field 'email' {problem}", label, value)
    return value


def parse_record(
    raw: Any,
    *,
    index: int,
    default_source: str | None = None,
    allow_clear: bool = False,
) -> CustomerRecord:
    """Check one record in the operator's input shape (rules in the module docstring).

    :param index: 0-based position of the record in the input, used in labels.
    :param default_source: ``source`` for attributes that give none.
    :param allow_clear: keep attribute values of ``None`` (remove the attribute); without it such
        attributes are left out (nothing is sent for them).
    :raises ChartMogulValidationError: labelled ``record #N (identifier=...)``.
    """
    label = describe_record(raw, index)
    if not isinstance(raw, Mapping):
        raise _fail(
            f"must be a mapping with an identifier and 'custom', got {type(raw).__name__}", label, raw
        )
    for name in raw:
        if name in RECORD_FIELDS or name in REPORT_FIELDS:
            continue
        close = difflib.get_close_matches(name, RECORD_FIELDS, n=1) if isinstance(name, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _fail(
            f"unknown record field {shorten(name)} (allowed: {', '.join(RECORD_FIELDS)}){hint}",
            label,
            raw[name],
        )

    given = [name for name in LOOKUP_FIELDS if raw.get(name) is not None]
    data_source_uuid = raw.get("data_source_uuid")
    if not given:
        if data_source_uuid is not None:
            rule = "field 'data_source_uuid' is only allowed together with 'external_id', which is missing"
        else:
            rule = (
                "needs exactly one identifier field: customer_uuid, external_id "
                "(optionally with data_source_uuid) or email; none given"
            )
        raise _fail(rule, label, has_value=False)
    if len(given) > 1:
        raise _fail(
            "give exactly one identifier field of customer_uuid, external_id, email; "
            f"got {' and '.join(given)}",
            label,
            has_value=False,
        )
    customer_uuid = external_id = email = None
    if given[0] == "customer_uuid":
        hint = _INT_UUID_HINT if isinstance(raw["customer_uuid"], int) else ""
        customer_uuid = validate_customer_uuid(raw["customer_uuid"], customer=label, hint=hint)
    elif given[0] == "external_id":
        external_id = _check_external_id(raw["external_id"], label)
    else:
        email = _check_email(raw["email"], label)
    if data_source_uuid is not None:
        if external_id is None:
            raise _fail(
                f"field 'data_source_uuid' is only allowed together with 'external_id', not with {given[0]}",
                label,
                data_source_uuid,
            )
        data_source_uuid = _check_data_source_uuid(data_source_uuid, label)

    if "custom" not in raw:
        raise _fail("field 'custom' is required (a list of attributes)", label, has_value=False)
    custom = normalize_custom(raw["custom"], customer=label, allow_clear=True, default_source=default_source)
    if not allow_clear:
        # No value, like a SQL NULL: the attribute is left alone.
        custom = [attribute for attribute in custom if attribute.value is not None]
    return CustomerRecord(
        index=index,
        customer_uuid=customer_uuid,
        external_id=external_id,
        data_source_uuid=data_source_uuid,
        email=email,
        custom=custom,
    )


# ---------------------------------------------------------------------------------------------
# SQL rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowError:
    """A SQL row that could not be turned into a record; yielded by :func:`records_from_rows` in its place.

    The caller reports it as a failure of that row and goes on with the next.

    :param index: 0-based position of the row (``start_index`` included).
    :param label: ``record #N (identifier=...)``, as for any record.
    :param message: the full message (label, column, value, rule).
    :param record: the row in the record shape, JSON-serialisable, to help find the row:
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
        raise ChartMogulValidationError(
            f"must be a mapping of column name to type name, got {type(attribute_types).__name__}",
            customer=ATTRIBUTE_TYPES_LABEL,
            value=attribute_types,
            has_value=True,
        )
    result: dict[str, str] = {}
    for key, type_name in attribute_types.items():
        validate_key(key, customer=ATTRIBUTE_TYPES_LABEL)
        if key in IDENTIFIER_FIELDS:
            raise ChartMogulValidationError(
                f"{key!r} is an identifier column, not an attribute; it cannot have a type",
                customer=ATTRIBUTE_TYPES_LABEL,
                key=key,
                value=type_name,
                has_value=True,
            )
        try:
            result[key] = canonical_type(type_name)
        except ValueError as exc:
            raise ChartMogulValidationError(
                str(exc), customer=ATTRIBUTE_TYPES_LABEL, key=key, value=type_name, has_value=True
            ) from None
    return result


def check_columns(columns: Sequence[str], attribute_types: Mapping[str, str] | None) -> None:
    """Check the column names of a SQL result (and ``attribute_types`` against them).

    Errors: a non-string or duplicate column name; a non-identifier column whose name is not a
    valid attribute key; no ``customer_uuid``/``external_id``/``email`` column; a
    ``data_source_uuid`` column without ``external_id``; an invalid ``attribute_types`` (see
    :func:`validate_attribute_types`) or one naming a column the result does not have (an error
    rather than a warning: such a typo would otherwise silently change the inferred type).

    :raises ChartMogulValidationError: labelled ``SQL result``.
    """
    types = validate_attribute_types(attribute_types)
    seen: set[str] = set()
    for name in columns:
        if not isinstance(name, str):
            raise ChartMogulValidationError(
                f"column names must be strings, got {type(name).__name__}",
                customer=SQL_RESULT_LABEL,
                value=name,
                has_value=True,
            )
        if name in seen:
            raise ChartMogulValidationError(
                f"column {shorten(name)} appears more than once (duplicate column name); "
                "alias the columns so each name is unique",
                customer=SQL_RESULT_LABEL,
                value=name,
                has_value=True,
            )
        seen.add(name)
        if name not in IDENTIFIER_FIELDS:
            validate_key(
                name,
                customer=SQL_RESULT_LABEL,
                hint="the column name is not a valid attribute key: alias it in SQL",
            )
    if not seen.intersection(LOOKUP_FIELDS):
        raise ChartMogulValidationError(
            "SQL result has no identifier column; expected one of customer_uuid, external_id, email",
            customer=SQL_RESULT_LABEL,
            value=list(columns),
            has_value=True,
        )
    if "data_source_uuid" in seen and "external_id" not in seen:
        raise ChartMogulValidationError(
            "column 'data_source_uuid' is only allowed together with an 'external_id' column",
            customer=SQL_RESULT_LABEL,
            value=list(columns),
            has_value=True,
        )
    for key in types:
        if key not in seen:
            raise ChartMogulValidationError(
                f"attribute_types names column {key!r} that the SQL result does not have",
                customer=SQL_RESULT_LABEL,
                key=key,
                value=list(columns),
                has_value=True,
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
) -> Iterator[dict[str, Any] | RowError]:
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
      :class:`RowError` that suggests setting ``attribute_types``. SQLite returns booleans as 0/1
      ``int`` (inferred Integer): map such columns to ``Boolean`` in ``attribute_types``.
    * Values are left as the database returned them (``datetime``, ``Decimal``...):
      :func:`parse_record` checks and converts them.
    * A value whose type cannot be determined (``bytes``, a ``dict`` from a JSON column) or a row
      with the wrong number of values yields a :class:`RowError` in place of the record; the
      stream goes on.

    :param start_index: index of the first row, for labels when results come in batches (the
        inferred column types are not carried from one call to the next).
    :param keep_nulls: keep NULL attribute values as ``None`` (clears) instead of leaving them out.
    :raises ChartMogulValidationError: from :func:`check_columns`, before any row is read.
    """
    columns = list(columns)
    types = validate_attribute_types(attribute_types)
    check_columns(columns, types)
    return _iter_records(columns, rows, types, start_index, keep_nulls)


def _iter_records(
    columns: list[str],
    rows: Iterable[Sequence[Any]],
    types: dict[str, str],
    start_index: int,
    keep_nulls: bool,
) -> Iterator[dict[str, Any] | RowError]:
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
            error = ChartMogulValidationError(
                f"row has {len(values)} values but the SQL result has {len(columns)} columns",
                customer=label,
            )
            yield RowError(index, label, str(error), json_safe({**record, "custom": []}), None, error)
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
            yield _row_error(index, record, problems)
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


def _row_error(index: int, record: dict[str, Any], problems: list[tuple[str, Any, str]]) -> RowError:
    label = describe_record(record, index)
    if len(problems) == 1:
        name, value, rule = problems[0]
        error = ChartMogulValidationError(rule, customer=label, key=name, value=value, has_value=True)
    else:
        rule = "; ".join(
            f"attribute {name!r}: value {shorten(value)}: {text}" for name, value, text in problems
        )
        error = ChartMogulValidationError(rule, customer=label)
    return RowError(index, label, str(error), json_safe(record), problems[0][0], error)
