"""Decide which requests bring one customer's attributes to the wanted state.

``add`` mode posts every attribute (the seed call). ``sync`` mode compares with the customer's
current attributes: new keys are posted, changed values are put, equal values are left alone and,
with ``clear="remove"``, ``None`` values delete the attribute. No string "null" is ever written.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_chartmogul.attributes import CustomAttribute, type_of_stored_value, values_equal
from airflow_provider_chartmogul.push.report import Change

# Which stored types a value of our type can sit on without a conflict. JSON cannot tell an
# Integer from an integral Decimal, nor a String holding an ISO date from a Timestamp, so those
# pairs are left to the API to judge; the rest are certain conflicts.
_COMPATIBLE: dict[str, frozenset[str]] = {
    "String": frozenset({"String", "Timestamp"}),
    "Integer": frozenset({"Integer", "Decimal"}),
    "Decimal": frozenset({"Integer", "Decimal"}),
    "Timestamp": frozenset({"Timestamp"}),
    "Boolean": frozenset({"Boolean"}),
}


class ObservedTypes:
    """Account-wide ``key -> type`` as seen in the state read so far (thread-safe).

    ChartMogul defines each key once per account, so a value seen on one customer tells the type
    of that key on every customer.
    """

    def __init__(self) -> None:
        self._types: dict[str, str] = {}
        self._lock = threading.Lock()

    def observe(self, custom: Mapping[str, Any]) -> None:
        for key, value in custom.items():
            if key in self._types:
                continue
            guessed = type_of_stored_value(value)
            if guessed is not None:
                with self._lock:
                    self._types.setdefault(key, guessed)

    def get(self, key: str) -> str | None:
        return self._types.get(key)

    def __len__(self) -> int:
        return len(self._types)


@dataclass
class Plan:
    """The requests for one customer, and what they change."""

    post: list[CustomAttribute] = field(default_factory=list)
    put: dict[str, Any] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return bool(self.post) + bool(self.put) + bool(self.delete)


def find_conflicts(attributes: Sequence[CustomAttribute], observed: ObservedTypes) -> list[str]:
    """Keys whose value's type cannot be the type the account already defines for them."""
    conflicts = []
    for attribute in attributes:
        if attribute.value is None:
            continue
        defined = observed.get(attribute.key)
        if defined is not None and defined not in _COMPATIBLE[attribute.type]:
            conflicts.append(
                f"attribute {attribute.key!r} is defined on the account as {defined} "
                f"but the data gives a {attribute.type}"
            )
    return conflicts


def plan_add(attributes: Sequence[CustomAttribute], current: Mapping[str, Any] | None) -> Plan:
    """``add`` mode: post every attribute; classify against ``current`` when it was read."""
    plan = Plan(post=[a for a in attributes if a.value is not None])
    for attribute in plan.post:
        if current is None or attribute.key not in current:
            plan.changes.append(Change(attribute.key, "added", new=attribute.value))
        elif values_equal(attribute.type, attribute.value, current[attribute.key]):
            plan.changes.append(Change(attribute.key, "unchanged", old=current[attribute.key]))
        else:
            plan.changes.append(
                Change(attribute.key, "changed", old=current[attribute.key], new=attribute.value)
            )
    return plan


def plan_sync(attributes: Sequence[CustomAttribute], current: Mapping[str, Any], *, clear: str) -> Plan:
    """``sync`` mode: only what differs from ``current``."""
    plan = Plan()
    for attribute in attributes:
        key = attribute.key
        if attribute.value is None:
            if clear == "remove" and key in current:
                plan.delete.append(key)
                plan.changes.append(Change(key, "cleared", old=current[key]))
            continue
        if key not in current:
            plan.post.append(attribute)
            plan.changes.append(Change(key, "added", new=attribute.value))
        elif values_equal(attribute.type, attribute.value, current[key]):
            plan.changes.append(Change(key, "unchanged", old=current[key]))
        else:
            value: Any = attribute.value
            if attribute.source is not None:
                value = {"value": attribute.value, "source": attribute.source}
            plan.put[key] = value
            plan.changes.append(Change(key, "changed", old=current[key], new=attribute.value))
    return plan


def check_answer(
    attributes: Sequence[CustomAttribute], plan: Plan, answer: Mapping[str, Any] | None
) -> list[str]:
    """What ChartMogul's answer to ``plan``'s writes (the customer's whole ``custom`` map) does not
    hold of what was sent, compared as the sync diff compares (``values_equal``); empty when the
    writes took, or when there is no answer to compare with."""
    if answer is None:
        return []
    sent = {attribute.key: attribute for attribute in attributes if attribute.value is not None}
    posted = [attribute.key for attribute in plan.post]
    problems = []
    for key in posted + [key for key in plan.put if key not in posted]:
        attribute = sent[key]
        if key not in answer:
            problems.append(f"attribute {key!r}: sent {attribute.value!r}, not in ChartMogul's answer")
        elif not values_equal(attribute.type, attribute.value, answer[key]):
            problems.append(f"attribute {key!r}: sent {attribute.value!r}, ChartMogul holds {answer[key]!r}")
    for key in plan.delete:
        if key in answer:
            problems.append(f"attribute {key!r}: cleared, ChartMogul still holds {answer[key]!r}")
    return problems
