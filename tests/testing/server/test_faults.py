"""Injected faults: every kind, trickles, queued and random faults, failing customers."""

from __future__ import annotations

import socket

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import RATE_LIMIT_BODY, SEED_BODY, SEED_UUID, custom_path, url, wait_for

FAULT_EXPECTATIONS: dict[str, tuple[int | None, str]] = {
    "429": (429, "application/json"),
    "500": (500, "text/plain"),
    "502": (502, "text/html"),
    "503": (503, "application/json"),
    "504": (504, "text/html"),
    "html": (500, "text/html"),
    "text": (500, "text/plain"),
    "bad_json": (200, "application/json"),
    "drop": (None, ""),
    "slow": (None, ""),
}


@pytest.mark.parametrize("kind", sorted(FAULT_EXPECTATIONS))
def test_each_fault_kind_leaves_state_unchanged(
    server: ChartMogulServer, api: requests.Session, kind: str
) -> None:
    server.configure(slow_seconds=0.3, rate_limit_retry_after=2)
    server.add_customer(uuid=SEED_UUID)
    expected_status, content_type = FAULT_EXPECTATIONS[kind]
    server.queue_faults([kind])
    if expected_status is None:
        error = requests.exceptions.ReadTimeout if kind == "slow" else requests.exceptions.ConnectionError
        with pytest.raises(error):
            api.post(custom_path(server), json=SEED_BODY, timeout=0.1 if kind == "slow" else 5)
        wait_for(lambda: len(server.requests) == 1)
    else:
        response = api.post(custom_path(server), json=SEED_BODY)
        assert response.status_code == expected_status
        assert response.headers["Content-Type"].startswith(content_type)
        if kind == "bad_json":
            with pytest.raises(ValueError):
                response.json()
        elif kind == "429":
            assert response.json() == RATE_LIMIT_BODY
            assert response.headers["Retry-After"] == "2"
        elif kind == "503":
            assert response.json()["code"] == 503
        elif content_type == "text/html":
            assert response.text.lstrip().lower().startswith(("<html", "<!doctype html"))
    record = server.requests[0]
    assert record.fault == kind and record.status == expected_status
    assert record.body == SEED_BODY
    # The faulted write was not applied; the next request is normal and applies it.
    assert server.custom_attributes(SEED_UUID) == {}
    assert server.definitions == {}
    assert server.stats()["faults"] == {kind: 1}
    normal = api.post(custom_path(server), json=SEED_BODY)
    assert normal.status_code == 200 and normal.json() == {"custom": {"channel": "Facebook", "age": 8}}


def test_trickle_fault_sends_the_body_byte_by_byte_and_changes_nothing(
    server: ChartMogulServer, api: requests.Session
) -> None:
    server.configure(trickle_seconds=0.01)
    server.add_customer(uuid=SEED_UUID)
    server.queue_faults(["trickle"])
    response = api.post(custom_path(server), json=SEED_BODY)
    assert response.status_code == 500 and response.headers["Connection"] == "close"
    assert response.headers["Content-Type"].startswith("application/json")
    assert len(response.content) == int(response.headers["Content-Length"]) == 26
    assert server.requests[0].fault == "trickle" and server.requests[0].status == 500
    assert server.custom_attributes(SEED_UUID) == {}
    # The server records the trickle once its last write returned: the client may be faster.
    wait_for(lambda: bool(server.stats()["trickles"]))
    (trickle,) = server.stats()["trickles"]
    assert trickle["bytes_sent"] == trickle["body_bytes"] == 26 and not trickle["hung_up"]
    assert trickle["path"] == f"/v1/customers/{SEED_UUID}/attributes/custom"
    assert api.post(custom_path(server), json=SEED_BODY).status_code == 200


def test_trickle_fault_notices_the_client_hanging_up(server: ChartMogulServer) -> None:
    server.configure(trickle_seconds=0.2)
    server.queue_faults(["trickle"])
    with socket.create_connection((server.host, server.port), timeout=5) as client:
        client.sendall(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(12) == b"HTTP/1.1 500"
    wait_for(lambda: bool(server.stats()["trickles"]))
    (trickle,) = server.stats()["trickles"]
    assert trickle["hung_up"] and trickle["bytes_sent"] < trickle["body_bytes"]
    assert trickle["ended"] >= trickle["started"]


def test_queue_faults_in_order_then_normal(server: ChartMogulServer, api: requests.Session) -> None:
    server.queue_faults(["503", "429", "500"])
    statuses = [api.get(url(server, "/ping")).status_code for _ in range(5)]
    assert statuses == [503, 429, 500, 200, 200]
    assert [record.fault for record in server.requests] == ["503", "429", "500", None, None]
    with pytest.raises(ValueError):
        server.queue_faults(["nonsense"])
    # Faults come before auth: even an unauthenticated request gets the queued fault.
    server.queue_faults(["502"])
    assert requests.get(url(server, "/ping")).status_code == 502


def test_random_faults_are_seeded(server: ChartMogulServer, api: requests.Session) -> None:
    def run() -> list[int]:
        server.reset()
        return [api.get(url(server, "/ping")).status_code for _ in range(60)]

    server.configure(faults={"500": 0.3, "503": 0.2}, fault_seed=7)
    first = run()
    second = run()
    assert first == second  # reset() re-seeds the generator
    assert 5 <= first.count(500) <= 35 and 2 <= first.count(503) <= 25 and first.count(200) >= 10
    server.configure(fault_seed=8)
    assert run() != first
    with pytest.raises(ValueError):
        server.configure(faults={"500": 0.7, "503": 0.5})
    with pytest.raises(ValueError):
        server.configure(faults={"teapot": 0.1})


def test_fail_customer(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    other = server.add_customer()["uuid"]
    server.fail_customer(SEED_UUID, status=500, times=2)
    for _ in range(2):
        response = api.post(custom_path(server), json=SEED_BODY)
        assert response.status_code == 500 and response.headers["Content-Type"].startswith("text/plain")
    assert server.custom_attributes(SEED_UUID) == {}
    assert api.post(custom_path(server), json=SEED_BODY).status_code == 200

    server.fail_customer(SEED_UUID, status=422, body={"error_details": {"custom": ["locked"]}})
    for _ in range(3):
        response = api.get(url(server, f"/customers/{SEED_UUID}/attributes"))
        assert response.status_code == 422 and response.json() == {"error_details": {"custom": ["locked"]}}
    assert api.post(custom_path(server, other), json=SEED_BODY).status_code == 200  # others unaffected
    server.fail_customer(SEED_UUID, times=0)
    assert api.get(url(server, f"/customers/{SEED_UUID}")).status_code == 200

    server.fail_customer(SEED_UUID, status=404)
    assert api.delete(custom_path(server), json={"custom": ["age"]}).json() == {"error": "Customer not found"}
    server.fail_customer(SEED_UUID, status=503, body="upstream busy", times=1)
    busy = api.put(custom_path(server), json={"custom": {"age": 1}})
    assert busy.status_code == 503 and busy.text == "upstream busy"
    assert server.custom_attributes(SEED_UUID) == {"channel": "Facebook", "age": 8}
    assert {record.fault for record in server.requests if record.status != 200} == {"fail_customer"}


def test_fault_customer_gives_one_customer_any_fault_kind(
    server: ChartMogulServer, api: requests.Session
) -> None:
    server.add_customer(uuid=SEED_UUID)
    other = server.add_customer()["uuid"]
    server.fault_customer(SEED_UUID, "500")
    for _ in range(3):
        assert api.post(custom_path(server), json=SEED_BODY).status_code == 500
    assert api.post(custom_path(server, other), json=SEED_BODY).status_code == 200  # others unaffected
    assert server.custom_attributes(SEED_UUID) == {}
    server.fault_customer(SEED_UUID, "drop", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post(custom_path(server), json=SEED_BODY)
    assert api.post(custom_path(server), json=SEED_BODY).status_code == 200  # times=1 is spent
    server.fault_customer(SEED_UUID, "500")
    server.fault_customer(SEED_UUID, "500", times=0)
    assert api.get(url(server, f"/customers/{SEED_UUID}/attributes")).status_code == 200
    with pytest.raises(ValueError):
        server.fault_customer(SEED_UUID, "teapot")


def test_trickle_head_sends_the_status_line_and_headers_byte_by_byte(server: ChartMogulServer) -> None:
    server.configure(trickle_seconds=0.2)
    server.queue_faults(["trickle_head"])
    with socket.create_connection((server.host, server.port), timeout=5) as client:
        client.sendall(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        first = client.recv(100)
        assert first == b"H"  # one byte, not the whole status line
    wait_for(lambda: bool(server.stats()["trickles"]))
    (trickle,) = server.stats()["trickles"]
    assert trickle["hung_up"] and trickle["bytes_sent"] == 0


def test_misdirect_lookup_answers_another_customer(server: ChartMogulServer, api: requests.Session) -> None:
    asked = server.add_customer(external_id="ext-asked")
    other = server.add_customer(external_id="ext-other")
    server.misdirect_lookup("ext-asked", other["uuid"])
    page = api.get(url(server, "/customers"), params={"external_id": "ext-asked"}).json()
    assert [entry["uuid"] for entry in page["entries"]] == [other["uuid"]]
    assert page["entries"][0]["external_id"] == "ext-other"
    assert server.requests[-1].fault == "misdirected_lookup"
    server.misdirect_lookup("ext-asked", None)
    page = api.get(url(server, "/customers"), params={"external_id": "ext-asked"}).json()
    assert [entry["uuid"] for entry in page["entries"]] == [asked["uuid"]]
