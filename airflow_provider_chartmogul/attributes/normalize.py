"""Checking whole attributes (the seed's ``{"type", "key", "value", "source"?}``) and ``custom`` lists."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from airflow_provider_chartmogul.attributes.attribute import ATTRIBUTE_FIELDS, CustomAttribute, canonical_type
from airflow_provider_chartmogul.attributes.keys import is_valid_key, validate_key
from airflow_provider_chartmogul.attributes.text import surrogate_problem
from airflow_provider_chartmogul.attributes.values import normalize_for_type
from airflow_provider_chartmogul.exceptions import ChartMogulValidationError, shorten


def _invalid(rule: str, customer: str | None, key: str | None, value: Any) -> ChartMogulValidationError:
    return ChartMogulValidationError(rule, customer=customer, key=key, value=value, has_value=True)


def _check_source(source: Any, *, customer: str | None, key: str | None) -> str | None:
    if source is None:
        return None
    if not isinstance(source, str) or not source.strip():
        got = type(source).__name__ if not isinstance(source, str) else "a blank string"
        raise _invalid(f"source must be a non-empty string when given, got {got}", customer, key, source)
    problem = surrogate_problem(source)
    if problem:
        raise _invalid(f"source {problem}", customer, key, source)
    return source


def _valid_key_or_none(raw: Mapping[Any, Any]) -> str | None:
    """The record's key if it is a valid key, for naming it in an error about another field."""
    key = raw.get("key")
    return key if is_valid_key(key) else None


def normalize_attribute(
    raw: Any,
    *,
    customer: str | None = None,
    allow_clear: bool = False,
    default_source: str | None = None,
) -> CustomAttribute:
    """Check one attribute (the seed's ``{"type", "key", "value", "source"?}``, or a
    :class:`CustomAttribute`) and normalise it. ``default_source`` applies whenever the attribute
    has no source.

    Every call checks: what was checked once is not given here again (a push run checks its
    records when they enter it and sends them through the hook unchecked).

    :param customer: label of the customer, used in every error.
    :param allow_clear: accept ``value: None``, meaning "remove this attribute".
    :param default_source: source to use when the attribute gives none.
    :raises ChartMogulValidationError: naming the customer, the key, the value and the rule.
    """
    if isinstance(raw, CustomAttribute):
        raw = {"type": raw.type, "key": raw.key, "value": raw.value, "source": raw.source}
    if not isinstance(raw, Mapping):
        raise _invalid(
            f"an attribute must be a mapping with type, key and value, got {type(raw).__name__}",
            customer,
            None,
            raw,
        )
    unknown = [field for field in raw if field not in ATTRIBUTE_FIELDS]
    if unknown:
        field = unknown[0]
        close = difflib.get_close_matches(str(field), ATTRIBUTE_FIELDS, n=1) if isinstance(field, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _invalid(
            f"unknown attribute field {shorten(field)} (allowed: {', '.join(ATTRIBUTE_FIELDS)}){hint}",
            customer,
            _valid_key_or_none(raw),
            raw[field],
        )
    missing = [field for field in ("type", "key", "value") if field not in raw]
    if missing:
        raise _invalid(
            f"attribute is missing required field(s) {', '.join(repr(m) for m in missing)}",
            customer,
            _valid_key_or_none(raw),
            dict(raw),
        )
    key = validate_key(raw["key"], customer=customer)
    value = raw["value"]
    try:
        type_ = canonical_type(raw["type"])
    except ValueError as exc:
        raise _invalid(str(exc), customer, key, value) from None
    source = _check_source(raw.get("source"), customer=customer, key=key)
    if source is None:
        source = _check_source(default_source, customer=customer, key=key)
    if value is None:
        if allow_clear:
            return CustomAttribute(type_, key, None, source)
        raise _invalid(
            f"value is required for a {type_} attribute (None is only accepted when clearing is allowed)",
            customer,
            key,
            value,
        )
    try:
        normalised = normalize_for_type(type_, value)
    except ValueError as exc:
        raise _invalid(str(exc), customer, key, value) from None
    return CustomAttribute(type_, key, normalised, source)


def normalize_custom(
    raw: Any,
    *,
    customer: str | None = None,
    allow_clear: bool = False,
    default_source: str | None = None,
) -> list[CustomAttribute]:
    """Check a ``custom`` list. An empty list is valid and means "nothing to send".

    :raises ChartMogulValidationError: for a non-list, any bad attribute, or a key given twice.
    """
    if not isinstance(raw, (list, tuple)):
        raise _invalid(
            f"field 'custom' must be a list of attributes, got {type(raw).__name__}", customer, None, raw
        )
    result: list[CustomAttribute] = []
    seen: set[str] = set()
    for item in raw:
        attribute = normalize_attribute(
            item, customer=customer, allow_clear=allow_clear, default_source=default_source
        )
        if attribute.key in seen:
            raise _invalid(
                "the same attribute key appears more than once in one record (duplicate key)",
                customer,
                attribute.key,
                attribute.value,
            )
        seen.add(attribute.key)
        result.append(attribute)
    return result
