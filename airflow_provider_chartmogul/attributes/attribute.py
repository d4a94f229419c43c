"""A custom attribute as it is sent, and the five ChartMogul type names."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_provider_chartmogul.exceptions import shorten

ATTRIBUTE_TYPES: tuple[str, ...] = ("String", "Integer", "Decimal", "Timestamp", "Boolean")
#: Fields of one attribute in the seed's request body, in the seed's order.
ATTRIBUTE_FIELDS: tuple[str, ...] = ("type", "key", "value", "source")

_TYPES_BY_FOLDED = {name.casefold(): name for name in ATTRIBUTE_TYPES}
# Names people reach for that are not ChartMogul types: only used for "did you mean" hints.
_TYPE_HINTS = {
    "float": "Decimal",
    "double": "Decimal",
    "number": "Decimal",
    "numeric": "Decimal",
    "real": "Decimal",
    "int": "Integer",
    "bigint": "Integer",
    "long": "Integer",
    "bool": "Boolean",
    "str": "String",
    "text": "String",
    "varchar": "String",
    "date": "Timestamp",
    "datetime": "Timestamp",
    "time": "Timestamp",
}


@dataclass(frozen=True, slots=True)
class CustomAttribute:
    """One attribute, ready to send once :func:`~airflow_provider_chartmogul.attributes.normalize_attribute`
    has made it (the hook's public methods check any instance they are given).

    :param type: one of :data:`ATTRIBUTE_TYPES`, in its documented spelling.
    :param key: the attribute key.
    :param value: the normalised JSON value; ``None`` only for a clear (``allow_clear``), meaning
        "remove this attribute".
    :param source: optional label shown in ChartMogul's UI (ChartMogul defaults it to ``"API"``).
    """

    type: str
    key: str
    value: str | int | float | bool | None
    source: str | None = None

    def as_payload(self) -> dict[str, Any]:
        """The seed's element: ``type``, ``key``, ``value`` and ``source`` (only when set), in that order."""
        payload: dict[str, Any] = {"type": self.type, "key": self.key, "value": self.value}
        if self.source is not None:
            payload["source"] = self.source
        return payload


def canonical_type(type_: Any) -> str:
    """The documented spelling of a type name, matched case-insensitively.

    :raises ValueError: with a rule text naming the allowed types and, for near misses such as
        ``Float``, a "did you mean" hint.
    """
    allowed = ", ".join(ATTRIBUTE_TYPES)
    if not isinstance(type_, str):
        raise ValueError(f"type must be one of {allowed}, got {type(type_).__name__} {shorten(type_)}")
    found = _TYPES_BY_FOLDED.get(type_.casefold())
    if found is not None:
        return found
    folded = type_.strip().casefold()
    hint = _TYPES_BY_FOLDED.get(folded) or _TYPE_HINTS.get(folded)
    if hint is None:
        close = difflib.get_close_matches(folded, list(_TYPES_BY_FOLDED), n=1)
        hint = _TYPES_BY_FOLDED[close[0]] if close else None
    suffix = f"; did you mean {hint!r}?" if hint else ""
    raise ValueError(f"type {shorten(type_)} is not one of {allowed}{suffix}")


def infer_type(value: Any) -> str:
    """The ChartMogul type of a Python value read from a database.

    ``bool`` -> Boolean (checked before ``int``), ``int`` -> Integer, ``float``/``Decimal`` ->
    Decimal, ``datetime``/``date`` (pendulum included) -> Timestamp, ``str`` -> String.

    :raises ValueError: for anything else, naming the Python type.
    """
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, (float, Decimal)):
        return "Decimal"
    if isinstance(value, dt.datetime | dt.date):
        return "Timestamp"
    if isinstance(value, str):
        return "String"
    raise ValueError(
        f"cannot infer a ChartMogul type from a Python {type(value).__name__} value; "
        "give the column a type in attribute_types or cast it in SQL"
    )
