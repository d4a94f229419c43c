"""mode="sync", dry_run and clear: only differences are written, checked on the server's request log."""

from __future__ import annotations

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import (
    AddCustomAttributesOperator,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer


def _writes(server: ChartMogulServer) -> list:
    return [r for r in server.requests if r.method in ("POST", "PUT", "DELETE")]


def run(**kwargs: object) -> dict:
    kwargs.setdefault("task_id", "sync")
    return AddCustomAttributesOperator(**kwargs).execute(context={})  # type: ignore[arg-type]


@pytest.fixture
def server(chartmogul_conn: ChartMogulServer) -> ChartMogulServer:
    return chartmogul_conn


@pytest.fixture
def customer(server: ChartMogulServer) -> str:
    uuid = server.add_customer(external_id="acct-1", email="a@example.com")["uuid"]
    server.define_attribute("seats", "Integer")
    server.define_attribute("since", "Timestamp")
    server.define_attribute("plan", "String")
    server.define_attribute("pro", "Boolean")
    AddCustomAttributesOperator(
        task_id="setup",
        customers=[
            {
                "customer_uuid": uuid,
                "custom": [
                    {"type": "Integer", "key": "seats", "value": 8},
                    {"type": "Timestamp", "key": "since", "value": "2016-01-31T00:00:00Z"},
                    {"type": "String", "key": "plan", "value": "pro"},
                    {"type": "Boolean", "key": "pro", "value": True},
                ],
            }
        ],
    ).execute(context={})
    server.clear_requests()
    return uuid


def desired(uuid: str, **changes: object) -> list[dict]:
    custom = {
        "seats": {"type": "Integer", "key": "seats", "value": "8"},  # equal to 8 for an Integer
        "since": {"type": "Timestamp", "key": "since", "value": "2016-01-31 00:00:00 UTC"},  # same instant
        "plan": {"type": "String", "key": "plan", "value": "pro"},
        "pro": {"type": "Boolean", "key": "pro", "value": "t"},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            custom[key] = value
        else:
            custom[key] = {**custom[key], "value": value}
    return [{"customer_uuid": uuid, "custom": list(custom.values())}]


def test_unchanged_input_sends_zero_writes(server: ChartMogulServer, customer: str) -> None:
    report = run(customers=desired(customer), mode="sync")
    assert _writes(server) == []
    assert (report["succeeded"], report["unchanged"], report["added"], report["changed"]) == (1, 4, 0, 0)
    assert [r.method for r in server.requests] == ["GET"]


def test_second_sync_of_the_same_input_sends_nothing(server: ChartMogulServer, customer: str) -> None:
    records = desired(customer, seats=9, churn={"type": "Decimal", "key": "churn", "value": 0.2})
    first = run(customers=records, mode="sync")
    assert (first["changed"], first["added"]) == (1, 1)
    server.clear_requests()
    second = run(customers=records, mode="sync")
    assert _writes(server) == []
    assert (second["changed"], second["added"], second["unchanged"]) == (0, 0, 5)


def test_one_changed_value_sends_exactly_one_write(server: ChartMogulServer, customer: str) -> None:
    report = run(customers=desired(customer, plan="enterprise"), mode="sync")
    (write,) = _writes(server)
    assert write.method == "PUT"
    assert write.body == {"custom": {"plan": "enterprise"}}
    assert report["changed"] == 1 and report["unchanged"] == 3
    assert server.custom_attributes(customer)["plan"] == "enterprise"


def test_new_key_is_posted_with_its_type(server: ChartMogulServer, customer: str) -> None:
    run(customers=desired(customer, region={"type": "String", "key": "region", "value": "EU"}), mode="sync")
    (write,) = _writes(server)
    assert write.method == "POST"
    assert write.body == {"custom": [{"type": "String", "key": "region", "value": "EU"}]}


def test_null_with_clear_remove_sends_one_delete(server: ChartMogulServer, customer: str) -> None:
    report = run(customers=desired(customer, plan=None), mode="sync", clear="remove")
    (write,) = _writes(server)
    assert write.method == "DELETE"
    assert write.body == {"custom": ["plan"]}
    assert report["cleared"] == 1
    assert "plan" not in server.custom_attributes(customer)


def test_null_is_ignored_by_default_and_never_written_as_a_string(
    server: ChartMogulServer, customer: str
) -> None:
    report = run(customers=desired(customer, plan=None), mode="sync")
    assert _writes(server) == []
    assert report["cleared"] == 0
    assert server.custom_attributes(customer)["plan"] == "pro"


def test_none_leaves_the_attribute_alone_in_add_mode(server: ChartMogulServer, customer: str) -> None:
    # As a SQL NULL does: nothing is sent for it, and the other attributes are written.
    report = run(customers=desired(customer, plan=None))
    assert report["failed"] == 0
    assert all("plan" not in [a["key"] for a in w.body["custom"]] for w in _writes(server))
    assert server.custom_attributes(customer)["plan"] == "pro"


def test_dry_run_reads_plans_and_writes_nothing(server: ChartMogulServer, customer: str, task_log) -> None:
    other = server.add_customer(external_id="acct-2")["uuid"]
    records = desired(
        customer, seats=12, plan=None, region={"type": "String", "key": "region", "value": "EU"}
    )
    records.append({"external_id": "acct-2", "custom": [{"type": "Integer", "key": "seats", "value": 3}]})
    report = run(customers=records, mode="sync", clear="remove", dry_run=True)
    assert _writes(server) == []
    assert report["dry_run"] is True
    assert (report["added"], report["changed"], report["unchanged"], report["cleared"]) == (2, 1, 2, 1)
    plans = {p["customer_uuid"]: {c["key"]: c for c in p["changes"]} for p in report["plan"]}
    assert plans[customer]["seats"] == {"key": "seats", "action": "changed", "old": 8, "new": 12}
    assert plans[customer]["plan"] == {"key": "plan", "action": "cleared", "old": "pro"}
    assert plans[customer]["region"] == {"key": "region", "action": "added", "new": "EU"}
    assert plans[customer]["pro"]["action"] == "unchanged"
    assert plans[other]["seats"] == {"key": "seats", "action": "added", "new": 3}
    assert "Dry run plan" in task_log()
    assert "8 -> 12" in task_log()
    assert server.custom_attributes(customer)["seats"] == 8


def test_dry_run_in_add_mode_classifies_too(server: ChartMogulServer, customer: str) -> None:
    report = run(customers=desired(customer, seats=9), dry_run=True)
    assert _writes(server) == []
    assert (report["changed"], report["unchanged"]) == (1, 3)


def test_type_conflict_is_reported_per_customer_and_nothing_is_sent(
    server: ChartMogulServer, customer: str
) -> None:
    other = server.add_customer()["uuid"]
    records = [
        {"customer_uuid": customer, "custom": [{"type": "String", "key": "seats", "value": "eight"}]},
        {"customer_uuid": other, "custom": [{"type": "String", "key": "region", "value": "EU"}]},
    ]
    with pytest.raises(CustomAttributesPushError) as info:
        run(customers=records, mode="sync")
    report = info.value.report
    (failure,) = report["failures"]
    assert failure["stage"] == "conflict"
    assert "'seats' is defined on the account as Integer but the data gives a String" in failure["error"]
    (write,) = _writes(server)
    assert write.path == f"/v1/customers/{other}/attributes/custom"


def test_conflict_seen_on_another_customer_counts_account_wide(
    server: ChartMogulServer, customer: str
) -> None:
    fresh = server.add_customer()["uuid"]
    records = [
        {"customer_uuid": customer, "custom": [{"type": "Integer", "key": "seats", "value": 8}]},
        {"customer_uuid": fresh, "custom": [{"type": "Boolean", "key": "seats", "value": True}]},
    ]
    with pytest.raises(CustomAttributesPushError) as info:
        run(customers=records, mode="sync", customer_lookup="listing")
    (failure,) = info.value.report["failures"]
    assert failure["customer_uuid"] == fresh and failure["stage"] == "conflict"
    assert _writes(server) == []


def test_state_is_read_in_bulk_from_the_listing_when_that_is_cheaper(
    server: ChartMogulServer, task_log
) -> None:
    customers = server.add_customers([{"external_id": f"e{i}"} for i in range(450)])
    records = [
        {"customer_uuid": c["uuid"], "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i, c in enumerate(customers)
    ]
    first = run(customers=records, mode="sync", listing_threshold=100, max_requests_per_second=1000)
    assert first["added"] == 450
    assert first["customer_lookup"] == {"strategy": "listing", "requests": 3, "customers_indexed": 450}
    assert "Indexed 450 ChartMogul customers from the customer listing" in task_log()
    server.clear_requests()
    second = run(customers=records, mode="sync", listing_threshold=100, max_requests_per_second=1000)
    assert second["unchanged"] == 450
    assert len(server.requests) == 3, "three listing pages and not one write"


def test_per_customer_reads_below_the_threshold(server: ChartMogulServer, customer: str) -> None:
    report = run(customers=desired(customer), mode="sync", listing_threshold=100)
    assert report["customer_lookup"] == {"strategy": "per_customer", "requests": 1}


def test_source_stamps_provenance(server: ChartMogulServer, customer: str) -> None:
    op = AddCustomAttributesOperator(
        task_id="sync",
        customers=desired(customer, plan="team"),
        mode="sync",
        source="airflow:{{ dag_id }}",
    )
    op.render_template_fields(context={"dag_id": "crm_sync"})
    op.execute(context={})
    (write,) = _writes(server)
    assert write.body == {"custom": {"plan": {"value": "team", "source": "airflow:crm_sync"}}}


def test_a_customer_uuid_the_listing_lacks_fails_resolution_and_nothing_is_sent(
    server: ChartMogulServer, customer: str
) -> None:
    records = [*desired(customer, seats=9), *desired("cus_not_in_this_account", seats=9)]
    with pytest.raises(CustomAttributesPushError) as caught:
        run(customers=records, mode="sync", customer_lookup="listing")

    report = caught.value.report
    (failure,) = report["failures"]
    assert (failure["customer_uuid"], failure["stage"], failure["status"]) == (None, "resolution", 404)
    assert failure["error"] == "no ChartMogul customer has customer_uuid 'cus_not_in_this_account'"
    assert report["succeeded"] == 1
    assert [(r.method, r.path) for r in _writes(server)] == [
        ("PUT", f"/v1/customers/{customer}/attributes/custom")
    ]


def test_a_large_dry_run_keeps_a_bounded_plan(server: ChartMogulServer) -> None:
    from airflow_provider_chartmogul.push import report as report_module

    customers = server.add_customers([{} for _ in range(30)])
    records = [
        {"customer_uuid": c["uuid"], "custom": [{"type": "Integer", "key": "seats", "value": 1}]}
        for c in customers
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "MAX_PLAN_ENTRIES", 10)
        report = run(customers=records, mode="sync", dry_run=True, customer_lookup="listing")

    assert (len(report["plan"]), report["plan_omitted"], report["added"]) == (10, 20, 30)
    assert _writes(server) == []
