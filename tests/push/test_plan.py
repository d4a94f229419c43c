"""Unit tests of request planning (``airflow_provider_chartmogul.push.plan``): what ``add`` and
``sync`` send for one customer, what a dry run reports, and which type conflicts are caught before
anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_chartmogul.attributes import CustomAttribute, normalize_custom
from airflow_provider_chartmogul.push.plan import (
    ObservedTypes,
    Plan,
    check_answer,
    find_conflicts,
    plan_add,
    plan_sync,
)


def _attrs(*items: tuple[Any, ...]) -> list[CustomAttribute]:
    """Checked attributes from ``(type, key, value[, source])`` tuples (``None`` values kept as clears)."""
    raw = []
    for item in items:
        attribute = {"type": item[0], "key": item[1], "value": item[2]}
        if len(item) > 3:
            attribute["source"] = item[3]
        raw.append(attribute)
    return normalize_custom(raw, allow_clear=True)


def _changes(plan: Plan) -> list[tuple[str, str, Any, Any]]:
    return [(c.key, c.action, c.old, c.new) for c in plan.changes]


def _observed(*states: dict[str, Any]) -> ObservedTypes:
    observed = ObservedTypes()
    for state in states:
        observed.observe(state)
    return observed


# ---------------------------------------------------------------------------------------------
# plan_add
# ---------------------------------------------------------------------------------------------


def test_add_posts_every_valued_attribute_and_leaves_none_values_out() -> None:
    attributes = _attrs(("String", "plan", "pro"), ("Integer", "seats", None), ("Boolean", "trial", False))

    plan = plan_add(attributes, None)

    assert [a.key for a in plan.post] == ["plan", "trial"]
    assert [a.value for a in plan.post] == ["pro", False]
    assert plan.put == {}
    assert plan.delete == []
    assert plan.writes == 1


def test_add_without_state_reports_every_sent_attribute_as_added() -> None:
    plan = plan_add(_attrs(("String", "plan", "pro"), ("Integer", "seats", 5)), None)

    assert _changes(plan) == [("plan", "added", None, "pro"), ("seats", "added", None, 5)]


def test_add_classifies_against_the_state_but_still_posts_unchanged_values() -> None:
    attributes = _attrs(("String", "plan", "pro"), ("Integer", "seats", 8), ("Decimal", "mrr", 9.5))
    current = {"plan": "basic", "seats": "8", "other": 1}

    plan = plan_add(attributes, current)

    assert [a.key for a in plan.post] == ["plan", "seats", "mrr"]
    assert _changes(plan) == [
        ("plan", "changed", "basic", "pro"),
        ("seats", "unchanged", "8", None),
        ("mrr", "added", None, 9.5),
    ]


@pytest.mark.parametrize("attributes", [[], _attrs(("String", "plan", None), ("Integer", "seats", None))])
def test_add_with_no_value_to_send_plans_no_write(attributes: list[CustomAttribute]) -> None:
    plan = plan_add(attributes, {"plan": "pro"})

    assert plan.writes == 0
    assert plan.post == []
    assert plan.changes == []


# ---------------------------------------------------------------------------------------------
# plan_sync
# ---------------------------------------------------------------------------------------------


def test_sync_posts_new_keys_puts_changed_values_and_leaves_equal_ones_alone() -> None:
    attributes = _attrs(
        ("String", "channel", "Facebook"),
        ("Integer", "seats", 12),
        ("Boolean", "pro", True),
    )
    current = {"seats": 10, "pro": True, "untouched": "x"}

    plan = plan_sync(attributes, current, clear="ignore")

    assert [a.as_payload() for a in plan.post] == [{"type": "String", "key": "channel", "value": "Facebook"}]
    assert plan.put == {"seats": 12}
    assert plan.delete == []
    assert plan.writes == 2
    assert _changes(plan) == [
        ("channel", "added", None, "Facebook"),
        ("seats", "changed", 10, 12),
        ("pro", "unchanged", True, None),
    ]


@pytest.mark.parametrize(
    ("type_", "ours", "stored"),
    [
        ("Integer", 8, "8"),
        ("Integer", "8", 8.0),
        ("Decimal", 0.1 + 0.2, 0.3),
        ("Decimal", 8, 8.0),
        ("Boolean", True, "true"),
        ("Boolean", "f", False),
        ("Boolean", 1, "TRUE"),
        ("Timestamp", "2016-01-31T00:00:00Z", "2016-01-31T00:00:00.000Z"),
        ("Timestamp", "2016-01-31 00:00:00 UTC", "2016-01-31T00:00:00.000Z"),
        ("Timestamp", "2016-01-31T01:00:00+01:00", "2016-01-31T00:00:00.000Z"),
        ("Timestamp", "2016-01-31", "2016-01-31 00:00:00"),
        ("String", "Pro plan", "Pro plan"),
    ],
)
def test_sync_of_an_equal_value_plans_no_write(type_: str, ours: Any, stored: Any) -> None:
    plan = plan_sync(_attrs((type_, "k", ours)), {"k": stored}, clear="remove")

    assert plan.writes == 0
    assert _changes(plan) == [("k", "unchanged", stored, None)]


@pytest.mark.parametrize(
    ("type_", "ours", "stored", "sent"),
    [
        ("String", "pro", "Pro", "pro"),
        ("String", "8", 8, "8"),  # a String compares as text: a stored number is not the same
        ("Integer", 9, "8", 9),
        ("Decimal", 8.5, 8.25, 8.5),
        ("Boolean", False, "t", False),
        ("Timestamp", "2016-02-01T00:00:00Z", "2016-01-31T00:00:00.000Z", "2016-02-01T00:00:00Z"),
        ("Timestamp", "2016-01-31T00:00:00+01:00", "2016-01-31T00:00:00.000Z", "2016-01-31T00:00:00+01:00"),
    ],
)
def test_sync_of_a_different_value_puts_the_new_value(type_: str, ours: Any, stored: Any, sent: Any) -> None:
    plan = plan_sync(_attrs((type_, "k", ours)), {"k": stored}, clear="ignore")

    assert plan.post == []
    assert plan.put == {"k": sent}
    assert _changes(plan) == [("k", "changed", stored, sent)]


def test_sync_put_carries_the_source_with_the_value() -> None:
    plan = plan_sync(_attrs(("String", "plan", "pro", "billing")), {"plan": "basic"}, clear="ignore")

    assert plan.put == {"plan": {"value": "pro", "source": "billing"}}
    # The change shows the value, not the request body.
    assert _changes(plan) == [("plan", "changed", "basic", "pro")]


def test_sync_post_of_a_new_key_keeps_its_type_and_source() -> None:
    plan = plan_sync(_attrs(("Decimal", "mrr", 9.5, "billing")), {}, clear="ignore")

    assert [a.as_payload() for a in plan.post] == [
        {"type": "Decimal", "key": "mrr", "value": 9.5, "source": "billing"}
    ]


def test_sync_clear_remove_deletes_only_keys_the_customer_has() -> None:
    attributes = _attrs(("String", "coupon", None), ("String", "never_set", None), ("Integer", "seats", 3))

    plan = plan_sync(attributes, {"coupon": "SPRING", "seats": 3}, clear="remove")

    assert plan.delete == ["coupon"]
    assert plan.post == []
    assert plan.put == {}
    assert plan.writes == 1
    assert _changes(plan) == [("coupon", "cleared", "SPRING", None), ("seats", "unchanged", 3, None)]


def test_sync_clear_ignore_leaves_attributes_with_none_values_alone() -> None:
    plan = plan_sync(_attrs(("String", "coupon", None)), {"coupon": "SPRING"}, clear="ignore")

    assert plan.writes == 0
    assert plan.delete == []
    assert plan.changes == []


def test_sync_with_every_kind_of_change_sends_one_request_of_each_kind() -> None:
    attributes = _attrs(
        ("String", "a", "new"),
        ("String", "b", "new too"),
        ("Integer", "c", 2),
        ("Integer", "d", 3),
        ("String", "e", None),
        ("String", "f", None),
    )
    current = {"c": 1, "d": 1, "e": "x", "f": "y"}

    plan = plan_sync(attributes, current, clear="remove")

    assert [a.key for a in plan.post] == ["a", "b"]
    assert plan.put == {"c": 2, "d": 3}
    assert plan.delete == ["e", "f"]
    assert plan.writes == 3


def test_no_plan_ever_sends_none_or_the_string_null() -> None:
    attributes = _attrs(
        ("String", "a", None), ("String", "b", "x"), ("Integer", "c", None), ("Integer", "d", 4)
    )
    current = {"a": "old", "c": 1, "d": 5}

    plans = [
        plan_add(attributes, None),
        plan_add(attributes, current),
        plan_sync(attributes, current, clear="remove"),
        plan_sync(attributes, current, clear="ignore"),
    ]

    for plan in plans:
        sent = [a.value for a in plan.post] + list(plan.put.values())
        assert sent, "every plan sends something here"
        assert all(value is not None and value != "null" for value in sent)


def test_a_second_sync_of_the_state_the_first_left_sends_nothing() -> None:
    attributes = _attrs(
        ("String", "channel", "Facebook"),
        ("Integer", "seats", 12),
        ("Timestamp", "since", "2022-09-08"),
        ("String", "coupon", None),
    )
    first = plan_sync(attributes, {"seats": 10, "coupon": "SPRING"}, clear="remove")
    assert first.writes == 3
    # What ChartMogul holds after the first run, in the shapes it answers with.
    after = {"channel": "Facebook", "seats": 12, "since": "2022-09-08T00:00:00.000Z"}

    second = plan_sync(attributes, after, clear="remove")

    assert second.writes == 0
    assert {c.action for c in second.changes} == {"unchanged"}


def test_dry_run_plan_renders_each_change_with_old_and_new_values() -> None:
    attributes = _attrs(
        ("String", "channel", "Facebook"),
        ("Integer", "seats", 12),
        ("Boolean", "pro", True),
        ("String", "coupon", None),
    )
    plan = plan_sync(attributes, {"seats": 10, "pro": "true", "coupon": "SPRING"}, clear="remove")

    assert [c.as_dict() for c in plan.changes] == [
        {"key": "channel", "action": "added", "new": "Facebook"},
        {"key": "seats", "action": "changed", "old": 10, "new": 12},
        {"key": "pro", "action": "unchanged", "old": "true"},
        {"key": "coupon", "action": "cleared", "old": "SPRING"},
    ]


# ---------------------------------------------------------------------------------------------
# ObservedTypes
# ---------------------------------------------------------------------------------------------


def test_observed_types_are_read_from_stored_values() -> None:
    observed = _observed(
        {
            "pro": True,
            "seats": 3,
            "mrr": 2.5,
            "since": "2016-01-31T00:00:00.000Z",
            "seeded": "2022-09-08 00:00:00",
            "plan": "Pro",
            "day": "2016-01-31",
        }
    )

    assert {key: observed.get(key) for key in ("pro", "seats", "mrr", "since", "seeded", "plan", "day")} == {
        "pro": "Boolean",
        "seats": "Integer",
        "mrr": "Decimal",
        "since": "Timestamp",
        "seeded": "Timestamp",
        "plan": "String",
        "day": "String",
    }
    assert len(observed) == 7


def test_unseen_key_has_no_observed_type() -> None:
    observed = _observed({"seats": 3})

    assert observed.get("plan") is None
    assert observed.get("Seats") is None  # keys keep their case in ChartMogul


def test_a_null_value_does_not_fix_a_type_but_a_later_customer_does() -> None:
    observed = _observed({"seats": None, "meta": {"nested": 1}})
    assert observed.get("seats") is None
    assert observed.get("meta") is None
    assert len(observed) == 0

    observed.observe({"seats": 4})

    assert observed.get("seats") == "Integer"


def test_the_first_type_seen_for_a_key_is_kept() -> None:
    observed = _observed({"seats": 3}, {"seats": "three"}, {"seats": 3.5})

    assert observed.get("seats") == "Integer"
    assert len(observed) == 1


# ---------------------------------------------------------------------------------------------
# find_conflicts
# ---------------------------------------------------------------------------------------------


def test_keys_the_account_does_not_define_yet_never_conflict() -> None:
    attributes = _attrs(("String", "a", "x"), ("Integer", "b", 1), ("Timestamp", "c", "2022-01-01"))

    assert find_conflicts(attributes, _observed({"other": True})) == []


@pytest.mark.parametrize(
    ("stored", "type_", "value"),
    [
        ("x", "String", "y"),
        (3, "Integer", 4),
        (2.5, "Decimal", 3.5),
        (True, "Boolean", False),
        ("2016-01-31T00:00:00.000Z", "Timestamp", "2022-01-01"),
        # JSON cannot tell these apart, so the API judges them.
        (3, "Decimal", 3.5),
        (2.5, "Integer", 3),
        ("2016-01-31T00:00:00.000Z", "String", "not a date"),
    ],
)
def test_values_that_can_sit_on_the_defined_type_do_not_conflict(stored: Any, type_: str, value: Any) -> None:
    assert find_conflicts(_attrs((type_, "k", value)), _observed({"k": stored})) == []


@pytest.mark.parametrize(
    ("stored", "defined", "type_", "value"),
    [
        ("Pro", "String", "Timestamp", "2022-01-01"),
        ("Pro", "String", "Integer", 3),
        ("Pro", "String", "Boolean", True),
        (3, "Integer", "Boolean", True),
        (3, "Integer", "String", "three"),
        (3, "Integer", "Timestamp", "2022-01-01"),
        (2.5, "Decimal", "Boolean", False),
        (True, "Boolean", "Integer", 1),
        (True, "Boolean", "String", "yes"),
        ("2016-01-31T00:00:00.000Z", "Timestamp", "Integer", 3),
    ],
)
def test_a_value_of_an_incompatible_type_is_a_conflict_naming_both_types(
    stored: Any, defined: str, type_: str, value: Any
) -> None:
    conflicts = find_conflicts(_attrs((type_, "k", value)), _observed({"k": stored}))

    assert conflicts == [f"attribute 'k' is defined on the account as {defined} but the data gives a {type_}"]


def test_a_clear_never_conflicts() -> None:
    assert find_conflicts(_attrs(("Boolean", "seats", None)), _observed({"seats": 3})) == []


def test_only_the_conflicting_keys_are_listed_in_input_order() -> None:
    observed = _observed({"seats": 3, "plan": "pro", "pro": True})
    attributes = _attrs(("Boolean", "seats", True), ("String", "plan", "basic"), ("String", "pro", "yes"))

    conflicts = find_conflicts(attributes, observed)

    assert conflicts == [
        "attribute 'seats' is defined on the account as Integer but the data gives a Boolean",
        "attribute 'pro' is defined on the account as Boolean but the data gives a String",
    ]


# ---- verified writes: the answer against what was sent ------------------------------------------


def test_an_answer_holding_what_was_sent_passes_in_its_own_spelling() -> None:
    sent = _attrs(
        ("Timestamp", "converted", "2016-01-31 00:00:00 UTC"),
        ("Integer", "seats", 8),
        ("Boolean", "pro", True),
        ("Decimal", "cac", 12.5),
    )
    answer = {"converted": "2016-01-31T00:00:00.000Z", "seats": "8", "pro": "true", "cac": 12.5, "other": 1}

    assert check_answer(sent, plan_add(sent, None), answer) == []


def test_every_value_the_answer_does_not_hold_is_named_with_both_values() -> None:
    sent = _attrs(("Integer", "seats", 8), ("String", "plan", "pro"), ("Boolean", "pro", True))

    problems = check_answer(sent, plan_add(sent, None), {"seats": 9, "pro": True})

    assert problems == [
        "attribute 'seats': sent 8, ChartMogul holds 9",
        "attribute 'plan': sent 'pro', not in ChartMogul's answer",
    ]


def test_a_sync_plan_is_checked_for_its_posts_puts_and_clears() -> None:
    sent = _attrs(("Integer", "seats", 8), ("String", "plan", "pro"), ("String", "gone", None))
    current = {"seats": 3, "gone": "x"}
    plan = plan_sync(sent, current, clear="remove")
    assert (plan.post, list(plan.put), plan.delete) == ([sent[1]], ["seats"], ["gone"])

    assert check_answer(sent, plan, {"seats": 8, "plan": "pro"}) == []
    assert check_answer(sent, plan, {"seats": 3, "plan": "pro", "gone": "x"}) == [
        "attribute 'seats': sent 8, ChartMogul holds 3",
        "attribute 'gone': cleared, ChartMogul still holds 'x'",
    ]


def test_without_an_answer_there_is_nothing_to_check() -> None:
    sent = _attrs(("Integer", "seats", 8))

    assert check_answer(sent, plan_add(sent, None), None) == []
