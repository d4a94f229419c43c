"""The concurrent engine: adaptive slow-down and streaming. (How many requests a one-second window
holds is a real-time figure: the limiter's unit tests prove the bound on a fake clock, and the
benchmark measures it.)"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json


def records(uuids: list[str]) -> list[dict]:
    return [
        {"customer_uuid": u, "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i, u in enumerate(uuids)
    ]


@pytest.fixture
def uuids(chartmogul_conn: ChartMogulServer) -> list[str]:
    return [c["uuid"] for c in chartmogul_conn.add_customers([{} for _ in range(150)])]


def test_slows_down_when_the_account_is_busier_than_configured(
    chartmogul_conn: ChartMogulServer, uuids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other integrations use most of the account: the server allows 10/s, we were told 40/s.
    chartmogul_conn.configure(rate_limit=10)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_conn, max_retries=10, retry_budget=60, max_requests_per_second=40),
    )
    report = AddCustomAttributesOperator(task_id="push", customers=records(uuids[:60])).execute(context={})
    assert report["succeeded"] == 60
    rejected = report["requests"]["rate_limited"]
    # A client that did not slow down would have had about three 429s for every success.
    assert 0 < rejected < 60, rejected


def test_records_are_read_lazily_and_successes_not_kept(
    chartmogul_conn: ChartMogulServer, uuids: list[str]
) -> None:
    seen = {"lead": 0}

    def stream() -> Iterator[dict]:
        for i, record in enumerate(itertools.islice(itertools.cycle(records(uuids)), 600)):
            # How far reading runs ahead of what the server has received.
            seen["lead"] = max(seen["lead"], i - len(chartmogul_conn.requests))
            yield record

    report = AddCustomAttributesOperator(
        task_id="push", customers=stream(), max_connections=3, max_requests_per_second=2000
    ).execute(context={})
    assert report["total"] == report["succeeded"] == 600
    # At most 4 records per connection wait in the queue, plus those in flight.
    assert seen["lead"] <= 3 * 4 + 3
    assert report["failures"] == []
    assert "plan" not in report, "successes are counted, not kept"


def test_progress_is_logged_on_long_runs(
    chartmogul_conn: ChartMogulServer, uuids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.push.run import CustomAttributesPusher, PushOptions

    log = logging.getLogger("test.push.progress")
    caplog.set_level(logging.INFO, logger=log.name)
    with ChartMogulHook(max_requests_per_second=1000) as hook:
        report = CustomAttributesPusher(hook, PushOptions(progress_interval=0.0), log=log).run(
            records(uuids[:20])
        )
    assert report.counts["succeeded"] == 20
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress:")]
    assert progress, "no progress line"
    assert "20 customers done (20 succeeded, 0 failed, 0 skipped)" in progress[-1]


def test_a_stopped_run_counts_the_input_it_did_not_read_and_logs_it(
    chartmogul_conn: ChartMogulServer, uuids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.push.run import CustomAttributesPusher, PushOptions, RunAborted

    log = logging.getLogger("test.push.unread")
    caplog.set_level(logging.WARNING, logger=log.name)
    with ChartMogulHook(max_requests_per_second=1000) as hook:
        pusher = CustomAttributesPusher(hook, PushOptions(), log=log)
        pusher.stop("stopped before it started")
        with pytest.raises(RunAborted) as caught:
            pusher.run(records(uuids[:100]))

    report = caught.value.report
    assert (report.input_complete, report.records_not_read, report.counts["total"]) == (False, 100, 0)
    assert chartmogul_conn.requests == []
    assert "The input was not read to the end: 100 records from record #0 on were not read" in caplog.text


def test_a_run_that_reads_its_input_to_the_end_says_so(
    chartmogul_conn: ChartMogulServer, uuids: list[str]
) -> None:
    report = AddCustomAttributesOperator(task_id="push", customers=iter(records(uuids[:10]))).execute(
        context={}
    )

    assert report["input_complete"] is True
    assert "records_not_read" not in report


def test_a_misdirected_lookup_answer_is_never_written_and_is_a_resolution_failure(
    chartmogul_conn: ChartMogulServer,
) -> None:
    asked = chartmogul_conn.add_customer(external_id="ext-asked")["uuid"]
    other = chartmogul_conn.add_customer(external_id="ext-other")["uuid"]
    fine = chartmogul_conn.add_customer(external_id="ext-fine")["uuid"]
    chartmogul_conn.misdirect_lookup("ext-asked", other)  # the lookup answers another customer
    seats = [{"type": "Integer", "key": "seats", "value": 5}]

    report, error = None, None
    try:
        AddCustomAttributesOperator(
            task_id="push",
            customers=[
                {"external_id": "ext-asked", "custom": seats},
                {"external_id": "ext-fine", "custom": seats},
            ],
            customer_lookup="per_customer",
        ).execute(context={})
    except CustomAttributesPushError as exc:
        report, error = exc.report, exc

    assert error is not None and report is not None
    (failure,) = report["failures"]
    assert (failure["customer"], failure["stage"]) == ("external_id=ext-asked", "resolution")
    assert "misdirected" in failure["error"] and other in failure["error"]
    assert report["succeeded"] == 1
    assert chartmogul_conn.custom_attributes(fine) == {"seats": 5}
    assert chartmogul_conn.custom_attributes(other) == {} and chartmogul_conn.custom_attributes(asked) == {}
