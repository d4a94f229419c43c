"""The rate limit window, the parallel limit, latency."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import RATE_LIMIT_BODY, url


def test_rate_limit_sliding_window(server: ChartMogulServer) -> None:
    server.configure(rate_limit=20)
    statuses: list[int] = []
    lock = threading.Lock()

    def burst(_: int) -> None:
        with requests.Session() as session:
            session.auth = ("sk_test", "")
            for _ in range(15):
                status = session.get(url(server, "/ping")).status_code
                with lock:
                    statuses.append(status)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(burst, range(4)))
    assert len(statuses) == 60
    assert statuses.count(429) > 0
    assert set(statuses) <= {200, 429}

    log = server.requests
    rejected = [record for record in log if record.status == 429]
    assert all(record.fault == "rate_limit" for record in rejected)
    assert all(json.loads(record.response_body) == RATE_LIMIT_BODY for record in rejected)
    # Invariant: in every window (t - 1 s, t] at most 20 requests got past the limiter.
    accepted = sorted(record.started for record in log if record.fault != "rate_limit")
    for index, moment in enumerate(accepted):
        assert sum(1 for other in accepted[: index + 1] if other > moment - 1.0) <= 20
    assert server.stats()["rate_limited"] == len(rejected)
    assert "Retry-After" not in requests.get(url(server, "/ping"), auth=("sk_test", "")).headers

    # The window slides: a second later requests are admitted again.
    time.sleep(1.05)
    assert requests.get(url(server, "/ping"), auth=("sk_test", "")).status_code == 200


def test_rate_limit_retry_after_header(server: ChartMogulServer, api: requests.Session) -> None:
    server.configure(rate_limit=1, rate_limit_retry_after=1)
    assert api.get(url(server, "/ping")).status_code == 200
    limited = api.get(url(server, "/ping"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == RATE_LIMIT_BODY
    # Unauthenticated requests count too ("all requests").
    assert requests.get(url(server, "/ping")).status_code == 429


def test_max_parallel(server: ChartMogulServer) -> None:
    server.configure(max_parallel=2, latency=0.8)
    barrier = threading.Barrier(6)

    def call(_: int) -> requests.Response:
        barrier.wait()
        return requests.get(url(server, "/ping"), auth=("sk_test", ""))

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(call, range(6)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1
    assert set(statuses) <= {200, 503}
    rejected = next(response for response in responses if response.status_code == 503)
    assert rejected.json()["code"] == 503 and "parallel" in rejected.json()["message"].lower()
    assert server.stats()["max_in_flight"] <= 2
    assert server.stats()["parallel_rejected"] == statuses.count(503)


def test_latency(server: ChartMogulServer, api: requests.Session) -> None:
    server.configure(latency=0.2)
    began = time.perf_counter()
    assert api.get(url(server, "/ping")).status_code == 200
    assert time.perf_counter() - began >= 0.2
    server.configure(latency=0)
    began = time.perf_counter()
    api.get(url(server, "/ping"))
    assert time.perf_counter() - began < 0.2
