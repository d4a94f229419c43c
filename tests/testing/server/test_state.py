"""The account's listing indexes and cursors: pagination, filters, 100k customers."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.testing.server.customers import DEFAULT_DATA_SOURCE_UUID
from airflow_provider_chartmogul.testing.server.state import AccountStore, PositionIndex, encode_cursor
from tests.testing.server._support import DS2, url


def test_listing_pagination_every_customer_once(server: ChartMogulServer, api: requests.Session) -> None:
    added = server.add_customers(
        {
            "external_id": f"x{i}",
            "data_source_uuid": DS2 if i % 3 == 0 else None,
            "email": f"c{i % 7}@example.com",
        }
        for i in range(1050)
    )
    expected = [customer["uuid"] for customer in added]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"per_page": 200}
        if cursor:
            params["cursor"] = cursor
        body = api.get(url(server, "/customers"), params=params).json()
        pages += 1
        seen.extend(customer["uuid"] for customer in body["entries"])
        cursor = body["cursor"]
        if not body["has_more"]:
            break
    assert pages == 6
    assert seen == expected  # stable order, every customer exactly once
    assert cursor is None  # the last page's
    after_end = api.get(url(server, "/customers"), params={"cursor": encode_cursor(1050)}).json()
    assert after_end == {"entries": [], "cursor": None, "has_more": False}

    default = api.get(url(server, "/customers")).json()
    assert len(default["entries"]) == 200 and default["has_more"] is True

    in_ds2: list[str] = []
    cursor = None
    while True:
        params = {"data_source_uuid": DS2, "per_page": 100, **({"cursor": cursor} if cursor else {})}
        body = api.get(url(server, "/customers"), params=params).json()
        in_ds2.extend(customer["uuid"] for customer in body["entries"])
        cursor = body["cursor"]
        if not body["has_more"]:
            break
    assert in_ds2 == [uuid for i, uuid in enumerate(expected) if i % 3 == 0]

    by_email = api.get(url(server, "/customers"), params={"email": "C3@example.com", "per_page": 200}).json()
    assert [customer["uuid"] for customer in by_email["entries"]] == [
        u for i, u in enumerate(expected) if i % 7 == 3
    ]


def test_listing_filters(server: ChartMogulServer, api: requests.Session) -> None:
    a = server.add_customer(external_id="ext-1")["uuid"]
    b = server.add_customer(external_id="ext-1", data_source_uuid=DS2)["uuid"]
    merged = server.add_customer(
        external_id="ext-2", external_ids=["ext-2", "ext-old"], data_source_uuids=[DS2]
    )["uuid"]

    def uuids(**params: Any) -> list[str]:
        response = api.get(url(server, "/customers"), params=params)
        assert response.status_code == 200
        return [customer["uuid"] for customer in response.json()["entries"]]

    assert uuids(external_id="ext-1") == [a, b]
    assert uuids(external_id="ext-1", data_source_uuid=DS2) == [b]
    assert uuids(external_id="ext-old") == [merged]
    assert uuids(data_source_uuid=DS2) == [b, merged]  # via data_source_uuids of the merged one
    assert uuids(external_id="nope") == []
    assert uuids(external_id="") == [a, b, merged]  # blank filters are ignored
    with pytest.raises(ValueError, match="already exists"):
        server.add_customer(external_id="ext-1")


class _CountingList(list):  # type: ignore[type-arg]
    """The store's customer order, counting the customers a listing reads from it."""

    touched = 0

    def __getitem__(self, item: Any) -> Any:
        found = super().__getitem__(item)
        self.touched += len(found) if isinstance(item, slice) else 1
        return found

    def __iter__(self) -> Any:
        for customer in super().__iter__():
            self.touched += 1
            yield customer


def test_a_page_reads_the_page_not_the_account() -> None:
    store = AccountStore()
    count = 100_000
    store.load(
        {"external_id": f"e{i}", "email": f"u{i % 5}@example.com", "data_source_uuid": DS2 if i % 2 else None}
        for i in range(count)
    )
    counting = _CountingList(store.order)
    store.order = counting
    in_ds2 = _CountingList(store.by_data_source.get(DS2))
    store.by_data_source._positions[DS2] = in_ds2  # the index's list of 50,000 positions
    for start in (0, count // 2, count - 2_000):
        for filters in ({}, {"data_source_uuid": DS2}, {"email": "U3@example.com"}):
            counting.touched = in_ds2.touched = 0
            page = store.page(start=start, per_page=200, **filters)
            assert len(page.customers) == 200 and page.has_more
            # A page reads its customers and the one after, whatever the account's size; in the
            # index, their positions and a binary search's.
            assert counting.touched <= 201, (start, filters, counting.touched)
            assert in_ds2.touched <= 201 + 2 * count.bit_length(), (start, filters, in_ds2.touched)
    counting.touched = in_ds2.touched = 0
    assert store.count(data_source_uuid=DS2) == count // 2 and in_ds2.touched == 0
    counting.touched = 0
    (found,) = store.page(start=0, per_page=200, external_id=f"e{count - 1}").customers
    assert found.external_id == f"e{count - 1}" and counting.touched == 1
    assert [c.position for c in store.by_email_exact("U4@EXAMPLE.com")][:2] == [4, 9]


def test_bulk_load_and_deep_pages_over_http(server: ChartMogulServer, api: requests.Session) -> None:
    added = server.add_customers(
        {"external_id": f"e{i}", "email": f"u{i}@example.com"} for i in range(20_000)
    )
    assert len(added) == 20_000 and server.customer_count == 20_000
    for position in (0, 10_000, 19_900):
        body = api.get(
            url(server, "/customers"), params={"per_page": 200, "cursor": encode_cursor(position)}
        ).json()
        assert [c["uuid"] for c in body["entries"]] == [c["uuid"] for c in added[position : position + 200]]
    last = api.get(url(server, "/customers"), params={"external_id": "e19999"}).json()
    assert [customer["uuid"] for customer in last["entries"]] == [added[-1]["uuid"]]


def test_position_index_keeps_one_position_bare() -> None:
    index = PositionIndex()
    index.add("a", 3)
    index.add("b", 4)
    index.add("a", 9)
    assert index.get("a") == [3, 9] and index.get("b") == (4,) and index.get("c") == ()
    assert "b" in index and "c" not in index


def test_stored_customer_shows_what_it_was_given() -> None:
    store = AccountStore()
    plain = store.add_customer(uuid="cus_1", email="A@example.com", name="Ann & Co")
    merged = store.add_customer(
        uuid="cus_2",
        external_id="x2",
        external_ids=["x2", "old"],
        data_source_uuids=[DS2],
        company="Acme",
        chartmogul_url="https://example.com/c2",
        tags=["vip"],
    )
    assert plain.more is None and plain.tags is None  # nothing but the slots
    shown = plain.render()
    assert shown["external_ids"] == ["ext_1"] and shown["data_source_uuids"] == [plain.data_source_uuid]
    assert shown["chartmogul-url"] == "https://app.chartmogul.com/#/customers/1-Ann_Co"
    assert shown["email"] == "A@example.com" and shown["company"] == ""
    other = merged.render()
    assert other["external_ids"] == ["x2", "old"]
    assert other["data_source_uuids"] == [DEFAULT_DATA_SOURCE_UUID, DS2]
    assert other["company"] == "Acme" and other["chartmogul-url"] == "https://example.com/c2"
    assert other["attributes"]["tags"] == ["vip"] and "tags" not in other
    other["external_ids"].append("mutated")
    assert merged.render()["external_ids"] == ["x2", "old"]  # render hands out copies
