"""A record matched by external_id or email whose customer answers 404 on the write (ChartMogul's
answer for a merged customer's old uuid) is looked up once more and written once more."""

from __future__ import annotations

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer

SEATS = [{"type": "Integer", "key": "seats", "value": 5}]


def run(**kwargs: object) -> dict:
    return AddCustomAttributesOperator(task_id="push", **kwargs).execute(context={})  # type: ignore[arg-type]


def _calls(server: ChartMogulServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests]


@pytest.mark.parametrize("mode", ["add", "sync"])
@pytest.mark.parametrize("lookup", ["per_customer", "listing"])
def test_a_404_on_the_write_looks_the_customer_up_again_and_writes_once_more(
    chartmogul_conn: ChartMogulServer, mode: str, lookup: str
) -> None:
    uuid = chartmogul_conn.add_customer(external_id="acct-1")["uuid"]
    chartmogul_conn.add_customer(external_id="acct-2", custom={"seats": 1})
    chartmogul_conn.fail_customer(uuid, status=404, times=1)

    report = run(customers=[{"external_id": "acct-1", "custom": SEATS}], mode=mode, customer_lookup=lookup)

    assert (report["succeeded"], report["failed"], report["re_resolved"]) == (1, 0, 1)
    assert chartmogul_conn.custom_attributes(uuid) == {"seats": 5}
    lookups = [c for c in _calls(chartmogul_conn) if c == ("GET", "/v1/customers")]
    assert len(lookups) == 2  # the first match (lookup or listing), then one lookup more
    # The first request naming the customer (its write, or in sync mode its state read) answered
    # 404; after the second lookup its write went through.
    named = [r for r in chartmogul_conn.requests if uuid in r.path]
    assert named[0].status == 404
    assert named[-1].method == "POST" and named[-1].status < 300


def test_a_customer_still_gone_after_the_second_lookup_fails_once_without_a_loop(
    chartmogul_conn: ChartMogulServer,
) -> None:
    uuid = chartmogul_conn.add_customer(email="gone@example.com")["uuid"]
    chartmogul_conn.fail_customer(uuid, status=404)

    with pytest.raises(CustomAttributesPushError) as raised:
        run(customers=[{"email": "gone@example.com", "custom": SEATS}], customer_lookup="per_customer")

    report = raised.value.report
    assert (report["failed"], report["failures"][0]["stage"], report["failures"][0]["status"]) == (
        1,
        "api",
        404,
    )
    assert len([c for c in _calls(chartmogul_conn) if c[0] == "POST"]) == 2  # retried once, not more


def test_a_record_named_by_customer_uuid_is_not_looked_up_again(chartmogul_conn: ChartMogulServer) -> None:
    uuid = chartmogul_conn.add_customer(external_id="acct-1")["uuid"]
    chartmogul_conn.fail_customer(uuid, status=404, times=1)

    with pytest.raises(CustomAttributesPushError) as raised:
        run(customers=[{"customer_uuid": uuid, "custom": SEATS}])

    report = raised.value.report
    assert (report["failed"], report["re_resolved"]) == (1, 0)
    assert [c[0] for c in _calls(chartmogul_conn)] == ["POST"]
