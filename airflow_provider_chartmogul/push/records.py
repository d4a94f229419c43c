"""Customer records: who to update and which attributes to push (rules: docs/record-rules.md)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.attributes import CustomAttribute, normalize_custom
from airflow_provider_chartmogul.attributes.text import surrogate_problem
from airflow_provider_chartmogul.client.identifiers import validate_customer_uuid
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError, shorten

__all__ = [
    "IDENTIFIER_FIELDS",
    "LOOKUP_FIELDS",
    "RECORD_FIELDS",
    "REPORT_FIELDS",
    "CustomerRecord",
    "describe_record",
    "invalid",
    "parse_record",
]

IDENTIFIER_FIELDS = ("customer_uuid", "external_id", "data_source_uuid", "email")
#: The identifiers of which a record gives exactly one (``data_source_uuid`` only qualifies
#: ``external_id``).
LOOKUP_FIELDS = ("customer_uuid", "external_id", "email")
#: Fields a record may have.
RECORD_FIELDS = (*IDENTIFIER_FIELDS, "custom")
#: Fields of our failure report that are ignored when a report entry is fed back as a record.
REPORT_FIELDS = ("error", "status", "stage")

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


def invalid(
    rule: str, label: str, value: Any = None, *, key: str | None = None, has_value: bool = True
) -> ChartMogulValidationError:
    """The error for a record (or a SQL result) labelled ``label``: ``label: value ...: rule``."""
    return ChartMogulValidationError(rule, customer=label, key=key, value=value, has_value=has_value)


def _check_external_id(value: Any, label: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise invalid(
            f"field 'external_id' must be a string (or an int), got {type(value).__name__}", label, value
        )
    if not value.strip():
        raise invalid("field 'external_id' must be a non-empty, non-blank string", label, value)
    problem = surrogate_problem(value)
    if problem:
        raise invalid(f"field 'external_id' {problem}", label, value)
    return value


def _check_data_source_uuid(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"field 'data_source_uuid' must be a string, got {type(value).__name__}", label, value)
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise invalid(
            "field 'data_source_uuid' must be a non-empty string without whitespace or control characters",
            label,
            value,
        )
    return value


def _check_email(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"field 'email' must be a string, got {type(value).__name__}", label, value)
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise invalid("field 'email' must contain exactly one '@' with text on both sides", label, value)
    problem = surrogate_problem(value)
    if problem:
        raise invalid(f"field 'email' {problem}", label, value)
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
        raise invalid(
            f"must be a mapping with an identifier and 'custom', got {type(raw).__name__}", label, raw
        )
    for name in raw:
        if name in RECORD_FIELDS or name in REPORT_FIELDS:
            continue
        close = difflib.get_close_matches(name, RECORD_FIELDS, n=1) if isinstance(name, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise invalid(
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
        raise invalid(rule, label, has_value=False)
    if len(given) > 1:
        raise invalid(
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
            raise invalid(
                f"field 'data_source_uuid' is only allowed together with 'external_id', not with {given[0]}",
                label,
                data_source_uuid,
            )
        data_source_uuid = _check_data_source_uuid(data_source_uuid, label)

    if "custom" not in raw:
        raise invalid("field 'custom' is required (a list of attributes)", label, has_value=False)
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
