"""The request log and its counters."""

from __future__ import annotations

import json

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer, RequestRecord
from tests.testing.server._support import SEED_BODY, SEED_UUID, custom_path, url


def test_request_log_records(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    api.get(
        url(server, "/customers"), params={"external_id": "a b", "per_page": "5"}, headers={"X-Trace": "t1"}
    )
    api.post(custom_path(server), json=SEED_BODY)
    listing, post = server.requests
    assert isinstance(listing, RequestRecord)
    assert listing.method == "GET" and listing.path == "/v1/customers"
    assert listing.query == {"external_id": ["a b"], "per_page": ["5"]}
    assert listing.headers["x-trace"] == "t1" and all(name == name.lower() for name in listing.headers)
    assert listing.body is None and listing.raw_body == b"" and listing.api_key == "sk_test"
    assert post.body == SEED_BODY and json.loads(post.raw_body) == SEED_BODY
    assert post.status == 200 and post.fault is None and post.started <= post.ended
    assert post.headers["content-type"] == "application/json"
    assert server.stats()["by_status"] == {200: 2}
    server.clear_requests()
    assert server.requests == []
    assert server.stats()["total"] == 2


def test_record_requests_off(server: ChartMogulServer, api: requests.Session) -> None:
    server.configure(record_requests=False)
    api.get(url(server, "/ping"))
    assert server.requests == [] and server.stats()["total"] == 1


def test_log_keeps_the_newest_records_and_counts_on(server: ChartMogulServer, api: requests.Session) -> None:
    server.configure(request_log_limit=3)
    for per_page in range(1, 7):
        api.get(url(server, "/customers"), params={"per_page": per_page})
    assert [record.query["per_page"] for record in server.requests] == [["4"], ["5"], ["6"]]
    assert [index for index, _ in server.indexed_requests()] == [3, 4, 5]
    assert [index for index, _ in server.indexed_requests(since=5)] == [5]
    admin = requests.get(f"{server.url}/_testing/requests", params={"since": 4}).json()
    assert [(entry["index"], entry["query"]["per_page"]) for entry in admin] == [(4, ["5"]), (5, ["6"])]
    stats = server.stats()
    assert stats["total"] == 6 and stats["log_records_dropped"] == 3
    server.configure(request_log_limit=1)  # a lower limit applies at the next request
    api.get(url(server, "/ping"))
    assert [index for index, _ in server.indexed_requests()] == [6]
    server.clear_requests()
    api.get(url(server, "/ping"))
    assert [index for index, _ in server.indexed_requests()] == [0]


def test_log_releases_the_oldest_bodies_beyond_its_budget(
    server: ChartMogulServer, api: requests.Session
) -> None:
    server.add_customer(uuid=SEED_UUID)
    one = len(api.post(custom_path(server), json=SEED_BODY).content) + len(json.dumps(SEED_BODY))
    server.clear_requests()
    server.configure(request_log_body_bytes=2 * one + 10)
    for _ in range(4):
        api.post(custom_path(server), data=json.dumps(SEED_BODY))
    records = server.requests
    assert len(records) == 4  # every record stays; only the two oldest lost their bodies
    assert [record.bodies_dropped for record in records] == [True, True, False, False]
    assert records[0].body is None and records[0].raw_body == b"" and records[0].response_body == b""
    assert records[0].method == "POST" and records[0].status == 200 and records[0].headers
    assert records[3].body == SEED_BODY and json.loads(records[3].response_body)["custom"]
    assert server.stats()["log_bodies_dropped"] == 2
    entry = requests.get(f"{server.url}/_testing/requests", params={"since": 0}).json()[0]
    assert entry["bodies_dropped"] is True and entry["raw_body"] == ""


def test_log_limits_are_checked(server: ChartMogulServer) -> None:
    for bad in ({"request_log_limit": 0}, {"request_log_body_bytes": -1}, {"request_log_limit": "9"}):
        with pytest.raises((TypeError, ValueError)):
            server.configure(**bad)
    server.configure(request_log_limit=None, request_log_body_bytes=None)
    assert server.config["request_log_limit"] is None


def test_records_share_repeated_header_strings(server: ChartMogulServer, api: requests.Session) -> None:
    api.get(url(server, "/ping"))
    api.get(url(server, "/ping"))
    first, second = server.requests
    assert first.headers == second.headers
    # One string object for each repeated name and value: a long log holds them once.
    assert all(first.headers[name] is second.headers[name] for name in first.headers)
    assert all(a is b for a, b in zip(first.headers, second.headers, strict=True))


@pytest.mark.parametrize("clear", ["reset", "clear_requests"])
def test_a_request_that_arrived_before_a_clear_is_not_logged_after_it(
    server: ChartMogulServer, api: requests.Session, clear: str
) -> None:
    # A client of an earlier test whose answer ends after the next test cleared the log must not
    # show up in that test's log (or, after a reset, its counters).
    import threading
    import time

    server.configure(latency=0.5)
    in_flight = threading.Thread(target=api.get, args=(url(server, "/ping"),))
    in_flight.start()
    deadline = time.monotonic() + 30  # a gate on the request's arrival, not a bound on time
    while not server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats()["in_flight"] == 1
    getattr(server, clear)()
    in_flight.join()
    server.configure(latency=0)
    api.get(url(server, "/ping"))

    assert [r.path for r in server.requests] == ["/v1/ping"]
    assert server.stats()["total"] == (1 if clear == "reset" else 2)
