"""The API endpoints: the seed call, PUT, DELETE, reads, by email, search."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import SEED_BODY, SEED_UUID, custom_path, post_attr, url


def test_seed_example_exactly(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    response = api.post(custom_path(server), json=SEED_BODY)
    assert response.status_code == 200
    assert response.json() == {"custom": {"channel": "Facebook", "age": 8}}
    assert server.definitions == {"channel": "String", "age": "Integer"}
    # source is not returned by reads; the reference page's example has the clearbit object that
    # answers had until 2024
    server.configure(customer_shape="2024")
    attributes = api.get(url(server, f"/customers/{SEED_UUID}/attributes")).json()
    assert attributes == {
        "tags": [],
        "stripe": {},
        "clearbit": {},
        "custom": {"channel": "Facebook", "age": 8},
    }


def test_post_returns_whole_map_and_same_type_overwrites(
    server: ChartMogulServer, api: requests.Session
) -> None:
    server.add_customer(uuid=SEED_UUID, custom={"CAC": 213, "salesRep": "Gabi"})
    response = api.post(custom_path(server), json=SEED_BODY)
    assert response.json() == {"custom": {"CAC": 213, "salesRep": "Gabi", "channel": "Facebook", "age": 8}}
    again = post_attr(api, server, "Integer", "age", 9)
    assert again.json()["custom"]["age"] == 9
    assert api.post(custom_path(server), json={"custom": []}).json()["custom"]["age"] == 9


def test_entry_missing_fields_and_missing_custom(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    no_value = api.post(custom_path(server), json={"custom": [{"type": "String", "key": "k"}]})
    assert no_value.status_code == 422 and no_value.json()["param"] == "k"
    no_type = api.post(custom_path(server), json={"custom": [{"key": "k", "value": "v"}]})
    assert no_type.status_code == 422 and no_type.json()["param"] == "k"
    missing = api.post(custom_path(server), json={"attributes": []})
    assert missing.status_code == 400
    assert missing.json() == {"errors": {"custom": "is missing"}}
    not_a_list = api.post(custom_path(server), json={"custom": {"k": "v"}})
    assert not_a_list.status_code == 400 and "custom" in not_a_list.json()["errors"]
    not_json = api.post(custom_path(server), data=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "body" in not_json.json()["errors"]
    unknown = api.post(custom_path(server, "cus_nobody"), json=SEED_BODY)
    assert unknown.status_code == 404 and unknown.json() == {"error": "Customer not found"}


def test_type_conflict_error(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    other = server.add_customer()["uuid"]
    assert post_attr(api, server, "Integer", "age", 8).status_code == 200
    response = post_attr(api, server, "String", "age", "eight", uuid=other)
    assert response.status_code == 422
    error = response.json()
    assert error["param"] == "age"
    assert "Integer" in error["message"] and "String" in error["message"]
    assert server.definitions == {"age": "Integer"}
    assert server.custom_attributes(other) == {}
    # Two types for one key within one request are a conflict too.
    both = api.post(
        custom_path(server),
        json={
            "custom": [
                {"type": "String", "key": "k2", "value": "a"},
                {"type": "Boolean", "key": "k2", "value": 1},
            ]
        },
    )
    assert both.status_code == 422


def test_type_conflict_overwrite(server: ChartMogulServer, api: requests.Session) -> None:
    server.configure(type_conflict="overwrite")
    server.add_customer(uuid=SEED_UUID)
    assert post_attr(api, server, "Integer", "age", 8).status_code == 200
    response = post_attr(api, server, "String", "age", "eight")
    assert response.status_code == 200
    assert response.json() == {"custom": {"age": "eight"}}
    assert server.definitions == {"age": "String"}


def test_put(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID)
    other = server.add_customer()["uuid"]
    api.post(custom_path(server), json=SEED_BODY)
    response = api.put(
        custom_path(server, other),
        json={"custom": {"age": "9", "channel": {"value": "Google", "source": "crm"}}},
    )
    assert response.status_code == 200
    assert response.json() == {"custom": {"age": 9, "channel": "Google"}}

    undefined = api.put(custom_path(server), json={"custom": {"nope": 1}})
    assert undefined.status_code == 422
    details = undefined.json()["error_details"]
    assert list(details) == ["nope"] and isinstance(details["nope"], list)

    wrong_type = api.put(custom_path(server), json={"custom": {"age": "old", "channel": "x"}})
    assert wrong_type.status_code == 422 and "age" in wrong_type.json()["error_details"]
    assert server.custom_attributes(SEED_UUID) == {"channel": "Facebook", "age": 8}

    assert api.put(custom_path(server), json={"custom": ["age"]}).status_code == 400
    assert api.put(custom_path(server), json={}).json() == {"errors": {"custom": "is missing"}}
    assert api.put(custom_path(server, "cus_nobody"), json={"custom": {"age": 1}}).status_code == 404


@pytest.mark.parametrize("status", [200, 202, 204])
def test_delete_statuses(server: ChartMogulServer, api: requests.Session, status: int) -> None:
    server.configure(delete_status=status)
    server.add_customer(uuid=SEED_UUID, custom={"a": 1, "b": "x", "c": True})
    response = api.delete(custom_path(server), json={"custom": ["a", "c", "never_there"]})
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"custom": {"b": "x"}}
    elif status == 202:
        assert isinstance(response.json()["message"], str)
    else:
        assert response.content == b""
    assert server.custom_attributes(SEED_UUID) == {"b": "x"}
    assert server.definitions == {"a": "Integer", "b": "String", "c": "Boolean"}  # definitions stay
    assert api.delete(custom_path(server), json={"custom": "a"}).status_code == 400
    assert api.get(url(server, "/ping")).status_code == 200  # keep-alive survived the 204


def test_get_attributes_and_retrieve(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(
        uuid=SEED_UUID, name="Acme", email="bob@example.com", custom={"pro": False}, tags=["vip"]
    )
    attributes = api.get(url(server, f"/customers/{SEED_UUID}/attributes")).json()
    assert attributes == {"tags": ["vip"], "stripe": {}, "custom": {"pro": False}}
    customer = api.get(url(server, f"/customers/{SEED_UUID}")).json()
    for field in (
        "uuid",
        "id",
        "external_id",
        "external_ids",
        "data_source_uuid",
        "data_source_uuids",
        "email",
        "name",
        "company",
        "country",
        "state",
        "city",
        "zip",
        "lead_created_at",
        "free_trial_started_at",
        "customer-since",
        "status",
        "attributes",
        "mrr",
        "arr",
        "currency",
    ):
        assert field in customer, field
    assert customer["attributes"]["custom"] == {"pro": False}
    assert customer == server.get_customer(SEED_UUID)
    assert api.get(url(server, "/customers/cus_nobody")).json() == {"error": "Customer not found"}
    assert server.get_customer("cus_nobody") is None


def test_by_email(server: ChartMogulServer, api: requests.Session) -> None:
    endpoint = url(server, "/customers/attributes/custom")
    one = server.add_customer(email="one@example.com")["uuid"]
    twins = [
        server.add_customer(email="twin@example.com")["uuid"],
        server.add_customer(email="TWIN@example.com")["uuid"],
    ]
    entry = {"type": "String", "key": "plan", "value": "pro"}

    none = api.post(endpoint, json={"email": "nobody@example.com", "custom": [entry]})
    assert none.status_code == 200 and none.json() == {"entries": []}
    assert server.definitions == {}

    single = api.post(endpoint, json={"email": "one@example.com", "custom": [entry]})
    assert [customer["uuid"] for customer in single.json()["entries"]] == [one]
    assert single.json()["entries"][0]["attributes"]["custom"] == {"plan": "pro"}

    double = api.post(endpoint, json={"email": "Twin@Example.com", "custom": [entry]})
    assert [customer["uuid"] for customer in double.json()["entries"]] == twins
    assert all(server.custom_attributes(uuid) == {"plan": "pro"} for uuid in twins)

    assert api.post(endpoint, json={"custom": [entry]}).json() == {"errors": {"email": "is missing"}}
    assert api.post(endpoint, json={"email": "one@example.com"}).status_code == 400
    bad = api.post(endpoint, json={"email": "nobody@example.com", "custom": [{**entry, "type": "Nope"}]})
    assert bad.status_code == 422 and bad.json()["param"] == "plan"


def test_search(server: ChartMogulServer, api: requests.Session) -> None:
    first = server.add_customer(email="bob@example.com")["uuid"]
    second = server.add_customer(email="Bob@example.com")["uuid"]
    found = api.get(url(server, "/customers/search"), params={"email": "bob@example.com"}).json()
    assert [customer["uuid"] for customer in found["entries"]] == [first, second]
    assert found["has_more"] is False and "cursor" in found
    paged = api.get(
        url(server, "/customers/search"), params={"email": "bob@example.com", "per_page": 1}
    ).json()
    assert len(paged["entries"]) == 1 and paged["has_more"] is True
    missing = api.get(url(server, "/customers/search"), params={"email": "nobody@example.com"})
    assert missing.status_code == 404
    assert missing.json()["code"] == 404 and missing.json()["param"] == "email"
    assert api.get(url(server, "/customers/search")).status_code == 400


def test_listing_bad_parameters(server: ChartMogulServer, api: requests.Session) -> None:
    for per_page in ("0", "201", "ten", "-1"):
        response = api.get(url(server, "/customers"), params={"per_page": per_page})
        assert response.status_code == 400
        assert "per_page" in response.json()["errors"]
    assert api.get(url(server, "/customers"), params={"per_page": 200}).status_code == 200
    bad_cursor = api.get(url(server, "/customers"), params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and bad_cursor.json() == {"errors": {"cursor": "is invalid"}}
