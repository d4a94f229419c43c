"""Unit tests of customer resolution (``airflow_provider_chartmogul.push.resolve``): which customer a
record means, when it matches none or several, and where current attributes are read from.

The hook is a small hand-written stand-in that implements only the two calls resolution makes
and records them; the HTTP behind those calls is tested with the hook itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import ChartMogulAPIError
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import CustomerRecord, parse_record
from airflow_provider_chartmogul.push.resolve import CustomerDirectory, CustomerResolver, ResolutionError


def _customer(uuid: str, **fields: Any) -> dict[str, Any]:
    custom = fields.pop("custom", None)
    customer: dict[str, Any] = {"uuid": uuid, **fields}
    if custom is not None:
        customer["attributes"] = {"custom": custom, "tags": []}
    return customer


class FakeHook:
    """``iter_customers`` and ``get_custom_attributes`` over a list of customer objects.

    The listing yields ``page_size`` customers a page (``on_page`` once per page). The email search
    is exact by default; ``email_search`` replaces it (a server may search more loosely).
    """

    def __init__(
        self,
        customers: list[dict[str, Any]],
        *,
        page_size: int = 200,
        email_search: Callable[[str], list[dict[str, Any]]] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.customers = customers
        self.page_size = page_size
        self.email_search = email_search
        self.attributes = dict(attributes or {})
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def iter_customers(
        self,
        external_id: str | None = None,
        data_source_uuid: str | None = None,
        email: str | None = None,
        *,
        on_page: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        filters = {"external_id": external_id, "data_source_uuid": data_source_uuid, "email": email}
        self.calls.append(("iter_customers", {k: v for k, v in filters.items() if v is not None}))
        if email is not None:
            if self.email_search is not None:
                found = self.email_search(email)
            else:
                found = [c for c in self.customers if c.get("email") == email]
        else:
            found = [
                c
                for c in self.customers
                if (external_id is None or external_id in {c.get("external_id"), *c.get("external_ids", [])})
                and (data_source_uuid is None or data_source_uuid == c.get("data_source_uuid"))
            ]
        for start in range(0, max(len(found), 1), self.page_size):
            if on_page is not None:
                on_page()
            yield from found[start : start + self.page_size]

    def get_custom_attributes(self, customer_uuid: str) -> dict[str, Any]:
        self.calls.append(("get_custom_attributes", {"customer_uuid": customer_uuid}))
        answer = self.attributes[customer_uuid]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


def _record(**identifier: Any) -> CustomerRecord:
    return parse_record({**identifier, "custom": []}, index=0)


def _resolver(hook: FakeHook) -> CustomerResolver:
    return CustomerResolver(hook, ObservedTypes())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# CustomerResolver, a lookup per record
# ---------------------------------------------------------------------------------------------


def test_a_customer_uuid_is_used_as_given_without_a_request() -> None:
    hook = FakeHook([])
    resolver = _resolver(hook)

    assert resolver.resolve(_record(customer_uuid="cus_given")) == "cus_given"
    assert hook.calls == []
    assert resolver.lookup_requests == 0


def test_an_external_id_resolves_to_its_one_customer() -> None:
    hook = FakeHook([_customer("cus_a", external_id="42"), _customer("cus_b", external_id="43")])
    resolver = _resolver(hook)

    assert resolver.resolve(_record(external_id="42")) == "cus_a"
    assert hook.calls == [("iter_customers", {"external_id": "42"})]
    assert resolver.lookup_requests == 1


def test_an_integer_external_id_is_looked_up_as_text() -> None:
    hook = FakeHook([_customer("cus_a", external_id="42")])

    assert _resolver(hook).resolve(_record(external_id=42)) == "cus_a"
    assert hook.calls == [("iter_customers", {"external_id": "42"})]


def test_the_data_source_goes_with_the_external_id_lookup() -> None:
    hook = FakeHook(
        [
            _customer("cus_a", external_id="42", data_source_uuid="ds_1"),
            _customer("cus_b", external_id="42", data_source_uuid="ds_2"),
        ]
    )

    assert _resolver(hook).resolve(_record(external_id="42", data_source_uuid="ds_2")) == "cus_b"
    assert hook.calls == [("iter_customers", {"external_id": "42", "data_source_uuid": "ds_2"})]


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ({"external_id": "404"}, "no ChartMogul customer has external_id '404'"),
        (
            {"external_id": "404", "data_source_uuid": "ds_1"},
            "no ChartMogul customer has external_id '404' in data source 'ds_1'",
        ),
        ({"email": "nobody@example.com"}, "no ChartMogul customer has email 'nobody@example.com'"),
    ],
)
def test_a_record_matching_no_customer_is_a_404_resolution_error(
    identifier: dict[str, str], message: str
) -> None:
    hook = FakeHook([_customer("cus_a", external_id="42", email="a@example.com")])

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(**identifier))

    assert str(caught.value) == message
    assert caught.value.status == 404


def test_an_external_id_of_several_customers_names_them_and_asks_for_the_data_source() -> None:
    hook = FakeHook(
        [
            _customer("cus_a", external_id="42", data_source_uuid="ds_1"),
            _customer("cus_b", external_id="42", data_source_uuid="ds_2"),
        ]
    )

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(external_id="42"))

    assert str(caught.value) == (
        "external_id '42' matches 2 ChartMogul customers (cus_a, cus_b); nothing was written to any "
        "of them (external ids are unique only within a data source: add data_source_uuid)"
    )
    assert caught.value.status is None


def test_a_shared_email_is_ambiguous_and_asks_for_another_identifier() -> None:
    hook = FakeHook(
        [_customer("cus_a", email="team@example.com"), _customer("cus_b", email="team@example.com")]
    )

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(email="team@example.com"))

    message = str(caught.value)
    assert message.startswith("email 'team@example.com' matches 2 ChartMogul customers (cus_a, cus_b)")
    assert (
        "emails are not unique in ChartMogul: identify this customer by customer_uuid or external_id"
        in message
    )


def test_many_matches_name_the_first_five_and_count_them_all() -> None:
    hook = FakeHook([_customer(f"cus_{i}", external_id="42") for i in range(7)])

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(external_id="42"))

    message = str(caught.value)
    assert "matches 7 ChartMogul customers (cus_0, cus_1, cus_2, cus_3, cus_4 ...)" in message
    assert "cus_5" not in message
    assert "cus_6" not in message


def test_the_same_customer_listed_twice_is_one_match() -> None:
    customer = _customer("cus_a", external_id="42")
    hook = FakeHook([customer, customer])

    assert _resolver(hook).resolve(_record(external_id="42")) == "cus_a"


def test_every_page_of_a_lookup_is_counted() -> None:
    hook = FakeHook([_customer(f"cus_{i}", external_id="42") for i in range(5)], page_size=2)
    resolver = _resolver(hook)

    with pytest.raises(ResolutionError):
        resolver.resolve(_record(external_id="42"))

    assert resolver.lookup_requests == 3


# ---------------------------------------------------------------------------------------------
# Emails
# ---------------------------------------------------------------------------------------------


def test_an_email_with_capitals_is_searched_again_in_lower_case() -> None:
    hook = FakeHook([_customer("cus_a", email="ann@example.com")])
    resolver = _resolver(hook)

    assert resolver.resolve(_record(email="Ann@Example.COM")) == "cus_a"
    assert hook.calls == [
        ("iter_customers", {"email": "Ann@Example.COM"}),
        ("iter_customers", {"email": "ann@example.com"}),
    ]
    assert resolver.lookup_requests == 2


def test_an_email_found_as_given_is_not_searched_again() -> None:
    hook = FakeHook([_customer("cus_a", email="Ann@Example.com")])

    assert _resolver(hook).resolve(_record(email="Ann@Example.com")) == "cus_a"
    assert hook.calls == [("iter_customers", {"email": "Ann@Example.com"})]


def test_a_lower_case_email_that_matches_nothing_is_searched_once() -> None:
    hook = FakeHook([])

    with pytest.raises(ResolutionError):
        _resolver(hook).resolve(_record(email="ann@example.com"))

    assert hook.calls == [("iter_customers", {"email": "ann@example.com"})]


def test_emails_match_case_insensitively_both_ways() -> None:
    stored = [_customer("cus_a", email="ANN@example.com")]
    hook = FakeHook(stored, email_search=lambda query: stored if query.lower() == "ann@example.com" else [])

    assert _resolver(hook).resolve(_record(email="ann@Example.com")) == "cus_a"


def test_a_looser_email_search_is_not_trusted() -> None:
    near_misses = [
        _customer("cus_a", email="ann@example.com.au"),
        _customer("cus_b", email="joann@example.com"),
        _customer("cus_c"),
    ]
    hook = FakeHook(near_misses, email_search=lambda query: near_misses)

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(email="ann@example.com"))

    assert caught.value.status == 404


def test_a_looser_email_search_keeps_only_the_exact_matches() -> None:
    found = [_customer("cus_a", email="ann@example.com.au"), _customer("cus_b", email="Ann@example.com")]
    hook = FakeHook(found, email_search=lambda query: found)

    assert _resolver(hook).resolve(_record(email="ann@example.com")) == "cus_b"


# ---------------------------------------------------------------------------------------------
# current_attributes, a request per customer
# ---------------------------------------------------------------------------------------------


def test_current_attributes_are_read_from_the_customer_and_their_types_observed() -> None:
    hook = FakeHook([], attributes={"cus_a": {"seats": 3, "since": "2016-01-31T00:00:00.000Z"}})
    resolver = _resolver(hook)

    assert resolver.current_attributes("cus_a") == {"seats": 3, "since": "2016-01-31T00:00:00.000Z"}
    assert hook.calls == [("get_custom_attributes", {"customer_uuid": "cus_a"})]
    assert resolver.lookup_requests == 1
    assert resolver.observed.get("seats") == "Integer"
    assert resolver.observed.get("since") == "Timestamp"


def test_reading_the_state_of_an_unknown_customer_is_a_404_resolution_error() -> None:
    hook = FakeHook([], attributes={"cus_gone": ChartMogulAPIError("Customer not found", status=404)})

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).current_attributes("cus_gone")

    assert str(caught.value) == "no ChartMogul customer has customer_uuid 'cus_gone'"
    assert caught.value.status == 404


def test_other_api_errors_while_reading_the_state_go_through() -> None:
    error = ChartMogulAPIError("Internal error", status=500)
    hook = FakeHook([], attributes={"cus_a": error})

    with pytest.raises(ChartMogulAPIError) as caught:
        _resolver(hook).current_attributes("cus_a")

    assert caught.value is error


# ---------------------------------------------------------------------------------------------
# CustomerDirectory, one pass over the listing
# ---------------------------------------------------------------------------------------------


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


def test_the_directory_reads_the_whole_listing_and_counts_its_pages() -> None:
    account = [_customer(f"cus_{i}", external_id=str(i)) for i in range(450)]
    resolver = _resolver(FakeHook(account))

    directory = resolver.build_directory(keep_state=False)

    assert directory.customers == 450
    assert directory.requests == 3
    assert resolver.directory is directory
    assert "cus_449" in directory
    assert "cus_450" not in directory


def test_once_the_directory_is_built_records_resolve_without_a_request() -> None:
    hook = FakeHook(_account())
    resolver = _resolver(hook)
    resolver.build_directory(keep_state=False)
    calls_for_listing = list(hook.calls)

    resolved = [
        resolver.resolve(_record(external_id="A-2")),
        resolver.resolve(_record(external_id="42", data_source_uuid="ds_3")),
        resolver.resolve(_record(email="merged@example.COM")),
        resolver.resolve(_record(external_id="7")),
    ]

    assert resolved == ["cus_merged", "cus_42_ds3", "cus_merged", "cus_team"]
    assert hook.calls == calls_for_listing == [("iter_customers", {})]
    assert resolver.lookup_requests == 0


def test_every_external_id_and_data_source_of_a_merged_customer_is_indexed() -> None:
    directory = CustomerDirectory(keep_state=False)
    for customer in _account():
        directory.add(customer)

    assert directory.find(_record(external_id="A-1")) == "cus_merged"
    assert directory.find(_record(external_id="A-2", data_source_uuid="ds_2")) == "cus_merged"
    assert directory.find(_record(external_id="A-1", data_source_uuid="ds_1")) == "cus_merged"


def test_the_directory_tells_external_ids_apart_by_data_source() -> None:
    directory = CustomerDirectory(keep_state=False)
    for customer in _account():
        directory.add(customer)

    assert directory.find(_record(external_id="42", data_source_uuid="ds_1")) == "cus_42_ds1"
    with pytest.raises(ResolutionError, match=r"matches 2 ChartMogul customers \(cus_42_ds1, cus_42_ds3\)"):
        directory.find(_record(external_id="42"))
    with pytest.raises(ResolutionError) as caught:
        directory.find(_record(external_id="42", data_source_uuid="ds_2"))
    assert str(caught.value) == "no ChartMogul customer has external_id '42' in data source 'ds_2'"
    assert caught.value.status == 404


def test_the_directory_matches_emails_case_insensitively_and_finds_shared_ones() -> None:
    directory = CustomerDirectory(keep_state=False)
    for customer in _account():
        directory.add(customer)

    assert directory.find(_record(email="MERGED@example.com")) == "cus_merged"
    assert directory.candidates(_record(email="Team@Example.com")) == ["cus_42_ds3", "cus_team"]
    with pytest.raises(ResolutionError, match="emails are not unique"):
        directory.find(_record(email="team@example.com"))


def test_candidates_are_a_copy_the_caller_may_change() -> None:
    directory = CustomerDirectory(keep_state=False)
    for customer in _account():
        directory.add(customer)

    directory.candidates(_record(external_id="42")).clear()

    assert directory.candidates(_record(external_id="42")) == ["cus_42_ds1", "cus_42_ds3"]
    assert directory.candidates(_record(external_id="42", data_source_uuid="ds_3")) == ["cus_42_ds3"]
    assert directory.candidates(_record(external_id="nope")) == []


def test_a_directory_with_state_answers_current_attributes_without_a_request() -> None:
    hook = FakeHook(_account())
    resolver = _resolver(hook)
    resolver.build_directory(keep_state=True)

    assert resolver.current_attributes("cus_merged") == {"seats": 3, "plan": "pro"}
    assert resolver.current_attributes("cus_42_ds3") == {}
    assert hook.calls == [("iter_customers", {})]
    assert resolver.lookup_requests == 0


def test_a_directory_without_state_leaves_current_attributes_to_a_request() -> None:
    hook = FakeHook(_account(), attributes={"cus_merged": {"seats": 4}})
    resolver = _resolver(hook)
    resolver.build_directory(keep_state=False)

    assert resolver.current_attributes("cus_merged") == {"seats": 4}
    assert hook.calls[-1] == ("get_custom_attributes", {"customer_uuid": "cus_merged"})


def test_the_state_of_a_customer_not_in_the_listing_is_a_404() -> None:
    resolver = _resolver(FakeHook(_account()))
    resolver.build_directory(keep_state=True)

    with pytest.raises(ResolutionError) as caught:
        resolver.current_attributes("cus_elsewhere")

    assert str(caught.value) == "no ChartMogul customer has customer_uuid 'cus_elsewhere'"
    assert caught.value.status == 404


def test_building_the_directory_observes_the_account_types() -> None:
    resolver = _resolver(FakeHook(_account()))

    resolver.build_directory(keep_state=False)

    assert resolver.observed.get("seats") == "Integer"
    assert resolver.observed.get("plan") == "String"
    assert resolver.observed.get("pro") == "Boolean"
    assert resolver.observed.get("mrr") == "Decimal"


def test_set_state_is_what_the_next_record_for_the_customer_is_planned_against() -> None:
    directory = CustomerDirectory(keep_state=True)
    for customer in _account():
        directory.add(customer)
    written = {"seats": 5, "plan": "pro"}

    directory.set_state("cus_merged", written)
    written["seats"] = 99  # the caller's dict is not kept
    directory.set_state("cus_unknown", {"seats": 1})

    assert directory.state("cus_merged") == {"seats": 5, "plan": "pro"}
    assert "cus_unknown" not in directory
    with pytest.raises(ResolutionError):
        directory.state("cus_unknown")


def test_a_listed_customer_state_is_copied_from_the_listing() -> None:
    listed = _customer("cus_a", external_id="1", custom={"seats": 3})
    directory = CustomerDirectory(keep_state=True)
    directory.add(listed)

    listed["attributes"]["custom"]["seats"] = 4

    assert directory.state("cus_a") == {"seats": 3}
