"""The HTTP plumbing: framing, Basic auth, throughput."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import SEED_UUID, custom_path, url


def test_ping_and_http_framing(server: ChartMogulServer, api: requests.Session) -> None:
    response = api.get(url(server, "/ping"), headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.json() == {"data": "pong!"}
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith("/")


def test_unauthorized(server: ChartMogulServer) -> None:
    expected = {"code": 401, "message": "No valid API key provided", "param": None}
    for auth in (None, ("wrong", ""), ("", "")):
        response = requests.get(url(server, "/ping"), auth=auth)
        assert response.status_code == 401
        assert response.json() == expected
    garbled = requests.get(url(server, "/ping"), headers={"Authorization": "Basic !!!"})
    assert garbled.status_code == 401
    assert [record.api_key for record in server.requests] == [None, "wrong", "", None]


def test_throughput(server: ChartMogulServer) -> None:
    """Prints requests/s; the only assertion is a very loose floor."""
    server.add_customer(uuid=SEED_UUID)
    per_thread = 200
    threads = 4

    def worker(index: int) -> None:
        with requests.Session() as session:
            session.auth = ("sk_test", "")
            for i in range(per_thread):
                if i % 2:
                    response = session.get(url(server, "/ping"))
                else:
                    response = session.post(
                        custom_path(server),
                        json={"custom": [{"type": "Integer", "key": f"k{index}", "value": i}]},
                    )
                assert response.status_code == 200

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    keep_alive_rate = threads * per_thread / (time.perf_counter() - began)

    began = time.perf_counter()
    for _ in range(150):  # a new connection per request, like the official client
        requests.get(url(server, "/ping"), auth=("sk_test", ""))
    new_connection_rate = 150 / (time.perf_counter() - began)
    print(
        f"\nthroughput: {keep_alive_rate:.0f} requests/s (4 keep-alive clients, client in-process), "
        f"{new_connection_rate:.0f} requests/s (sequential, new connection each)"
    )
    assert keep_alive_rate > 100 and new_connection_rate > 50
    assert server.stats()["by_status"] == {200: threads * per_thread + 150}
