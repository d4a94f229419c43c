"""What happened to every customer of a run: outcomes, and the report the operator returns."""

from __future__ import annotations

import decimal
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_chartmogul.attributes import normalize_value
from airflow_provider_chartmogul.exceptions import shorten
from airflow_provider_chartmogul.redaction import scrub, scrub_value

Status = Literal["succeeded", "failed", "skipped"]
Stage = Literal["input", "validation", "resolution", "conflict", "api", "verify", "aborted"]
Action = Literal["added", "changed", "unchanged", "cleared"]
ACTIONS: tuple[Action, ...] = ("added", "changed", "unchanged", "cleared")


@dataclass(frozen=True, slots=True)
class Change:
    """What happens (or would happen, in a dry run) to one attribute of one customer."""

    key: str
    action: Action
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "action": self.action}
        if self.action in ("changed", "cleared", "unchanged"):
            out["old"] = self.old
        if self.action in ("added", "changed"):
            out["new"] = self.new
        return out


@dataclass(slots=True)
class Outcome:
    """The end of one customer record's journey."""

    status: Status
    label: str
    record: Any  # a CustomerRecord, or the raw input when it could not be parsed
    customer_uuid: str | None = None
    changes: list[Change] = field(default_factory=list)
    stage: Stage | None = None
    http_status: int | None = None
    error: str | None = None
    #: The record's customer answered 404 (merged away), was looked up once more and written anew.
    re_resolved: bool = False

    @classmethod
    def failure(
        cls,
        stage: Stage,
        label: str,
        record: Any,
        error: str,
        *,
        http_status: int | None = None,
        customer_uuid: str | None = None,
    ) -> Outcome:
        return cls(
            "failed",
            label,
            record,
            customer_uuid=customer_uuid,
            stage=stage,
            http_status=http_status,
            error=error,
        )


def _replayable(record: Any) -> Any:
    to_record = getattr(record, "to_record", None)
    return to_record() if callable(to_record) else record


def json_safe(value: Any) -> Any:
    """``value`` made strict JSON (for XCom, reports, dead-letter rows and the record of a
    ``RejectedInput``), keeping what can be kept.

    * NaN and infinities (``float`` or ``Decimal``) have no JSON form: they become
      ``{"unrepresentable": "nan"}``, which a replay rejects again as a nested value (``None``
      could read as "clear this attribute", and the string "nan" as valid text).
    * A finite ``Decimal`` becomes the number a Decimal attribute sends for it (``Decimal('8')`` ->
      ``8``, ``Decimal('8.50')`` -> ``8.5``), or its text when a float cannot hold it
      (``"1E-400"``), which a replay then judges as the original was judged.
    * Dates and times become ISO 8601, a ``uuid.UUID`` its text; mappings (keys made ``str``),
      lists and tuples are walked; anything else becomes its shortened ``repr``.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"unrepresentable": repr(value)}
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return {"unrepresentable": str(value)}
        try:
            return normalize_value("Decimal", value)
        except ValueError:
            return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return shorten(value)


#: Customers a dry run's ``plan`` lists at most; the rest are counted in ``plan_omitted``.
MAX_PLAN_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class LookupSummary:
    """How the run found its customers: ``strategy`` ``"listing"``, ``"per_customer"`` or
    ``"none"``, the requests that cost, and (listing) how many customers were indexed."""

    strategy: str = "none"
    requests: int = 0
    customers_indexed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy, "requests": self.requests}
        if self.customers_indexed is not None:
            out["customers_indexed"] = self.customers_indexed
        return out


class RunReport:
    """Counts and failures of a run (never every success, so memory stays flat).

    :param keep_plan: keep customers' planned changes (dry runs), not just the counts: at most
        :data:`MAX_PLAN_ENTRIES` customers, the others counted in ``plan_omitted``.
    """

    def __init__(self, *, mode: str, dry_run: bool, keep_plan: bool = False) -> None:
        self.mode = mode
        self.dry_run = dry_run
        self.keep_plan = keep_plan
        self.counts = {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0}
        self.actions: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        #: Customers that succeeded with nothing to send (sync mode: every value already equal).
        self.customers_unchanged = 0
        #: Records whose customer answered 404 and was looked up once more (a merged customer's
        #: old uuid), then written once more.
        self.re_resolved = 0
        self.failures: list[dict[str, Any]] = []
        self.plan: list[dict[str, Any]] = []
        self.plan_omitted = 0
        self.aborted: str | None = None
        #: The hook's request statistics (``requests``, ``retries``, ``by_status``, ...).
        self.requests: dict[str, Any] = {}
        self.customer_lookup = LookupSummary()
        self.duration_seconds: float | None = None
        #: Records counted as not attempted (failures of stage ``aborted``), when the run stopped.
        self.not_attempted: int | None = None
        #: False when the run stopped before the input was read to the end.
        self.input_complete = True
        #: How many records were never read, when known (a list has a length; a query has not).
        self.records_not_read: int | None = None
        #: Where this try resumed from (``from_try``, ``watermark``, ``done_earlier``: records an
        #: earlier try answered, not sent again), or why it ``started_over``; None on a first try.
        self.resumed: dict[str, Any] | None = None
        #: A mirror's plan, counted before its first write: customers holding managed keys, those
        #: to clear, a sample of them, and ``refused``: why a guard refused it (else None).
        self.mirror: dict[str, Any] | None = None
        #: The account-wide request budget the run took its send slots from (``state``
        #: ``"shared"``, or ``"in-process"`` with the ``fallback`` reason once Redis failed);
        #: None without one.
        self.shared_budget: dict[str, Any] | None = None

    def add(self, outcome: Outcome) -> None:
        self.counts["total"] += 1
        self.counts[outcome.status] += 1
        self.re_resolved += outcome.re_resolved
        for change in outcome.changes:
            self.actions[change.action] += 1
        if outcome.status == "succeeded" and all(c.action == "unchanged" for c in outcome.changes):
            self.customers_unchanged += 1
        if outcome.status == "failed":
            self.failures.append(
                {
                    "customer": outcome.label,
                    "customer_uuid": outcome.customer_uuid,
                    "stage": outcome.stage,
                    "status": outcome.http_status,
                    "error": scrub(outcome.error) if outcome.error else outcome.error,
                    "record": scrub_value(json_safe(_replayable(outcome.record))),
                }
            )
        if self.keep_plan and outcome.status != "failed":
            if len(self.plan) >= MAX_PLAN_ENTRIES:
                self.plan_omitted += 1
                return
            self.plan.append(
                {
                    "customer": outcome.label,
                    "customer_uuid": outcome.customer_uuid,
                    "changes": [c.as_dict() for c in outcome.changes],
                }
            )

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def summary(self) -> str:
        c, a = self.counts, self.actions
        prefix = "Dry run: " if self.dry_run else ""
        verb = "would succeed" if self.dry_run else "succeeded"
        text = (
            f"{prefix}{c['total']} customers: {c['succeeded']} {verb}, {c['failed']} failed, "
            f"{c['skipped']} skipped; attributes added {a['added']}, changed {a['changed']}, "
            f"unchanged {a['unchanged']}, cleared {a['cleared']}"
        )
        if self.re_resolved:
            text += f"; {self.re_resolved} customers answered 404 and were looked up once more"
        if not self.input_complete:
            unread = "" if self.records_not_read is None else f" ({self.records_not_read} records not read)"
            text += f"; the input was not read to the end{unread}"
        if self.resumed and "done_earlier" in self.resumed:
            text += (
                f"; resumed after try {self.resumed['from_try']}: {self.resumed['done_earlier']} "
                "records answered then were not sent again"
            )
        if self.shared_budget and self.shared_budget.get("fallback"):
            text += "; the shared request budget was unavailable: the run went on at a cautious rate"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.counts,
            **self.actions,
            "customers_unchanged": self.customers_unchanged,
            "re_resolved": self.re_resolved,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "failures": self.failures,
            "aborted": scrub(self.aborted) if self.aborted else self.aborted,
            "input_complete": self.input_complete,
        }
        if not self.input_complete:
            out["records_not_read"] = self.records_not_read
        if self.keep_plan:
            out["plan"] = self.plan
            out["plan_omitted"] = self.plan_omitted
        out["requests"] = self.requests
        out["customer_lookup"] = self.customer_lookup.as_dict()
        if self.duration_seconds is not None:
            out["duration_seconds"] = self.duration_seconds
        if self.not_attempted is not None:
            out["not_attempted"] = self.not_attempted
        if self.resumed is not None:
            out["resumed"] = self.resumed
        if self.mirror is not None:
            out["mirror"] = self.mirror
        if self.shared_budget is not None:
            out["shared_budget"] = scrub_value(self.shared_budget)
        return out


def failed_records(report: Mapping[str, Any]) -> list[Any]:
    """The failed records of a report, in the shape the operator accepts: feed them back to replay."""
    return [failure["record"] for failure in report.get("failures") or []]
