"""Tests of the run report (``airflow_provider_chartmogul.push.report``): what :class:`RunReport`
counts and keeps, the summary line, the report's shape (README, "The report"), replaying its
failures (README, "Replaying failures") and :func:`json_safe`, which makes every kept record strict
JSON."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import ChartMogulValidationError
from airflow_provider_chartmogul.push import report as report_module
from airflow_provider_chartmogul.push.records import CustomerRecord, describe_record, parse_record
from airflow_provider_chartmogul.push.report import (
    Change,
    LookupSummary,
    Outcome,
    RunReport,
    failed_records,
    json_safe,
)
from airflow_provider_chartmogul.redaction import register_secret, secret_forms
from tests.conftest import API_KEY

D = decimal.Decimal


def _record(index: int = 0, **fields: Any) -> CustomerRecord:
    raw = {"customer_uuid": f"cus_{index}", "custom": [{"type": "Integer", "key": "seats", "value": 5}]}
    raw.update(fields)
    return parse_record(raw, index=index, allow_clear=True)


def _succeeded(record: CustomerRecord, *changes: Change) -> Outcome:
    return Outcome(
        "succeeded", record.label, record, customer_uuid=record.customer_uuid, changes=list(changes)
    )


def _skipped(record: CustomerRecord) -> Outcome:
    return Outcome("skipped", record.label, record, customer_uuid=record.customer_uuid)


def _strict_json(value: Any) -> Any:
    """``value`` through strict JSON (no NaN, no infinities, nothing ``default=`` would have to fix)."""
    return json.loads(json.dumps(value, allow_nan=False))


# ---------------------------------------------------------------------------------------------
# Change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        (Change("seats", "added", new=5), {"key": "seats", "action": "added", "new": 5}),
        (Change("seats", "changed", 4, 5), {"key": "seats", "action": "changed", "old": 4, "new": 5}),
        (Change("seats", "unchanged", 5, 5), {"key": "seats", "action": "unchanged", "old": 5}),
        (Change("seats", "cleared", old=5), {"key": "seats", "action": "cleared", "old": 5}),
    ],
)
def test_a_change_shows_only_the_values_its_action_involves(change: Change, shown: dict[str, Any]) -> None:
    assert change.as_dict() == shown


def test_a_change_from_none_still_shows_its_old_value() -> None:
    assert Change("plan", "changed", None, "pro").as_dict() == {
        "key": "plan",
        "action": "changed",
        "old": None,
        "new": "pro",
    }


# ---------------------------------------------------------------------------------------------
# Counts and summary
# ---------------------------------------------------------------------------------------------


def test_a_report_without_outcomes_counts_nothing() -> None:
    report = RunReport(mode="add", dry_run=False)

    assert report.as_dict() == {
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "added": 0,
        "changed": 0,
        "unchanged": 0,
        "cleared": 0,
        "customers_unchanged": 0,
        "re_resolved": 0,
        "mode": "add",
        "dry_run": False,
        "failures": [],
        "aborted": None,
        "input_complete": True,
        "requests": {},
        "customer_lookup": {"strategy": "none", "requests": 0},
    }
    assert report.failed == 0


def test_customers_are_counted_by_status_and_attributes_by_action() -> None:
    report = RunReport(mode="sync", dry_run=False)
    report.add(_succeeded(_record(0), Change("a", "added", new=1), Change("b", "changed", 1, 2)))
    report.add(_succeeded(_record(1), Change("a", "added", new=1), Change("c", "cleared", old=3)))
    report.add(_succeeded(_record(2), Change("b", "unchanged", 2, 2)))
    report.add(_skipped(_record(3)))
    report.add(Outcome.failure("api", "customer_uuid=cus_4", _record(4), "ChartMogul answered 500"))

    shown = report.as_dict()
    assert {k: shown[k] for k in ("total", "succeeded", "failed", "skipped")} == {
        "total": 5,
        "succeeded": 3,
        "failed": 1,
        "skipped": 1,
    }
    assert {k: shown[k] for k in ("added", "changed", "unchanged", "cleared")} == {
        "added": 2,
        "changed": 1,
        "unchanged": 1,
        "cleared": 1,
    }
    assert report.failed == 1
    assert shown["mode"] == "sync"


def test_the_changes_of_a_failed_customer_are_still_counted() -> None:
    # A customer whose first write went through and whose second failed: the plan is counted.
    report = RunReport(mode="add", dry_run=False)
    outcome = Outcome.failure("api", "customer_uuid=cus_0", _record(0), "answered 502")
    outcome.changes = [Change("a", "added", new=1)]

    report.add(outcome)

    assert report.as_dict()["added"] == 1
    assert report.as_dict()["failed"] == 1


def test_the_summary_states_counts_and_actions() -> None:
    report = RunReport(mode="add", dry_run=False)
    report.add(_succeeded(_record(0), Change("a", "added", new=1), Change("b", "changed", 1, 2)))
    report.add(_skipped(_record(1)))
    report.add(Outcome.failure("validation", "record #2", {"custom": []}, "needs an identifier"))

    assert report.summary() == (
        "3 customers: 1 succeeded, 1 failed, 1 skipped; attributes added 1, changed 1, unchanged 0, cleared 0"
    )


def test_a_dry_run_summary_says_what_would_succeed() -> None:
    report = RunReport(mode="sync", dry_run=True)
    report.add(_succeeded(_record(0), Change("c", "cleared", old=1)))
    report.add(_succeeded(_record(1), Change("c", "cleared", old=2)))

    assert report.summary() == (
        "Dry run: 2 customers: 2 would succeed, 0 failed, 0 skipped; "
        "attributes added 0, changed 0, unchanged 0, cleared 2"
    )


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def test_a_failure_names_the_customer_stage_status_error_and_a_replayable_record() -> None:
    record = parse_record(
        {
            "external_id": "acct-9",
            "data_source_uuid": "ds_1",
            "custom": [
                {"type": "Decimal", "key": "cac", "value": D("8.50"), "source": "crm"},
                {"type": "Timestamp", "key": "since", "value": dt.datetime(2024, 1, 2, 3, 4, 5)},
            ],
        },
        index=7,
    )
    report = RunReport(mode="add", dry_run=False)

    report.add(
        Outcome.failure(
            "resolution",
            record.label,
            record,
            "no ChartMogul customer has external_id 'acct-9'",
            http_status=404,
        )
    )

    assert report.as_dict()["failures"] == [
        {
            "customer": "external_id=acct-9 (data_source_uuid=ds_1)",
            "customer_uuid": None,
            "stage": "resolution",
            "status": 404,
            "error": "no ChartMogul customer has external_id 'acct-9'",
            # The checked values, in JSON: the Decimal a number, the datetime ISO 8601 (UTC).
            "record": {
                "external_id": "acct-9",
                "data_source_uuid": "ds_1",
                "custom": [
                    {"type": "Decimal", "key": "cac", "value": 8.5, "source": "crm"},
                    {"type": "Timestamp", "key": "since", "value": "2024-01-02T03:04:05+00:00"},
                ],
            },
        }
    ]


def test_an_api_failure_keeps_the_customer_uuid_and_http_status() -> None:
    report = RunReport(mode="add", dry_run=False)
    record = _record(0)

    report.add(
        Outcome.failure(
            "api", record.label, record, "ChartMogul answered 422", http_status=422, customer_uuid="cus_0"
        )
    )

    (failure,) = report.failures
    assert (failure["customer"], failure["customer_uuid"], failure["stage"], failure["status"]) == (
        "customer_uuid=cus_0",
        "cus_0",
        "api",
        422,
    )


def test_a_record_that_could_not_be_parsed_is_kept_as_given_in_json() -> None:
    raw = {"external_id": 42, "custom": [{"type": "Decimal", "key": "cac", "value": D("NaN")}], 3: "x"}
    report = RunReport(mode="add", dry_run=False)

    report.add(Outcome.failure("validation", describe_record(raw, 0), raw, "unknown record field 3"))

    (failure,) = _strict_json(report.as_dict())["failures"]
    assert failure["record"] == {
        "external_id": 42,
        "custom": [{"type": "Decimal", "key": "cac", "value": {"unrepresentable": "NaN"}}],
        "3": "x",
    }


def test_failures_are_kept_in_the_order_they_happened_and_successes_are_not() -> None:
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome.failure("validation", "record #0", {"custom": []}, "first"))
    report.add(_succeeded(_record(1), Change("seats", "added", new=5)))
    report.add(_skipped(_record(2)))
    report.add(Outcome.failure("conflict", "customer_uuid=cus_3", _record(3), "second"))

    assert [f["error"] for f in report.as_dict()["failures"]] == ["first", "second"]
    assert "plan" not in report.as_dict()


def test_the_key_is_scrubbed_from_failure_errors() -> None:
    register_secret(API_KEY)
    token = secret_forms(API_KEY)[1]
    report = RunReport(mode="add", dry_run=False)

    report.add(
        Outcome.failure(
            "api",
            "customer_uuid=cus_0",
            _record(0),
            f"401: No valid API key provided: {API_KEY} (Authorization: Basic {token})",
            http_status=401,
        )
    )

    (failure,) = report.as_dict()["failures"]
    assert failure["error"] == "401: No valid API key provided: *** (Authorization: ***)"
    shown = json.dumps(report.as_dict())
    for secret in secret_forms(API_KEY):
        assert secret not in shown


def test_a_failure_without_an_error_text_keeps_none() -> None:
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome("failed", "record #0", {"custom": []}, stage="input"))

    (failure,) = report.failures
    assert failure["error"] is None
    assert failure["stage"] == "input"


# ---------------------------------------------------------------------------------------------
# Aborted runs, plans and extras
# ---------------------------------------------------------------------------------------------


def test_an_aborted_run_shows_the_reason_scrubbed_of_the_key() -> None:
    register_secret(API_KEY)
    report = RunReport(mode="add", dry_run=False)
    record = _record(0)
    report.add(Outcome.failure("aborted", record.label, record, "not attempted: the run stopped (401)"))

    report.aborted = f"ChartMogul refused the key {API_KEY}"

    shown = report.as_dict()
    assert shown["aborted"] == "ChartMogul refused the key ***"
    assert shown["failed"] == 1
    assert shown["failures"][0]["stage"] == "aborted"
    assert shown["failures"][0]["record"] == record.to_record()


def test_a_dry_run_plan_lists_each_customer_that_did_not_fail_with_its_changes() -> None:
    report = RunReport(mode="sync", dry_run=True, keep_plan=True)
    report.add(_succeeded(_record(0), Change("seats", "changed", 4, 5), Change("plan", "cleared", old="pro")))
    report.add(Outcome.failure("resolution", "external_id=x", _record(1), "no customer", http_status=404))
    report.add(_skipped(_record(2)))

    assert report.as_dict()["plan"] == [
        {
            "customer": "customer_uuid=cus_0",
            "customer_uuid": "cus_0",
            "changes": [
                {"key": "seats", "action": "changed", "old": 4, "new": 5},
                {"key": "plan", "action": "cleared", "old": "pro"},
            ],
        },
        {"customer": "customer_uuid=cus_2", "customer_uuid": "cus_2", "changes": []},
    ]


def test_the_run_fields_are_in_the_report() -> None:
    report = RunReport(mode="add", dry_run=False)
    report.requests = {"requests": 3, "retries": 1}
    report.duration_seconds = 0.25
    report.customer_lookup = LookupSummary("listing", 2, customers_indexed=301)

    shown = report.as_dict()
    assert shown["requests"] == {"requests": 3, "retries": 1}
    assert shown["duration_seconds"] == 0.25
    assert shown["customer_lookup"] == {"strategy": "listing", "requests": 2, "customers_indexed": 301}
    assert shown["input_complete"] is True
    assert "records_not_read" not in shown and "not_attempted" not in shown


def test_an_input_not_read_to_the_end_is_said_in_the_report_and_its_summary() -> None:
    report = RunReport(mode="add", dry_run=False)
    report.input_complete = False
    report.records_not_read = 199_981

    assert report.as_dict()["input_complete"] is False
    assert report.as_dict()["records_not_read"] == 199_981
    assert report.summary().endswith("the input was not read to the end (199981 records not read)")


def test_a_dry_run_plan_is_bounded_and_counts_what_it_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "MAX_PLAN_ENTRIES", 2)
    report = RunReport(mode="sync", dry_run=True, keep_plan=True)
    for i in range(5):
        report.add(Outcome("succeeded", f"customer_uuid=cus_{i}", None, customer_uuid=f"cus_{i}"))

    shown = report.as_dict()
    assert [entry["customer_uuid"] for entry in shown["plan"]] == ["cus_0", "cus_1"]
    assert shown["plan_omitted"] == 3
    assert shown["succeeded"] == 5


# ---------------------------------------------------------------------------------------------
# Replaying failures
# ---------------------------------------------------------------------------------------------


def test_failed_records_are_the_records_of_the_failures_in_order() -> None:
    report = {
        "total": 3,
        "failures": [
            {"customer": "a", "stage": "api", "record": {"customer_uuid": "cus_a", "custom": []}},
            {"customer": "b", "stage": "validation", "record": {"email": "b@example.com", "custom": []}},
        ],
    }

    assert failed_records(report) == [
        {"customer_uuid": "cus_a", "custom": []},
        {"email": "b@example.com", "custom": []},
    ]


@pytest.mark.parametrize("report", [{}, {"failures": None}, {"failures": []}, {"total": 5, "failed": 0}])
def test_a_report_without_failures_replays_nothing(report: dict[str, Any]) -> None:
    assert failed_records(report) == []


def test_replayed_records_parse_back_to_the_records_that_failed() -> None:
    originals = [
        parse_record(
            {
                "external_id": "acct-1",
                "custom": [
                    {"type": "Decimal", "key": "cac", "value": D("12.25")},
                    {"type": "Timestamp", "key": "since", "value": dt.date(2024, 2, 29)},
                    {"type": "Boolean", "key": "vip", "value": "t"},
                ],
            },
            index=0,
        ),
        parse_record(
            {"email": "x@example.com", "custom": [{"type": "String", "key": "plan", "value": None}]},
            index=1,
            allow_clear=True,
        ),
    ]
    report = RunReport(mode="sync", dry_run=False)
    for record in originals:
        report.add(Outcome.failure("api", record.label, record, "answered 503", http_status=503))

    # As a downstream task gets it: through XCom's JSON.
    replayed = failed_records(_strict_json(report.as_dict()))

    again = [parse_record(raw, index=i, allow_clear=True) for i, raw in enumerate(replayed)]
    assert again == originals


def test_an_unrepresentable_value_is_rejected_again_on_replay() -> None:
    raw = {"customer_uuid": "cus_1", "custom": [{"type": "Decimal", "key": "cac", "value": float("nan")}]}
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome.failure("validation", describe_record(raw, 0), raw, "must be finite"))

    (replayed,) = failed_records(_strict_json(report.as_dict()))

    with pytest.raises(ChartMogulValidationError, match="attribute 'cac'"):
        parse_record(replayed, index=0)


def test_a_decimal_one_is_the_same_boolean_before_and_after_a_replay() -> None:
    # A Decimal reaches the report as the number a Decimal attribute sends; for a Boolean that
    # must mean what the Decimal meant, so the replay neither fails nor changes the value.
    raw = {"customer_uuid": "cus_1", "custom": [{"type": "Boolean", "key": "vip", "value": D("1")}]}
    assert parse_record(raw, index=0).custom[0].value is True
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome.failure("api", describe_record(raw, 0), raw, "HTTP 500"))

    (replayed,) = failed_records(_strict_json(report.as_dict()))

    assert parse_record(replayed, index=0).custom[0].value is True
    two = {"customer_uuid": "cus_1", "custom": [{"type": "Boolean", "key": "vip", "value": D("2")}]}
    report.add(Outcome.failure("validation", describe_record(two, 0), two, "not a valid Boolean"))
    with pytest.raises(ChartMogulValidationError, match="not a valid Boolean"):
        parse_record(failed_records(_strict_json(report.as_dict()))[1], index=0)


def test_the_failed_records_the_readme_names_can_be_imported() -> None:
    import importlib

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"`(airflow_provider_chartmogul(?:\.\w+)+)\.failed_records\(", readme)
    assert named, "README names no failed_records"
    for module in named:
        assert importlib.import_module(module).failed_records is failed_records


# ---------------------------------------------------------------------------------------------
# json_safe
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "text", "", 0, -7, 2**70, 2.5, -0.0, 1e308])
def test_json_values_are_kept_as_they_are(value: Any) -> None:
    assert json_safe(value) == value
    assert type(json_safe(value)) is type(value)


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_stays_a_bool(value: bool) -> None:
    assert json_safe(value) is value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (D("NaN"), "NaN"),
        (D("sNaN"), "sNaN"),
        (D("Infinity"), "Infinity"),
        (D("-Infinity"), "-Infinity"),
    ],
)
def test_nan_and_infinities_become_unrepresentable(value: Any, shown: str) -> None:
    assert json_safe(value) == {"unrepresentable": shown}


@pytest.mark.parametrize(
    ("value", "number"),
    [(D("8"), 8), (D("8.50"), 8.5), (D("-0.125"), -0.125), (D("1E+3"), 1000)],
)
def test_a_finite_decimal_becomes_the_number_a_decimal_attribute_sends(value: D, number: int | float) -> None:
    safe = json_safe(value)

    assert safe == number
    assert type(safe) is type(number)
    # A Decimal attribute given the original sends the same.
    record = parse_record(
        {"customer_uuid": "cus_1", "custom": [{"type": "Decimal", "key": "d", "value": value}]}, index=0
    )
    assert record.to_record()["custom"][0]["value"] == safe


@pytest.mark.parametrize("text", ["1E-400", "1E+400"])
def test_a_decimal_a_float_cannot_hold_becomes_its_text_judged_on_replay_as_the_original(text: str) -> None:
    assert json_safe(D(text)) == text

    def rule(value: Any) -> str:
        with pytest.raises(ChartMogulValidationError) as caught:
            parse_record(
                {"customer_uuid": "cus_1", "custom": [{"type": "Decimal", "key": "d", "value": value}]},
                index=0,
            )
        return caught.value.rule

    assert rule(json_safe(D(text))) == rule(D(text))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2024-01-02T03:04:05+00:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 600000), "2024-01-02T03:04:05.600000"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.time(23, 59), "23:59:00"),
        (uuid.UUID("de305d54-75b4-431b-adb2-eb6b9e546012"), "de305d54-75b4-431b-adb2-eb6b9e546012"),
    ],
)
def test_dates_times_and_uuids_become_text(value: Any, text: str) -> None:
    assert json_safe(value) == text


def test_nested_mappings_lists_and_tuples_are_walked_and_keys_made_text() -> None:
    value = {
        "custom": (
            {"value": D("1.5"), "at": dt.date(2024, 1, 1)},
            [float("inf"), uuid.UUID(int=1)],
        ),
        7: {None: D("NaN")},
    }

    assert json_safe(value) == {
        "custom": [
            {"value": 1.5, "at": "2024-01-01"},
            [{"unrepresentable": "inf"}, "00000000-0000-0000-0000-000000000001"],
        ],
        "7": {"None": {"unrepresentable": "NaN"}},
    }


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, frozenset(), object(), dt.timedelta(days=1), 1 + 2j])
def test_anything_else_becomes_its_repr(value: Any) -> None:
    assert json_safe(value) == repr(value)


def test_a_long_repr_is_shortened() -> None:
    value = b"x" * 500

    safe = json_safe(value)

    assert safe.startswith("b'xxxx")
    assert safe.endswith("...(503 chars)")
    assert len(safe) < 100


def test_the_key_is_scrubbed_from_a_repr() -> None:
    register_secret(API_KEY)

    class Credentials:
        def __repr__(self) -> str:
            return f"Credentials(user={API_KEY!r})"

    assert json_safe({"auth": Credentials()}) == {"auth": "Credentials(user='***')"}


def test_the_result_is_strict_json_whatever_the_input() -> None:
    value = {
        "a": [float("nan"), D("-Infinity"), D("1E-400"), D("0.1")],
        "b": (dt.datetime(2024, 1, 1), b"\xff", object()),
        ("tuple", "key"): {1.5: {2: None}},
    }

    safe = json_safe(value)

    assert _strict_json(safe) == safe


def test_the_key_in_a_failed_records_own_values_is_scrubbed_too() -> None:
    register_secret(API_KEY)
    raw = {"customer_uuid": "cus_1", "custom": [{"type": "String", "key": "note", "value": f"k={API_KEY}"}]}
    report = RunReport(mode="add", dry_run=False)
    report.add(Outcome.failure("api", describe_record(raw, 0), raw, "HTTP 500"))

    shown = json.dumps(report.as_dict())

    assert API_KEY not in shown
    assert failed_records(report.as_dict())[0]["custom"][0]["value"] == "k=***"
