"""The request log and its counters."""

from __future__ import annotations

import json

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
