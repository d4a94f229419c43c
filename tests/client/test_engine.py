"""The request engine against the project's ChartMogul-compatible server: which signal moves which
control, the retry quota, the circuit breaker and cancellation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_chartmogul.client.engine import RequestEngine, RequestStats, parse_retry_after
from airflow_provider_chartmogul.client.flow import RetryQuota
from airflow_provider_chartmogul.client.settings import ClientSettings
from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulCancelledError,
    ChartMogulUnavailableError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import API_KEY, connection_json


@pytest.fixture
def hook(chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> ChartMogulHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_conn, max_retries=5, retry_budget=30, max_connections=10),
    )
    return ChartMogulHook()


def test_a_503_with_few_requests_in_flight_is_a_failure_not_congestion(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    chartmogul_conn.queue_faults(["503", "503"])
    with hook:
        assert hook.ping() == "pong!"
        engine = hook.engine
        assert engine.concurrency.cuts == 0 and engine.concurrency.limit == 10
        assert engine.limiter.control.cuts == 0
        # Two retries were paid from the quota, and the success gave them back.
        assert engine.quota.tokens == engine.quota.capacity
        assert hook.stats.snapshot()["retries"] == 2


def test_500s_spend_the_retry_quota_and_leave_the_rate_alone(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, max_retries=2))
    chartmogul_conn.configure(faults={"500": 1.0})
    with ChartMogulHook() as hook:
        engine = hook.engine
        with pytest.raises(ChartMogulAPIError) as info:
            hook.ping()
        assert info.value.status == 500 and info.value.attempts == 3
        assert engine.quota.tokens == engine.quota.capacity - 2 * 5  # two retries, 5 tokens each
        assert engine.limiter.rate == engine.limiter.max_rate


def test_an_empty_retry_quota_fails_at_once_and_says_why(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    chartmogul_conn.configure(faults={"502": 1.0})
    with hook:
        hook.engine.quota = RetryQuota(capacity=4)
        with pytest.raises(ChartMogulAPIError, match="retry quota is spent") as info:
            hook.ping()
    assert info.value.attempts == 1
    assert len(chartmogul_conn.requests) == 1


def test_429s_cut_the_rate_not_the_concurrency(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    chartmogul_conn.queue_faults(["429", "429"])
    with hook:
        assert hook.ping() == "pong!"
        engine = hook.engine
        assert engine.limiter.control.cuts >= 1
        assert engine.limiter.rate < engine.limiter.max_rate
        assert engine.concurrency.cuts == 0
        assert engine.quota.tokens == engine.quota.capacity  # throttling spends no retry quota


def test_too_many_parallel_connections_cut_the_concurrency_not_the_rate(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    # Another integration holds most of the account's connections: only 4 are left for us.
    chartmogul_conn.configure(max_parallel=4, latency=0.3)
    with hook, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: hook.ping(), range(30)))
        engine = hook.engine
        assert answers == ["pong!"] * 30
        assert engine.concurrency.cuts >= 1
        assert engine.limiter.control.cuts == 0


def test_the_circuit_breaker_stops_sending_when_nothing_succeeds(chartmogul_server: ChartMogulServer) -> None:
    with ChartMogulServer(api_keys={}) as gone:
        dead_url = gone.url  # nothing listens there any more
    now = [1000.0]
    settings = ClientSettings(base_url=dead_url, api_key=API_KEY, timeout=2, max_retries=0)
    engine = RequestEngine(settings, RequestStats(), clock=lambda: now[0])
    try:
        for _ in range(10):
            now[0] += 1.5
            with pytest.raises(ChartMogulAPIError, match="ConnectionRefusedError"):
                engine.request("GET", "/v1/ping")
        assert engine.breaker.is_open
        sent = engine.stats.snapshot()["requests"]
        with pytest.raises(ChartMogulUnavailableError, match=r"nothing successfully for 15 s"):
            engine.request("GET", "/v1/ping")
        assert engine.stats.snapshot()["requests"] == sent  # not sent
    finally:
        engine.close()


def test_cancel_ends_a_wait_between_retries_at_once(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    # The first answer is a 429 asking for a 20 s wait (within the 30 s retry budget): only the
    # cancel can end it soon.
    chartmogul_conn.configure(rate_limit_retry_after=20)
    chartmogul_conn.queue_faults(["429"])
    errors: list[BaseException] = []

    def ping() -> None:
        try:
            hook.ping()
        except BaseException as exc:
            errors.append(exc)

    with hook:
        thread = threading.Thread(target=ping)
        thread.start()
        for _ in range(500):  # until the 429 was answered: the thread then waits, or is about to
            if chartmogul_conn.requests:
                break
            time.sleep(0.01)
        hook.cancel("the task was marked failed")
        thread.join(10)
        assert not thread.is_alive()
        with pytest.raises(ChartMogulCancelledError, match="the task was marked failed"):
            hook.ping()
    assert len(errors) == 1 and isinstance(errors[0], ChartMogulCancelledError)
    assert len(chartmogul_conn.requests) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-2", 0.0),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    import datetime as dt

    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after(header, now) == seconds


# ---- the breaker opens on ChartMogul, not on customers (injected clock) --------------------------


def _engine_on(server: ChartMogulServer, now: list[float], **settings: Any) -> RequestEngine:
    """An engine on a clock the test moves; every reading also moves it by 30 ms, so the
    rate limiter's spacing passes without any real wait."""
    values: dict[str, Any] = {"timeout": 5, "max_retries": 0, **settings}

    def clock() -> float:
        now[0] += 0.03
        return now[0]

    return RequestEngine(
        ClientSettings(base_url=server.url, api_key=API_KEY, **values), RequestStats(), clock=clock
    )


def test_a_customer_that_always_answers_500_never_opens_the_breaker_while_ping_answers(
    chartmogul_server: ChartMogulServer,
) -> None:
    uuid = chartmogul_server.add_customer()["uuid"]
    chartmogul_server.fail_customer(uuid, 500)
    now = [1000.0]
    engine = _engine_on(chartmogul_server, now)
    try:
        for _ in range(40):  # 60 s of nothing but this customer's 500s
            now[0] += 1.5
            with pytest.raises(ChartMogulAPIError) as info:
                engine.request("GET", f"/v1/customers/{uuid}/attributes")
            assert info.value.status == 500
        assert not engine.breaker.is_open
        assert engine.breaker.probes >= 4
        pings = [r for r in chartmogul_server.requests if r.path == "/v1/ping"]
        assert len(pings) == engine.breaker.probes
        assert engine.request("GET", "/v1/ping") == {"data": "pong!"}
    finally:
        engine.close()


def test_500s_to_everything_open_the_breaker_once_the_probe_fails_too(
    chartmogul_server: ChartMogulServer,
) -> None:
    chartmogul_server.configure(faults={"500": 1.0})
    now = [1000.0]
    engine = _engine_on(chartmogul_server, now)
    try:
        for n in range(8):
            now[0] += 1.5
            with pytest.raises(ChartMogulAPIError):
                engine.request("GET", f"/v1/customers/cus_{n % 2}/attributes")
        assert not engine.breaker.is_open  # 12 s, but fewer than 10 failures
        for n in range(2):
            now[0] += 1.5
            with pytest.raises(ChartMogulAPIError):
                engine.request("GET", f"/v1/customers/cus_{n % 2}/attributes")
        assert engine.breaker.is_open and engine.breaker.probes == 1
        with pytest.raises(ChartMogulUnavailableError, match=r"last: ping: HTTP 500"):
            engine.request("GET", "/v1/customers/cus_9/attributes")
    finally:
        engine.close()


class _HeldBackoff(RequestEngine):
    """An engine whose back-off waits until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.backing_off = threading.Event()
        self.go_on = threading.Event()
        super().__init__(*args, **kwargs)

    def _wait_between_attempts(self, seconds: float) -> None:
        self.backing_off.set()
        assert self.go_on.wait(30)


def test_a_request_waiting_to_retry_holds_no_connection_slot(chartmogul_server: ChartMogulServer) -> None:
    uuid = chartmogul_server.add_customer()["uuid"]
    chartmogul_server.fail_customer(uuid, 500, times=1)
    settings = ClientSettings(
        base_url=chartmogul_server.url, api_key=API_KEY, max_connections=1, max_retries=2
    )
    engine = _HeldBackoff(settings, RequestStats())
    results: list[Any] = []
    try:
        thread = threading.Thread(
            target=lambda: results.append(engine.request("GET", f"/v1/customers/{uuid}/attributes"))
        )
        thread.start()
        assert engine.backing_off.wait(30)
        # The only connection slot is free while the other request waits to retry.
        assert engine.concurrency.in_flight == 0
        assert engine.in_backoff == 1
        assert engine.request("GET", "/v1/ping") == {"data": "pong!"}
        engine.go_on.set()
        thread.join(30)
        assert results and "custom" in results[0]
        assert engine.in_backoff == 0
    finally:
        engine.go_on.set()
        engine.close()
