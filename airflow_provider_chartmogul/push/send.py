"""Send one customer's planned requests, and tell a write that met a customer who moved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.exceptions import ChartMogulAPIError, ChartMogulFatalError
from airflow_provider_chartmogul.push.plan import Plan
from airflow_provider_chartmogul.push.records import CustomerRecord
from airflow_provider_chartmogul.push.resolve import ResolutionError

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook


def apply_plan(
    hook: ChartMogulHook, uuid: str, plan: Plan, current: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Send ``plan``'s requests; the customer's attributes after them. ``uuid`` and the plan's
    values were checked when their record entered the run (or, for a uuid ChartMogul answered,
    when the record's customer was picked), so they go to the hook's sending methods unchecked.

    :raises ChartMogulAPIError: a request failed; when others had gone through, its message says
        how many.
    """
    after: dict[str, Any] | None = None
    written = 0
    try:
        if plan.post:
            after = hook._send_add(uuid, plan.post)
            written += 1
        if plan.put:
            after = hook._send_update(uuid, plan.put)
            written += 1
        if plan.delete:
            removed = hook._send_remove(uuid, plan.delete)
            base = after if after is not None else dict(current or {})
            kept = {key: value for key, value in base.items() if key not in plan.delete}
            after = removed if removed is not None else kept
            written += 1
    except ChartMogulAPIError as exc:
        if not written or isinstance(exc, ChartMogulFatalError):
            raise
        note = f"{written} of {plan.writes} requests for this customer went through; replaying it is safe"
        raise exc.with_note(note) from exc
    return after


def customer_moved(record: CustomerRecord, error: Exception) -> bool:
    """Whether ``error`` (from reading or writing the customer ``record`` was matched to in this
    run) says that customer is gone: a 404 for a record matched by ``external_id`` or ``email``.
    ChartMogul answers 404 for the old uuid of a merged customer; a record named by its
    ``customer_uuid`` is never looked up again."""
    if record.customer_uuid is not None or isinstance(error, ChartMogulFatalError):
        return False
    return isinstance(error, ChartMogulAPIError | ResolutionError) and error.status == 404
