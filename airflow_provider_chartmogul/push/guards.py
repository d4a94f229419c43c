"""The guards a mirror's plan passes before its first write (docs/running-every-day.md):
a plan that clears managed keys on too many of the customers holding them, or a plan from an
empty source, is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Customers of a refused plan's clears the report lists, at most.
CLEAR_SAMPLE_SIZE = 20


@dataclass(frozen=True)
class ClearPlan:
    """What a mirror's plan would clear, counted before anything is sent.

    :param holders: customers of the account holding at least one managed key.
    :param clears: customers the plan clears managed keys on (no record matched them).
    :param records: records the source gave.
    :param managed_values: non-NULL managed values among those records.
    :param sample: the first clears, ``{"customer_uuid": ..., "keys": [...]}`` each.
    """

    holders: int
    clears: int
    records: int
    managed_values: int
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clear_fraction(self) -> float:
        return self.clears / self.holders if self.holders else 0.0

    @property
    def empty_source(self) -> bool:
        """0 records, or every managed value NULL."""
        return self.records == 0 or self.managed_values == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "customers_holding_managed_keys": self.holders,
            "customers_to_clear": self.clears,
            "clear_fraction": round(self.clear_fraction, 4),
            "records": self.records,
            "managed_values": self.managed_values,
            "empty_source": self.empty_source,
            "sample": self.sample,
        }


def refusal(plan: ClearPlan, *, max_clear_fraction: float, allow_empty_source: bool) -> str | None:
    """Why ``plan`` must not run, or None when it may."""
    if plan.clears and plan.empty_source and not allow_empty_source:
        what = (
            "no records" if plan.records == 0 else f"{plan.records} records whose every managed value is NULL"
        )
        return (
            f"the source gave {what}, and the plan would clear managed keys on {plan.clears} "
            "customers: an empty source never clears anything unless allow_empty_source=True "
            "(check the query or the upstream task first)"
        )
    if plan.clear_fraction > max_clear_fraction:
        return (
            f"the plan would clear managed keys on {plan.clears} of the {plan.holders} customers "
            f"holding them ({plan.clear_fraction:.0%}), more than max_clear_fraction="
            f"{max_clear_fraction:g} allows (raise it if the source really dropped that many)"
        )
    return None
