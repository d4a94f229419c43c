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
from airflow_provider_chartmogul.push.resolve import CustomerResolver, ResolutionError, carries


def _customer(uuid: str, **fields: Any) -> dict[str, Any]:
    custom = fields.pop("custom", None)
    customer: dict[str, Any] = {"uuid": uuid, **fields}
    if custom is not None:
        customer["attributes"] = {"custom": custom, "tags": []}
    return customer


class FakeHook:
    """``iter_customers`` and ``_read_custom`` (the hook's read of a checked uuid) over a list of
    customer objects.

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

    def _read_custom(self, uuid: str) -> dict[str, Any]:
        self.calls.append(("_read_custom", {"customer_uuid": uuid}))
        answer = self.attributes[uuid]
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


@pytest.mark.parametrize("uuid", ["..", "cus_1/../ping", "cus 1", ""])
def test_an_answered_uuid_unsafe_in_a_path_is_refused_when_picked(uuid: str) -> None:
    # The input's uuids are checked when a record is read; ChartMogul's, when a record's customer
    # is picked: the writes after send it as it is.
    hook = FakeHook([_customer(uuid, external_id="42", data_source_uuid="ds_1")])

    with pytest.raises(ResolutionError) as caught:
        _resolver(hook).resolve(_record(external_id="42", data_source_uuid="ds_1"))

    message = str(caught.value)
    assert "external_id '42' in data source 'ds_1'" in message
    assert "customer_uuid must be" in message
    assert message.endswith("nothing was written")


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
    assert hook.calls == [("_read_custom", {"customer_uuid": "cus_a"})]
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
# No answer trusted blindly: a lookup's customer must carry the identifier asked for
# ---------------------------------------------------------------------------------------------


class MisdirectingHook(FakeHook):
    """Answers every lookup with ``answer``, whatever was asked (a misdirected lookup)."""

    def __init__(self, answer: list[dict[str, Any]]) -> None:
        super().__init__([])
        self.answer = answer

    def iter_customers(
        self, *args: Any, on_page: Callable[[], None] | None = None, **kw: Any
    ) -> Iterator[dict[str, Any]]:
        if on_page is not None:
            on_page()
        yield from self.answer


def test_an_external_id_lookup_answering_another_customer_is_never_resolved() -> None:
    resolver = _resolver(MisdirectingHook([_customer("cus_other", external_id="B-9")]))

    with pytest.raises(ResolutionError) as caught:
        resolver.resolve(_record(external_id="A-1"))

    message = str(caught.value)
    assert "external_id 'A-1'" in message and "cus_other" in message
    assert "misdirected" in message and "nothing was written" in message


def test_an_external_id_lookup_answering_the_id_in_another_data_source_is_never_resolved() -> None:
    answer = [_customer("cus_ds2", external_id="A-1", data_source_uuid="ds_2")]
    resolver = _resolver(MisdirectingHook(answer))

    with pytest.raises(ResolutionError, match="misdirected"):
        resolver.resolve(_record(external_id="A-1", data_source_uuid="ds_1"))
    assert resolver.resolve(_record(external_id="A-1", data_source_uuid="ds_2")) == "cus_ds2"
    assert resolver.resolve(_record(external_id="A-1")) == "cus_ds2"


def test_only_the_answered_customers_that_carry_the_id_count() -> None:
    answer = [_customer("cus_wrong", external_id="B-9"), _customer("cus_right", external_ids=["A-1", "A-2"])]

    assert _resolver(MisdirectingHook(answer)).resolve(_record(external_id="A-2")) == "cus_right"


def test_an_email_lookup_answering_another_email_is_a_misdirected_answer() -> None:
    resolver = _resolver(MisdirectingHook([_customer("cus_other", email="other@example.com")]))

    with pytest.raises(ResolutionError, match=r"email 'me@example.com'.*cus_other.*misdirected"):
        resolver.resolve(_record(email="me@example.com"))


@pytest.mark.parametrize(
    ("identifier", "customer", "expected"),
    [
        ({"email": "A@Example.com"}, {"email": "a@example.COM"}, True),
        ({"email": "a@example.com"}, {"email": "b@example.com"}, False),
        ({"email": "a@example.com"}, {}, False),
        ({"external_id": "x"}, {"external_id": "X"}, False),  # exact, not case-insensitive
        ({"external_id": "7"}, {"external_id": 7}, True),  # the API may show it as a number
        (
            {"external_id": "x", "data_source_uuid": "ds_1"},
            {"external_ids": ["x"], "data_source_uuids": ["ds_0", "ds_1"]},
            True,
        ),
        ({"external_id": "x", "data_source_uuid": "ds_1"}, {"external_id": "x"}, False),
    ],
)
def test_carries(identifier: dict[str, Any], customer: dict[str, Any], expected: bool) -> None:
    assert carries(_record(**identifier), {"uuid": "cus_1", **customer}) is expected
