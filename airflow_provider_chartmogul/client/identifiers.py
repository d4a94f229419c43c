"""Customer identifiers: the UUID that goes into a request's URL path, and the ids an answer's
customer object carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_chartmogul.exceptions import ChartMogulValidationError

_UNSAFE_PATH_CHARS = frozenset("/\\?#%")


def validate_customer_uuid(uuid: Any, *, customer: str | None = None, hint: str = "") -> str:
    """Check a ChartMogul customer UUID is safe to put in a URL path.

    Any format is accepted (``cus_`` + UUID is usual, but not required): a non-empty ``str``
    without ``/``, ``\\``, ``?``, ``#``, ``%``, whitespace or control characters, and not ``.`` or
    ``..``.

    :param customer: who the error is about (a record's label), if known.
    :param hint: appended to the rule, to say how to fix the value where it came from.
    :raises ChartMogulValidationError: naming ``customer_uuid``, the value and the rule.
    """
    if isinstance(uuid, str):
        problem = None
        if uuid == "":
            problem = "a non-empty string"
        elif uuid in (".", ".."):
            problem = "a real identifier, not '.' or '..'"
        elif " " in uuid or not uuid.isprintable():  # every other whitespace is not printable
            problem = "free of whitespace and control characters"
        elif _UNSAFE_PATH_CHARS.intersection(uuid):
            bad = "".join(sorted(_UNSAFE_PATH_CHARS.intersection(uuid)))
            problem = f"safe in a URL path (no / \\ ? # %; found {bad!r})"
        if problem is None:
            return uuid
    else:
        problem = f"a string, got {type(uuid).__name__}"
    rule = f"customer_uuid must be {problem}; {hint}" if hint else f"customer_uuid must be {problem}"
    raise ChartMogulValidationError(rule, customer=customer, value=uuid, has_value=True)


def _ids(customer: Mapping[str, Any], one: str, many: str) -> set[str]:
    values = {str(v) for v in customer.get(many) or [] if v}
    if customer.get(one):
        values.add(str(customer[one]))
    return values


def external_ids(customer: Mapping[str, Any]) -> set[str]:
    """Every external id of a customer as the API shows it (``external_ids`` and ``external_id``:
    a merged customer has several)."""
    return _ids(customer, "external_id", "external_ids")


def data_source_uuids(customer: Mapping[str, Any]) -> set[str]:
    """Every data source of a customer as the API shows it (``data_source_uuids`` and
    ``data_source_uuid``)."""
    return _ids(customer, "data_source_uuid", "data_source_uuids")
