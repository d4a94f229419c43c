"""Unit tests of the customer index (``airflow_provider_chartmogul.push.index``): every identifier of
a listed customer found again, emails case-insensitively, external ids exactly and by data source,
and the state a sync plans against."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_chartmogul.push.index import CustomerIndex


def _customer(uuid: str, **fields: Any) -> dict[str, Any]:
    custom = fields.pop("custom", None)
    customer: dict[str, Any] = {"uuid": uuid, **fields}
    if custom is not None:
        customer["attributes"] = {"custom": custom, "tags": []}
    return customer


def _account() -> list[dict[str, Any]]:
    return [
        _customer(
            "cus_merged",
            external_id="A-1",
            external_ids=["A-1", "A-2"],
            data_source_uuid="ds_1",
            data_source_uuids=["ds_1", "ds_2"],
            email="Merged@Example.com",
            custom={"seats": 3, "plan": "pro"},
        ),
        _customer("cus_42_ds1", external_id="42", data_source_uuid="ds_1", custom={"pro": True}),
        _customer("cus_42_ds3", external_id="42", data_source_uuid="ds_3", email="team@example.com"),
        _customer("cus_team", external_id=7, email="TEAM@example.com", custom={"mrr": 9.5}),
    ]


@pytest.fixture
def index() -> Any:
    index = CustomerIndex(keep_state=True)
    index.add(_account())
    yield index
    index.close()


def test_the_index_counts_and_knows_its_customers(index: CustomerIndex) -> None:
    assert index.customers == 4
    assert "cus_team" in index
    assert "cus_elsewhere" not in index


def test_every_external_id_and_data_source_of_a_merged_customer_is_indexed(index: CustomerIndex) -> None:
    assert index.by_external_id("A-1") == ["cus_merged"]
    assert index.by_external_id("A-2", "ds_2") == ["cus_merged"]
    assert index.by_external_id("A-1", "ds_1") == ["cus_merged"]


def test_external_ids_are_told_apart_by_data_source_and_match_exactly(index: CustomerIndex) -> None:
    assert sorted(index.by_external_id("42")) == ["cus_42_ds1", "cus_42_ds3"]
    assert index.by_external_id("42", "ds_3") == ["cus_42_ds3"]
    assert index.by_external_id("42", "ds_2") == []
    assert index.by_external_id("7") == ["cus_team"]  # the API showed it as a number
    assert index.by_external_id("a-1") == []
    assert index.by_external_id("nope") == []


def test_emails_match_case_insensitively_and_shared_ones_are_all_found(index: CustomerIndex) -> None:
    assert index.by_email("MERGED@example.com") == ["cus_merged"]
    assert sorted(index.by_email("Team@Example.com")) == ["cus_42_ds3", "cus_team"]


def test_the_state_is_the_listed_custom_attributes(index: CustomerIndex) -> None:
    assert index.state("cus_merged") == {"seats": 3, "plan": "pro"}
    assert index.state("cus_42_ds3") == {}
    assert index.state("cus_elsewhere") is None


def test_a_written_state_is_what_the_next_record_is_planned_against(index: CustomerIndex) -> None:
    written = {"seats": 5, "plan": "pro"}
    index.set_state("cus_merged", written)
    written["seats"] = 99  # the caller's dict is not kept
    index.set_state("cus_unknown", {"seats": 1})

    assert index.state("cus_merged") == {"seats": 5, "plan": "pro"}
    assert "cus_unknown" not in index
    assert index.state("cus_unknown") is None


def test_a_listed_state_is_copied_from_the_page() -> None:
    listed = _customer("cus_a", external_id="1", custom={"seats": 3})
    index = CustomerIndex(keep_state=True)
    index.add([listed])

    listed["attributes"]["custom"]["seats"] = 4

    assert index.state("cus_a") == {"seats": 3}


def test_without_state_only_identifiers_are_kept() -> None:
    index = CustomerIndex(keep_state=False)
    index.add(_account())
    index.set_state("cus_merged", {"seats": 5})

    assert index.by_email("merged@example.com") == ["cus_merged"]
    assert index.state("cus_merged") == {}


def test_a_customer_listed_again_replaces_itself() -> None:
    index = CustomerIndex(keep_state=True)
    index.add([_customer("cus_a", external_id="1", custom={"seats": 3})])
    index.add([_customer("cus_a", external_id="1", custom={"seats": 4})])

    assert index.state("cus_a") == {"seats": 4}
    assert index.by_external_id("1") == ["cus_a", "cus_a"]  # one customer: resolve.pick dedupes


def test_identifiers_with_sql_wildcards_and_quotes_match_only_themselves() -> None:
    index = CustomerIndex(keep_state=False)
    index.add(
        [_customer("cus_pct", external_id="%"), _customer("cus_q", external_id="o'neil", email="a_b@x.y")]
    )

    assert index.by_external_id("%") == ["cus_pct"]
    assert index.by_external_id("o'neil") == ["cus_q"]
    assert index.by_email("aXb@x.y") == []


# ---- what a mirror clears: the customers no record matched that hold managed keys ----------------


def test_unmatched_holders_are_the_customers_holding_managed_keys_that_no_record_matched(
    index: CustomerIndex,
) -> None:
    managed = ["seats", "pro", "mrr"]
    assert index.holders(managed) == 3  # cus_42_ds3 holds no custom attribute
    index.mark_matched("cus_team")
    index.mark_matched("cus_team")  # matched twice is matched

    assert list(index.unmatched_holders(managed)) == [
        ("cus_42_ds1", {"pro": True}),
        ("cus_merged", {"seats": 3}),  # "plan" is not managed: never cleared
    ]
    assert index.holders(managed) == 3  # matching changes who is cleared, not who holds


def test_an_index_without_state_cannot_say_who_holds_a_key() -> None:
    index = CustomerIndex(keep_state=False)
    index.add(_account())
    with pytest.raises(ValueError, match="keep_state"):
        list(index.unmatched_holders(["seats"]))
    index.close()
