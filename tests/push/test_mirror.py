"""Phase one of a mirror, stopped or failing: nothing is sent, and the run stops as any run does."""

from __future__ import annotations

import pytest

from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.push.options import PushOptions
from airflow_provider_chartmogul.push.run import CustomAttributesPusher, RunAborted
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

RECORDS = [{"external_id": "acct-1", "custom": [{"type": "Integer", "key": "seats", "value": 4}]}]


def _writes(server: ChartMogulServer) -> list:
    return [r for r in server.requests if r.method != "GET"]


def test_a_run_stopped_before_phase_one_ends_sends_nothing(chartmogul_conn: ChartMogulServer) -> None:
    chartmogul_conn.add_customer(external_id="acct-1", custom={"seats": 1})
    with ChartMogulHook() as hook:
        pusher = CustomAttributesPusher(hook, PushOptions(mode="mirror"))
        pusher.stop("the task was marked failed")
        with pytest.raises(RunAborted, match="the task was marked failed") as raised:
            pusher.run(RECORDS)
    assert raised.value.report.aborted == "the task was marked failed"
    assert _writes(chartmogul_conn) == []


def test_a_refused_key_during_phase_one_stops_the_run(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    chartmogul_conn.add_customer(external_id="acct-1", custom={"seats": 1})
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, api_key="sk_wrong")
    )
    with ChartMogulHook() as hook:
        pusher = CustomAttributesPusher(hook, PushOptions(mode="mirror"))
        with pytest.raises(RunAborted) as raised:
            pusher.run(RECORDS)
    assert "401" in str(raised.value)
    assert raised.value.report.as_dict()["total"] == 0
    assert _writes(chartmogul_conn) == []
