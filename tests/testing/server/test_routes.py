"""The URL table: unknown paths, wrong methods, odd uuids, read-only keys."""

from __future__ import annotations

import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import SEED_BODY, SEED_UUID, custom_path, url


def test_unknown_path_wrong_method_and_odd_uuids(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    missing = api.get(url(server, "/nothing/here"))
    assert missing.status_code == 404
    assert missing.json()["code"] == 404 and missing.json()["param"] is None
    assert api.get(f"{server.url}/").status_code == 404
    wrong = api.patch(custom_path(server), json=SEED_BODY)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "DELETE, POST, PUT"
    assert wrong.json()["code"] == 405
    assert api.post(url(server, "/ping")).status_code == 405
    for odd in ("cus_%2Fde305d54", "cus_de305d54%00", "%2E%2E", "%E2%98%83"):
        response = api.get(url(server, f"/customers/{odd}/attributes"))
        assert response.status_code == 404, odd
        assert response.json() == {"error": "Customer not found"}
    # Percent-encoded segments are decoded: an encoded real uuid matches.
    encoded = SEED_UUID.replace("_", "%5F")
    assert api.get(url(server, f"/customers/{encoded}/attributes")).status_code == 200
    assert api.get(url(server, "/ping/")).status_code == 200  # trailing slash ignored


def test_read_only_key(server: ChartMogulServer) -> None:
    server.add_customer(uuid=SEED_UUID)
    ro = ("ro_key", "")
    assert requests.get(url(server, "/ping"), auth=ro).status_code == 200
    assert requests.get(url(server, f"/customers/{SEED_UUID}/attributes"), auth=ro).status_code == 200
    for method in ("POST", "PUT", "DELETE"):
        response = requests.request(method, custom_path(server), json=SEED_BODY, auth=ro)
        assert response.status_code == 403
        body = response.json()
        assert body["code"] == 403 and body["param"] is None and "read-only" in body["message"]
    by_email = requests.post(
        url(server, "/customers/attributes/custom"), json={"email": "a@b.c", **SEED_BODY}, auth=ro
    )
    assert by_email.status_code == 403
    assert server.custom_attributes(SEED_UUID) == {}
    assert server.definitions == {}
