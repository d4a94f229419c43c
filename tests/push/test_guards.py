"""The guards on a mirror's plan: too large a share of clears, and an empty source."""

from __future__ import annotations

import pytest

from airflow_provider_chartmogul.push.guards import ClearPlan, refusal


def plan(*, holders: int = 100, clears: int = 0, records: int = 90, managed_values: int = 90) -> ClearPlan:
    return ClearPlan(holders=holders, clears=clears, records=records, managed_values=managed_values)


@pytest.mark.parametrize("clears", [0, 1, 10])
def test_a_plan_clearing_at_most_the_fraction_allowed_runs(clears: int) -> None:
    assert refusal(plan(clears=clears), max_clear_fraction=0.1, allow_empty_source=False) is None


def test_a_plan_clearing_half_the_holders_is_refused_with_its_counts() -> None:
    why = refusal(plan(clears=50), max_clear_fraction=0.1, allow_empty_source=False)
    assert why is not None
    assert "50 of the 100 customers" in why and "50%" in why and "max_clear_fraction=0.1" in why
    assert refusal(plan(clears=50), max_clear_fraction=0.5, allow_empty_source=False) is None


@pytest.mark.parametrize(
    ("records", "managed_values", "said"),
    [(0, 0, "no records"), (40, 0, "40 records whose every managed value is NULL")],
)
def test_an_empty_source_never_clears_unless_allowed(records: int, managed_values: int, said: str) -> None:
    empty = plan(clears=5, records=records, managed_values=managed_values)
    why = refusal(empty, max_clear_fraction=1.0, allow_empty_source=False)
    assert why is not None and said in why and "allow_empty_source=True" in why
    assert refusal(empty, max_clear_fraction=1.0, allow_empty_source=True) is None


def test_an_empty_source_that_clears_nothing_is_not_refused() -> None:
    assert (
        refusal(plan(records=0, managed_values=0), max_clear_fraction=0.1, allow_empty_source=False) is None
    )


def test_the_summary_says_what_the_plan_would_do() -> None:
    shown = ClearPlan(holders=4, clears=1, records=0, managed_values=0, sample=[{"customer_uuid": "cus_1"}])
    assert shown.as_dict() == {
        "customers_holding_managed_keys": 4,
        "customers_to_clear": 1,
        "clear_fraction": 0.25,
        "records": 0,
        "managed_values": 0,
        "empty_source": True,
        "sample": [{"customer_uuid": "cus_1"}],
    }
