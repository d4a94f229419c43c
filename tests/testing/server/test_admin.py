"""The /_testing/ admin API."""

from __future__ import annotations

import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import SEED_BODY, SEED_UUID, custom_path, url


def test_admin_endpoints(server: ChartMogulServer, api: requests.Session) -> None:
    admin = f"{server.url}/_testing"
    added = requests.post(
        f"{admin}/customers", json=[{"uuid": SEED_UUID, "email": "a@example.com"}, {"external_id": "x2"}]
    ).json()
    assert added["count"] == 2 and added["uuids"][0] == SEED_UUID
    customers = requests.get(f"{admin}/customers").json()
    assert [customer["uuid"] for customer in customers] == added["uuids"]
    assert (
        requests.get(f"{admin}/customers", params={"uuid": SEED_UUID}).json()[0]["email"] == "a@example.com"
    )
    assert requests.post(f"{admin}/customers", json=[{"bogus_field": 1}]).status_code == 400

    assert requests.post(f"{admin}/definitions", json={"plan": "String"}).json() == {"plan": "String"}
    config = requests.post(f"{admin}/config", json={"latency": 0.01, "delete_status": 204}).json()
    assert config["latency"] == 0.01 and config["delete_status"] == 204
    assert requests.post(f"{admin}/config", json={"delete_status": 418}).status_code == 400
    assert requests.post(f"{admin}/config", json={"nonsense": 1}).status_code == 400
    assert requests.get(f"{admin}/config").json()["delete_status"] == 204
    requests.post(f"{admin}/config", json={"latency": 0})

    api.get(url(server, "/ping"))
    api.post(custom_path(server), json=SEED_BODY)
    api.get(url(server, "/customers"), params={"per_page": 1})
    log = requests.get(f"{admin}/requests").json()
    assert [entry["index"] for entry in log] == [0, 1, 2]
    assert log[1]["body"] == SEED_BODY and log[1]["headers"]["authorization"].startswith("Basic ")
    assert log[2]["query"] == {"per_page": ["1"]}
    since = requests.get(f"{admin}/requests", params={"since": 2}).json()
    assert [entry["path"] for entry in since] == ["/v1/customers"]

    assert requests.post(f"{admin}/faults", json=["504"]).json()["queued"] == 1
    assert api.get(url(server, "/ping")).status_code == 504
    requests.post(f"{admin}/fail_customer", json={"uuid": SEED_UUID, "status": 502, "times": 1})
    assert api.get(url(server, f"/customers/{SEED_UUID}")).status_code == 502

    stats = requests.get(f"{admin}/stats").json()
    assert stats["total"] == 5 and stats["by_status"] == {"200": 3, "502": 1, "504": 1}
    assert stats["faults"] == {"504": 1, "fail_customer": 1}
    assert requests.delete(f"{admin}/requests").json() == {"ok": True}
    assert requests.get(f"{admin}/requests").json() == []
    assert requests.post(f"{admin}/reset").json() == {"ok": True}
    assert requests.get(f"{admin}/customers").json() == []
    assert requests.get(f"{admin}/nothing").status_code == 404
    # Admin calls are neither logged nor counted, nor faulted, nor rate limited.
    server.configure(rate_limit=1, faults={"500": 1.0})
    for _ in range(5):
        assert requests.get(f"{admin}/stats").status_code == 200
    assert server.requests == [] and server.stats()["total"] == 0


def test_admin_log_without_bodies_and_custom_view(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    assert api.post(custom_path(server), json=SEED_BODY).status_code == 200
    admin = f"{server.url}/_testing"
    (entry,) = requests.get(f"{admin}/requests?bodies=0").json()
    assert entry["status"] == 200 and entry["path"].endswith("/attributes/custom")
    assert not {"body", "raw_body", "response_body"} & set(entry)
    assert "raw_body" in requests.get(f"{admin}/requests").json()[0]
    assert requests.get(f"{admin}/customers?view=custom").json() == {
        SEED_UUID: {"channel": "Facebook", "age": 8}
    }


def test_admin_unknown_endpoints_and_methods(server: ChartMogulServer) -> None:
    admin = f"{server.url}/_testing"
    for method, path in (
        ("GET", ""),
        ("GET", "/"),
        ("GET", "/serve"),
        ("GET", "/_store"),
        ("PUT", "/config"),
        ("PATCH", "/requests"),
        ("GET", "/reset"),
        ("POST", "/stats"),
        ("GET", "/requests/extra"),
    ):
        response = requests.request(method, admin + path)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": f"no admin endpoint {method} /_testing{path}"}
    assert requests.get(f"{admin}/stats/").status_code == 200  # a trailing slash is ignored
    assert requests.post(f"{admin}/config", data=b"{nope").json() == {"error": "body is not valid JSON"}
