"""Where real recorded answers show the API's shape, the server answers in it: one test per
difference (the recordings: ../shared/chartmogul-api-notes.md, "Recorded answers";
docs/test-server.md, "Answers as recorded")."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
from typing import Any

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import SEED_UUID, custom_path, url

FIRST_PAGE_KEYS = ["entries", "current_page", "total_pages", "has_more", "per_page", "page", "cursor"]
# The customer object of a 2023 recording (chartmogul-ruby, customers?per_page=1), in its order.
RECORDED_2023_FIELDS = [
    "id", "uuid", "external_id", "name", "email", "status", "customer-since", "attributes",
    "data_source_uuid", "data_source_uuids", "external_ids", "company", "country", "state", "city",
    "zip", "lead_created_at", "free_trial_started_at", "address", "mrr", "arr", "billing-system-url",
    "chartmogul-url", "billing-system-type", "currency", "currency-sign", "owner",
]  # fmt: skip


def _raw(server: ChartMogulServer, method: str, path: str, headers: dict[str, str] | None = None,
         body: Any = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request over http.client: status, headers (lower-case names) and the body as sent."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    sent = {"Authorization": "Basic " + base64.b64encode(b"sk_test:").decode(), **(headers or {})}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        sent["Content-Type"] = "application/json"
    try:
        connection.request(method, "/v1" + path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_first_page_envelope(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customers({"external_id": f"x{i}"} for i in range(5))
    body = api.get(url(server, "/customers"), params={"per_page": 2}).json()
    assert list(body) == FIRST_PAGE_KEYS
    assert body["current_page"] == 1 and body["page"] == 1 and body["per_page"] == 2
    assert body["total_pages"] == 3 and body["has_more"] is True and isinstance(body["cursor"], str)
    filtered = api.get(url(server, "/customers"), params={"external_id": "x4", "per_page": 2}).json()
    assert filtered["total_pages"] == 1 and filtered["has_more"] is False and filtered["cursor"] is None


def test_a_page_fetched_with_a_cursor_answers_three_fields(
    server: ChartMogulServer, api: requests.Session
) -> None:
    server.add_customers({} for _ in range(5))
    cursor = api.get(url(server, "/customers"), params={"per_page": 2}).json()["cursor"]
    body = api.get(url(server, "/customers"), params={"per_page": 2, "cursor": cursor}).json()
    assert list(body) == ["entries", "cursor", "has_more"]
    assert len(body["entries"]) == 2 and body["has_more"] is True


def test_cursor_is_null_on_the_last_page_and_padded_base64(
    server: ChartMogulServer, api: requests.Session
) -> None:
    empty = api.get(url(server, "/customers")).json()
    assert empty["entries"] == [] and empty["cursor"] is None and empty["total_pages"] == 0
    server.add_customers({} for _ in range(3))
    first = api.get(url(server, "/customers"), params={"per_page": 2}).json()
    assert len(first["cursor"]) % 4 == 0 and base64.urlsafe_b64decode(first["cursor"])
    last = api.get(url(server, "/customers"), params={"per_page": 2, "cursor": first["cursor"]}).json()
    assert len(last["entries"]) == 1 and last["has_more"] is False and last["cursor"] is None


def test_default_page_size_is_200(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customers({} for _ in range(201))
    body = api.get(url(server, "/customers")).json()
    assert body["per_page"] == 200 and len(body["entries"]) == 200 and body["has_more"] is True


def test_search_first_page_and_its_404(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(email="bob@example.com")
    found = api.get(url(server, "/customers/search"), params={"email": "bob@example.com"}).json()
    assert list(found) == FIRST_PAGE_KEYS and found["total_pages"] is None  # as recorded (2023)
    missing = api.get(url(server, "/customers/search"), params={"email": "no@email.com"})
    assert missing.status_code == 404
    assert missing.json() == {
        "code": 404,
        "message": 'Can\'t find any customers with email: "no@email.com"',
        "param": "email",
    }


def test_customer_object_newest_shape(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID, owner="sam@example.com", website_url="https://acme.example")
    shown = api.get(url(server, f"/customers/{SEED_UUID}")).json()
    assert list(shown) == [*RECORDED_2023_FIELDS, "website_url"]
    assert shown["owner"] == "sam@example.com" and shown["website_url"] == "https://acme.example"
    assert "clearbit" not in shown["attributes"]  # absent from the 2025 recordings
    assert list(shown["address"]) == ["country", "state", "city", "address_zip"]
    assert api.get(url(server, "/customers")).json()["entries"] == [shown]
    assert server.get_customer(SEED_UUID) == shown
    plain = server.add_customer()
    assert plain["owner"] is None and plain["website_url"] is None


@pytest.mark.parametrize(
    ("shape", "owner", "website_url", "clearbit"),
    [("2024", True, True, True), ("2023", True, False, True), ("2020", False, False, True)],
)
def test_customer_object_older_shapes_as_a_switch(
    server: ChartMogulServer,
    api: requests.Session,
    shape: str,
    owner: bool,
    website_url: bool,
    clearbit: bool,
) -> None:
    server.configure(customer_shape=shape)
    server.add_customer(uuid=SEED_UUID)
    shown = api.get(url(server, f"/customers/{SEED_UUID}")).json()
    assert ("owner" in shown, "website_url" in shown, "clearbit" in shown["attributes"]) == (
        owner,
        website_url,
        clearbit,
    )
    if shape == "2023":
        assert list(shown) == RECORDED_2023_FIELDS
    attributes = api.get(url(server, f"/customers/{SEED_UUID}/attributes")).json()
    assert ("clearbit" in attributes) == clearbit
    with pytest.raises(ValueError, match="customer_shape"):
        server.configure(customer_shape="1999")


def test_json_content_type_has_no_charset(server: ChartMogulServer) -> None:
    server.add_customer(uuid=SEED_UUID)
    for path, expected_status in (
        ("/ping", 200),
        (f"/customers/{SEED_UUID}", 200),
        ("/customers/cus_x", 404),
    ):
        status, headers, _ = _raw(server, "GET", path)
        assert (status, headers["content-type"]) == (expected_status, "application/json")
    status, headers, _ = _raw(server, "GET", "/ping", headers={"Authorization": "Basic bm9wZTo="})
    assert (status, headers["content-type"]) == (401, "application/json")
    server.queue_faults(["500"])  # the faults stand for proxies and keep their own types
    assert _raw(server, "GET", "/ping")[1]["content-type"].startswith("text/plain")


def test_gzip_when_the_client_accepts_it(server: ChartMogulServer) -> None:
    server.add_customers({} for _ in range(3))
    status, headers, body = _raw(server, "GET", "/customers", headers={"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body)
    assert len(json.loads(gzip.decompress(body))["entries"]) == 3
    assert json.loads(server.requests[-1].response_body)["entries"]  # the log keeps it decoded
    for refused in (None, "identity", "gzip;q=0", "br"):
        _, plain, raw_body = _raw(
            server, "GET", "/customers", headers={"Accept-Encoding": refused} if refused else {}
        )
        assert "content-encoding" not in plain and json.loads(raw_body)["entries"], refused
    # As recorded, error answers are not compressed (the search 404), nor are the faults.
    _, missing, _ = _raw(server, "GET", "/customers/search?email=no%40x", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in missing
    server.queue_faults(["bad_json"])
    assert "content-encoding" not in _raw(server, "GET", "/ping", headers={"Accept-Encoding": "gzip"})[1]


def test_401_has_no_www_authenticate(server: ChartMogulServer) -> None:
    response = requests.get(url(server, "/ping"), auth=("wrong", ""))
    assert response.status_code == 401 and "WWW-Authenticate" not in response.headers


def test_delete_answers_204_with_an_empty_body(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID, custom={"a": 1, "b": 2})
    status, headers, body = _raw(
        server, "DELETE", f"/customers/{SEED_UUID}/attributes/custom", body={"custom": ["a"]}
    )
    assert (status, body) == (204, b"") and "content-type" not in headers
    assert server.custom_attributes(SEED_UUID) == {"b": 2}
    server.configure(delete_status=200)  # the older answer, as a switch
    assert api.delete(custom_path(server), json={"custom": ["b"]}).json() == {"custom": {}}
