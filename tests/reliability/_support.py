"""Helpers shared by the reliability tests: typed customer records, operator runs, and the checks
for secrets."""

from __future__ import annotations

import base64
import datetime as dt
import json
import traceback
from collections.abc import Iterator
from typing import Any

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import (
    AddCustomAttributesOperator,
)

CUSTOM_PATH = "/v1/customers/{}/attributes/custom"
_BASE_DAY = dt.date(2022, 1, 1)


def typed_record(uuid: str, i: int) -> dict[str, Any]:
    """A valid record with one attribute of every type, its values derived from ``i``."""
    day = _BASE_DAY + dt.timedelta(days=i % 700)
    return {
        "customer_uuid": uuid,
        "custom": [
            {"type": "String", "key": "plan", "value": f"plan-{i}"},
            {"type": "Integer", "key": "seats", "value": i},
            {"type": "Decimal", "key": "mrr", "value": i + 0.25},
            {"type": "Boolean", "key": "pro", "value": i % 2 == 0},
            {"type": "Timestamp", "key": "since", "value": f"{day.isoformat()}T00:00:00Z"},
        ],
    }


def stored_values(i: int) -> dict[str, Any]:
    """What ChartMogul holds after ``typed_record(uuid, i)`` was written."""
    day = _BASE_DAY + dt.timedelta(days=i % 700)
    return {
        "plan": f"plan-{i}",
        "seats": i,
        "mrr": i + 0.25,
        "pro": i % 2 == 0,
        "since": f"{day.isoformat()}T00:00:00.000Z",
    }


TYPED_DEFINITIONS = {
    "plan": "String",
    "seats": "Integer",
    "mrr": "Decimal",
    "pro": "Boolean",
    "since": "Timestamp",
}


def uuid_of_custom_path(path: str) -> str | None:
    """``cus_x`` for ``/v1/customers/cus_x/attributes/custom``, else None."""
    prefix, suffix = "/v1/customers/", "/attributes/custom"
    if path.startswith(prefix) and path.endswith(suffix):
        segment = path[len(prefix) : -len(suffix)]
        return segment if "/" not in segment else None
    return None


def _allow_direct_execute_in_this_thread() -> None:
    """Airflow 2's ExecutorSafeguard keeps its state in a thread-local set up on the main thread
    only, so calling ``execute()`` directly from another thread raises AttributeError there."""
    import threading

    if threading.current_thread() is threading.main_thread():
        return
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def run_operator(**kwargs: Any) -> tuple[dict[str, Any], CustomAttributesPushError | None]:
    """Execute the operator as a task would; the report (returned or carried by the error) and the error."""
    context = kwargs.pop("context", None)
    kwargs.setdefault("task_id", "push")
    _allow_direct_execute_in_this_thread()
    operator = AddCustomAttributesOperator(**kwargs)
    try:
        return operator.execute(context=context or {}), None
    except CustomAttributesPushError as exc:
        return exc.report, exc


class RecordingTI:
    """Stands in for the task instance: keeps what the operator pushes to XCom, JSON-encoded as XCom
    stores it."""

    run_id = "manual__2026-11-29T00:00:00+00:00"

    def __init__(self) -> None:
        self.xcom: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.dumps(value)


# ---- secrets ------------------------------------------------------------------------------------


def secret_forms(key: str) -> list[str]:
    """The key, and the Basic-auth token that carries it (a leak of either is a leak)."""
    return [key, base64.b64encode(f"{key}:".encode()).decode()]


def exception_texts(exc: BaseException) -> Iterator[str]:
    """str, repr and the formatted traceback of ``exc`` and every exception chained to it, through
    ``__cause__`` and ``__context__`` (even when suppressed with ``from None``)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield "".join(traceback.format_exception(current))
        yield repr(getattr(current, "args", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def redact(text: str) -> str:
    try:
        from airflow.sdk.log import redact as _redact
    except ImportError:  # Airflow 2
        from airflow.utils.log.secrets_masker import redact as _redact  # type: ignore[no-redef]
    return str(_redact(text))
