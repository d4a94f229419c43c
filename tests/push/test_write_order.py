"""Per-customer order: one customer's writes are applied in input order, whatever identifier each
record uses, with per-customer lookups and with the customer listing read while writing."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.push.records import parse_record
from airflow_provider_chartmogul.push.write_order import CustomerOrder, Entry
from airflow_provider_chartmogul.testing.server import ChartMogulServer


def mix(value: int, **identifier: str) -> dict[str, Any]:
    return {**identifier, "custom": [{"type": "String", "key": "mix", "value": str(value)}]}


def _mix_writes(server: ChartMogulServer, uuid: str) -> list[str]:
    """The values of ``mix`` written to ``uuid``, in the order the server received them."""
    values = []
    for request in sorted(server.requests, key=lambda r: r.started):
        if request.method in ("POST", "PUT") and request.path == f"/v1/customers/{uuid}/attributes/custom":
            custom = request.body["custom"]
            value = custom[0]["value"] if isinstance(custom, list) else custom["mix"]
            values.append(value["value"] if isinstance(value, dict) else value)
    return values


LOOKUPS = [
    pytest.param({"customer_lookup": "per_customer"}, id="per-customer"),
    pytest.param({"customer_lookup": "listing"}, id="listing"),
    pytest.param({"customer_lookup": "auto", "listing_threshold": 0}, id="auto-listing"),
    pytest.param({"customer_lookup": "auto"}, id="auto-per-customer"),
]


@pytest.mark.parametrize("mode", ["add", "sync"])
@pytest.mark.parametrize("lookup", LOOKUPS)
def test_the_last_record_for_a_customer_wins(
    chartmogul_conn: ChartMogulServer, lookup: dict[str, Any], mode: str
) -> None:
    server = chartmogul_conn
    server.configure(latency=0.02)
    cus_3 = server.add_customer(external_id="ext_3", email="three@example.com")["uuid"]
    server.add_customers([{"external_id": f"other_{i}"} for i in range(450)])  # a few listing pages
    records = [mix(1, customer_uuid=cus_3), mix(2, external_id="ext_3"), mix(3, customer_uuid=cus_3)]

    report = AddCustomAttributesOperator(task_id="order", customers=records, mode=mode, **lookup).execute(
        context={}
    )

    assert report["failed"] == 0
    assert server.custom_attributes(cus_3)["mix"] == "3"
    assert _mix_writes(server, cus_3) == ["1", "2", "3"]


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_many_customers_each_written_in_input_order(
    chartmogul_conn: ChartMogulServer, lookup: dict[str, Any]
) -> None:
    """Interleaved records for 30 customers, five each, by uuid, external id and email in turn."""
    server = chartmogul_conn
    server.configure(latency=0.01)
    customers = server.add_customers(
        [{"external_id": f"ext_{i}", "email": f"c{i}@example.com"} for i in range(30)]
    )
    records = []
    for round_ in range(5):
        for i, customer in enumerate(customers):
            identifier = [
                {"customer_uuid": customer["uuid"]},
                {"external_id": f"ext_{i}"},
                {"email": f"C{i}@example.com"},
            ][(round_ + i) % 3]
            records.append(mix(round_, **identifier))

    report = AddCustomAttributesOperator(
        task_id="order", customers=records, max_requests_per_second=1000, **lookup
    ).execute(context={})

    assert report["succeeded"] == len(records)
    for customer in customers:
        assert _mix_writes(server, customer["uuid"]) == ["0", "1", "2", "3", "4"]
        assert server.custom_attributes(customer["uuid"])["mix"] == "4"


# ---- the rule itself, without I/O ------------------------------------------------------------------


def _entry(index: int, **identifier: str) -> Entry:
    return Entry(parse_record(mix(index, **identifier), index=index))


def test_an_unknown_record_holds_back_every_later_record_until_it_is_known() -> None:
    order = CustomerOrder(indexed=lambda uuid: True)
    first, unknown, third = (
        _entry(0, customer_uuid="cus_3"),
        _entry(1, external_id="e"),
        _entry(2, customer_uuid="cus_3"),
    )
    other = _entry(3, customer_uuid="cus_4")
    order.place(first, "cus_3")
    order.hold(unknown)
    order.place(third, "cus_3")
    order.place(other, "cus_4")
    assert order.runnable() == [first], "records after an unknown one wait: it could be them"
    order.place(unknown, "cus_3")
    assert order.runnable() == [other], "cus_3's next record waits for the first to finish"
    order.done(first)
    assert order.runnable() == [unknown]
    order.done(unknown)
    assert order.runnable() == [third]


def test_with_the_listing_only_matching_customers_are_held_back() -> None:
    indexed = {"cus_a", "cus_b"}
    order = CustomerOrder(indexed=lambda uuid: uuid in indexed)
    unknown = _entry(0, email="shared@example.com")
    a, b, c = (
        _entry(1, customer_uuid="cus_a"),
        _entry(2, customer_uuid="cus_b"),
        _entry(3, customer_uuid="cus_c"),
    )
    order.hold(unknown, until_listed=True)
    order.claim(unknown, "cus_a")  # cus_a has that email; cus_b does not
    for entry, uuid in ((a, "cus_a"), (b, "cus_b"), (c, "cus_c")):
        order.place(entry, uuid)
    assert order.runnable() == [b], "cus_a may be the unknown record's customer; cus_c is not indexed yet"
    indexed.add("cus_c")
    order.touch("cus_c")
    assert order.runnable() == [c]
    order.drop(unknown)  # it matched several customers: never written
    assert order.runnable() == [a]
