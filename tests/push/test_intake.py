"""Tests of how records enter a run (``airflow_provider_chartmogul.push.intake``): which records are
placed at once, which wait for the choice between per-customer lookups and the customer listing,
when the listing is read, and how its pages resolve the records waiting for it.

:class:`CustomerIntake` is handed the run's four actions (submit a lookup, finish a record, abort,
wake the main loop); ``Intake`` below hands it recorders, so the intake's decisions are seen
directly, without worker threads or writes. The listing is read for real (a
:class:`ChartMogulHook` and the test server).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import (
    ChartMogulAuthError,
    ChartMogulCancelledError,
    ChartMogulFatalError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.push.intake import CustomerIntake
from airflow_provider_chartmogul.push.options import PushOptions
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import parse_record
from airflow_provider_chartmogul.push.report import Outcome
from airflow_provider_chartmogul.push.write_order import Entry
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

WAIT_SECONDS = 10.0
_OPENED: list[CustomerIntake] = []


@pytest.fixture(autouse=True)
def _closed_after_the_test() -> Iterator[None]:
    """Every intake a test made is closed, as a run closes its own (the listing stops, the heap
    frozen for it thaws)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


class Intake:
    """A :class:`CustomerIntake` whose actions are recorded instead of acted on; its own
    attributes and methods are reached through this object.

    :param gate: when given, the listing thread waits on it after handing over each page, so a
        test can take the pages one at a time.
    """

    def __init__(
        self, hook: ChartMogulHook, options: PushOptions, gate: threading.Event | None = None
    ) -> None:
        self.gate = gate
        self.page_ready = threading.Event()
        self.submitted: list[tuple[str, int]] = []
        self.finished: list[tuple[int, Outcome]] = []
        self.aborts: list[tuple[str, ChartMogulFatalError | None]] = []
        self._count = 0
        self.intake = CustomerIntake(
            hook,
            options,
            ObservedTypes(),
            submit_lookup=lambda entry: self.submitted.append(("lookup", entry.index)),
            finish=lambda entry, outcome: self.finished.append((entry.index, outcome)),
            abort=lambda reason, error: self.aborts.append((reason, error)),
            notify=self._notify,
            log=logging.getLogger("tests.push.intake"),
        )
        _OPENED.append(self.intake)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.intake, name)

    def _notify(self) -> None:
        self.page_ready.set()
        if self.gate is not None:
            self.gate.wait(WAIT_SECONDS)

    # ---- driving it ----------------------------------------------------------------------------------

    def admit(self, **raw: Any) -> None:
        raw.setdefault("custom", [{"type": "Integer", "key": "seats", "value": 1}])
        self.intake.admit(Entry(parse_record(raw, index=self._count, allow_clear=True)))
        self._count += 1

    def read_whole_listing(self) -> None:
        """Index every page the listing hands over, until its end (or the run is aborted)."""
        assert self.intake.listing is not None, "no listing was started"
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.intake.listed and not self.aborts:
            assert time.monotonic() < deadline, "the listing did not end"
            self.page_ready.wait(0.05)
            self.page_ready.clear()
            self.intake.take_pages()

    def startable(self) -> list[tuple[int, str | None]]:
        """The records that may start now (index, customer uuid), as the pusher would take them."""
        return [(entry.index, entry.uuid) for entry in self.intake.order.runnable()]


@pytest.fixture
def hook(chartmogul_conn: ChartMogulServer) -> Iterator[ChartMogulHook]:
    with ChartMogulHook(max_requests_per_second=1000) as hook:
        yield hook


def _listing_requests(server: ChartMogulServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == "/v1/customers")


# ---------------------------------------------------------------------------------------------
# Before any lookup
# ---------------------------------------------------------------------------------------------


def test_a_record_naming_its_customer_starts_at_once_without_a_request(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    intake = Intake(hook, PushOptions(mode="add"))

    intake.admit(customer_uuid="cus_known")

    assert intake.startable() == [(0, "cus_known")]
    assert intake.submitted == []
    assert intake.listing is None
    assert chartmogul_conn.requests == []


def test_records_to_look_up_are_held_until_the_choice_is_made(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    intake = Intake(hook, PushOptions(listing_threshold=5))

    intake.admit(external_id="a")
    intake.admit(email="b@example.com")
    intake.admit(customer_uuid="cus_c")

    assert intake.submitted == []
    assert intake.listing is None
    assert chartmogul_conn.requests == []
    # The record for a known customer waits too: either record before it may be for that customer.
    assert intake.startable() == []


def test_when_the_input_ends_under_the_threshold_each_held_record_is_looked_up(hook: ChartMogulHook) -> None:
    intake = Intake(hook, PushOptions(listing_threshold=5))
    intake.admit(external_id="a")
    intake.admit(email="b@example.com")

    intake.input_ended()

    assert intake.submitted == [("lookup", 0), ("lookup", 1)]
    assert intake.listing is None
    # Deciding again changes nothing.
    intake.input_ended()
    assert intake.submitted == [("lookup", 0), ("lookup", 1)]


def test_per_customer_lookups_are_submitted_as_records_arrive(hook: ChartMogulHook) -> None:
    intake = Intake(hook, PushOptions(customer_lookup="per_customer", listing_threshold=0))

    intake.admit(external_id="a")
    intake.admit(customer_uuid="cus_b")
    intake.admit(email="c@example.com")

    assert intake.submitted == [("lookup", 0), ("lookup", 2)]
    assert intake.listing is None


def test_in_sync_mode_a_known_customer_waits_for_the_choice(hook: ChartMogulHook) -> None:
    # Its state comes either from the listing or from a read of its own: not yet known which.
    intake = Intake(hook, PushOptions(mode="sync", listing_threshold=5))
    intake.admit(customer_uuid="cus_a")

    assert intake.startable() == []

    intake.input_ended()

    assert intake.startable() == [(0, "cus_a")]
    assert intake.submitted == []  # its write reads the state itself


# ---------------------------------------------------------------------------------------------
# The listing
# ---------------------------------------------------------------------------------------------


def test_more_lookups_than_the_threshold_start_the_listing(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tests.push.intake")
    a = chartmogul_conn.add_customer(external_id="a")["uuid"]
    b = chartmogul_conn.add_customer(email="b@example.com")["uuid"]
    intake = Intake(hook, PushOptions(listing_threshold=1))

    intake.admit(external_id="a")
    assert intake.listing is None
    intake.admit(email="b@example.com")
    assert intake.listing is not None
    assert "Reading the customer listing (more than 1 customers to look up)" in caplog.text

    intake.read_whole_listing()

    assert intake.startable() == [(0, a), (1, b)]
    assert intake.submitted == []  # no lookup of their own
    assert intake.finished == []
    assert intake.aborts == []


def test_the_listing_resolves_records_and_indexes_every_customer(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tests.push.intake")
    others = chartmogul_conn.add_customers([{"external_id": f"other_{i}"} for i in range(300)])
    target = chartmogul_conn.add_customer(external_id="late", data_source_uuid="ds_crm")["uuid"]
    intake = Intake(hook, PushOptions(listing_threshold=0))

    intake.admit(external_id="late", data_source_uuid="ds_crm")
    intake.admit(external_id=others[5]["external_id"])
    intake.read_whole_listing()

    assert intake.startable() == [(0, target), (1, others[5]["uuid"])]
    assert intake.index is not None
    assert intake.index.customers == 301
    assert intake.listing.requests == _listing_requests(chartmogul_conn) == 2
    assert "Indexed 301 ChartMogul customers from the customer listing: 2 requests" in caplog.text


def test_an_identifier_the_listing_does_not_have_fails_resolution(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    chartmogul_conn.add_customer(external_id="known")
    intake = Intake(hook, PushOptions(listing_threshold=0))

    intake.admit(external_id="unknown")
    intake.read_whole_listing()

    (index, outcome), *rest = intake.finished
    assert rest == []
    assert index == 0
    assert (outcome.status, outcome.stage, outcome.http_status) == ("failed", "resolution", 404)
    assert outcome.error == "no ChartMogul customer has external_id 'unknown'"
    assert outcome.label == "external_id=unknown"
    assert intake.startable() == []


def test_an_email_two_customers_share_fails_resolution_naming_both(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    first = chartmogul_conn.add_customer(email="shared@example.com")["uuid"]
    second = chartmogul_conn.add_customer(email="Shared@Example.com")["uuid"]
    intake = Intake(hook, PushOptions(listing_threshold=0))

    intake.admit(email="shared@example.com")
    intake.admit(customer_uuid=first)
    intake.read_whole_listing()

    ((index, outcome),) = intake.finished
    assert index == 0
    assert outcome.stage == "resolution"
    assert outcome.error is not None
    assert "matches 2 ChartMogul customers" in outcome.error
    assert first in outcome.error and second in outcome.error
    # The failed record no longer holds back the next record for a customer it might have meant.
    assert intake.startable() == [(1, first)]


def test_in_sync_mode_records_take_their_state_from_the_listing(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    known = chartmogul_conn.add_customer(custom={"seats": 3})["uuid"]
    intake = Intake(hook, PushOptions(mode="sync", listing_threshold=0))

    intake.admit(customer_uuid=known)
    intake.admit(external_id=chartmogul_conn.get_customer(known)["external_id"])  # type: ignore[index]
    intake.read_whole_listing()

    (head,) = intake.order.runnable()
    assert (head.index, head.uuid, head.listed) == (0, known, True)
    intake.order.done(head)
    (resolved,) = intake.order.runnable()  # found by its external id in the listing
    assert (resolved.index, resolved.uuid, resolved.listed) == (1, known, True)
    assert intake.listed_state(known) == {"seats": 3}
    # The listing taught the run the key's type.
    assert intake.observed.get("seats") == "Integer"


def test_a_customer_uuid_the_listing_lacks_is_released_when_the_listing_ends(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    chartmogul_conn.add_customers([{"external_id": f"c_{i}"} for i in range(10)])
    intake = Intake(hook, PushOptions(mode="sync", listing_threshold=0))

    intake.admit(customer_uuid="cus_not_in_the_account")  # its state is to come from the listing
    assert intake.listing is not None
    assert intake.startable() == []
    intake.read_whole_listing()

    # Released, so that its write can report the customer missing.
    started = [(e.index, e.uuid, e.listed) for e in intake.order.runnable()]
    assert started == [(0, "cus_not_in_the_account", True)]


@pytest.fixture
def two_pages(chartmogul_conn: ChartMogulServer) -> tuple[list[str], list[str]]:
    """200 customers on the first listing page, 100 on the second; "dup@example.com" on both."""
    first = chartmogul_conn.add_customers(
        [
            {"external_id": "in_ds", "data_source_uuid": "ds_crm"},
            {"external_id": "bare", "email": "m@example.com"},
            {"external_id": "dup_1", "email": "dup@example.com"},
        ]
        + [{"external_id": f"p1_{i}"} for i in range(197)]
    )
    second = chartmogul_conn.add_customers(
        [{"external_id": "dup_2", "email": "dup@example.com"}]
        + [{"external_id": f"p2_{i}"} for i in range(99)]
    )
    return [c["uuid"] for c in first], [c["uuid"] for c in second]


@pytest.fixture
def gated(hook: ChartMogulHook) -> Iterator[tuple[Intake, threading.Event]]:
    """An intake in listing mode whose listing thread waits after each page until the gate opens."""
    gate = threading.Event()
    intake = Intake(hook, PushOptions(listing_threshold=0), gate=gate)
    try:
        yield intake, gate
    finally:
        gate.set()


def _first_page(intake: Intake) -> None:
    """Index the first page only (the listing thread waits before requesting the second)."""
    assert intake.page_ready.wait(WAIT_SECONDS)
    intake.take_pages()
    assert intake.listed is False


def test_records_waiting_for_the_listing_are_placed_as_pages_settle_them(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    (first, second), (intake, gate) = two_pages, gated
    intake.admit(external_id="in_ds", data_source_uuid="ds_crm")
    intake.admit(email="m@example.com")
    intake.admit(external_id="p2_7")

    _first_page(intake)

    # An external id is unique in its data source: one match is final. An email may still
    # match a customer on a later page, and "p2_7" is not indexed yet.
    assert intake.startable() == [(0, first[0])]

    gate.set()
    intake.read_whole_listing()

    assert intake.startable() == [(1, first[1]), (2, second[8])]
    assert intake.finished == []


def test_a_record_in_a_data_source_already_indexed_is_placed_when_admitted(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    (first, _), (intake, _gate) = two_pages, gated
    intake.admit(external_id="p2_0")  # starts the listing
    _first_page(intake)

    intake.admit(external_id="in_ds", data_source_uuid="ds_crm")

    assert intake.startable() == [(1, first[0])]


def test_a_page_that_arrived_while_records_were_read_is_indexed_before_the_next_record(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    # At its start the run reads many records before it looks at the listing again: the first
    # page must not wait for that, or neither do the writes it unblocks.
    (first, _), (intake, _gate) = two_pages, gated
    intake.admit(external_id="p2_0")  # starts the listing
    assert intake.page_ready.wait(WAIT_SECONDS)  # the first page is queued, not taken

    intake.admit(external_id="in_ds", data_source_uuid="ds_crm")

    assert intake.index.customers == 200
    assert intake.startable() == [(1, first[0])]


def test_an_email_indexed_so_far_still_waits_for_the_rest_of_the_listing(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    (first, second), (intake, gate) = two_pages, gated
    intake.admit(external_id="p2_0")  # starts the listing
    _first_page(intake)

    intake.admit(email="dup@example.com")  # one match on the first page, another on the second

    assert intake.startable() == []
    gate.set()
    intake.read_whole_listing()

    ((index, outcome),) = intake.finished
    assert index == 1
    assert outcome.stage == "resolution"
    assert outcome.error is not None
    assert f"matches 2 ChartMogul customers ({first[2]}, {second[0]})" in outcome.error


def test_a_waiting_email_holds_back_later_records_for_the_customer_it_may_mean(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    (first, _), (intake, gate) = two_pages, gated
    intake.admit(email="M@Example.com")  # emails match case-insensitively
    intake.admit(customer_uuid=first[1])
    intake.admit(customer_uuid=first[5])
    _first_page(intake)

    # Record 0 may be for first[1]: record 1 waits; record 2 is for a customer it cannot mean.
    assert intake.startable() == [(2, first[5])]

    gate.set()
    intake.read_whole_listing()

    # Record 0 was for first[1] after all: it goes first, and record 1 after it.
    assert intake.startable() == [(0, first[1])]


def test_an_external_id_in_another_data_source_does_not_settle_a_waiting_record(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    chartmogul_conn.add_customer(external_id="x", data_source_uuid="ds_billing")  # first page
    chartmogul_conn.add_customers([{"external_id": f"filler_{i}"} for i in range(250)])
    wanted = chartmogul_conn.add_customer(external_id="x", data_source_uuid="ds_crm")["uuid"]  # second
    intake = Intake(hook, PushOptions(listing_threshold=0))

    intake.admit(external_id="x", data_source_uuid="ds_crm")
    intake.read_whole_listing()

    assert intake.startable() == [(0, wanted)]


def test_an_email_admitted_after_its_page_holds_back_records_for_the_customer_it_matches(
    two_pages: tuple[list[str], list[str]], gated: tuple[Intake, threading.Event]
) -> None:
    (first, second), (intake, gate) = two_pages, gated
    intake.admit(external_id="p2_0")  # starts the listing
    _first_page(intake)

    intake.admit(email="m@example.com")  # matches first[1], already indexed
    intake.admit(customer_uuid=first[1])
    intake.admit(customer_uuid=first[5])

    assert intake.startable() == [(3, first[5])]
    gate.set()
    intake.read_whole_listing()
    # Record 1 was for first[1]: it goes, and record 2 waits for it.
    assert intake.startable() == [(0, second[1]), (1, first[1])]


def test_once_the_listing_is_being_read_records_never_get_a_lookup_of_their_own(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    target = chartmogul_conn.add_customer(external_id="b")["uuid"]
    intake = Intake(hook, PushOptions(listing_threshold=0))
    intake.admit(external_id="a")  # starts the listing

    intake.input_ended()  # as the pusher does when the input ends or too many wait
    intake.admit(external_id="b")
    intake.read_whole_listing()

    assert intake.submitted == []
    assert intake.startable() == [(1, target)]


# ---------------------------------------------------------------------------------------------
# A listing that fails
# ---------------------------------------------------------------------------------------------


def test_a_failed_listing_page_aborts_the_run(chartmogul_conn: ChartMogulServer) -> None:
    chartmogul_conn.configure(faults={"500": 1.0})
    with ChartMogulHook(max_retries=0) as hook:
        intake = Intake(hook, PushOptions(listing_threshold=0))
        intake.admit(external_id="a")
        intake.read_whole_listing()

    ((reason, error),) = intake.aborts
    assert reason.startswith("the customer listing failed: ")
    assert "HTTP 500" in reason
    assert error is None
    assert intake.listed is False
    assert intake.finished == []  # the record is left for the pusher to report as not attempted


def test_a_refused_key_during_the_listing_aborts_with_the_error(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_server, api_key="sk_test_not_a_known_key_0000_SECRET"),
    )
    with ChartMogulHook() as hook:
        intake = Intake(hook, PushOptions(listing_threshold=0))
        intake.admit(external_id="a")
        intake.read_whole_listing()

    ((reason, error),) = intake.aborts
    assert isinstance(error, ChartMogulAuthError)
    assert reason == str(error)
    assert "401" in reason


def test_a_cancelled_listing_aborts_with_the_cancellation_reason_alone(hook: ChartMogulHook) -> None:
    hook.cancel("the task was marked failed")
    intake = Intake(hook, PushOptions(listing_threshold=0))
    intake.admit(external_id="a")
    intake.read_whole_listing()

    cancelled = intake.listing.error  # type: ignore[union-attr]
    assert isinstance(cancelled, ChartMogulCancelledError)
    ((reason, error),) = intake.aborts
    # The API message only, not "GET /v1/customers failed (...): ...": nothing was asked of the API.
    assert reason == "not sent: the task was marked failed"
    assert str(cancelled) != reason
    assert error is None


def test_the_heap_is_out_of_the_collectors_reach_while_the_listing_is_read(hook: ChartMogulHook) -> None:
    # A full collection walks every object alive; Airflow's alone take 0.1-0.3 s, and the
    # listing's pages set one off every hundred pages or so. Frozen, they are not walked.
    frozen_before = gc.get_freeze_count()
    gc.unfreeze()
    try:
        intake = Intake(hook, PushOptions(listing_threshold=0))
        intake.admit(external_id="x")  # starts the listing
        assert gc.get_freeze_count() > 0
        intake.read_whole_listing()
        intake.close()
        assert gc.get_freeze_count() == 0

        # Frozen by someone else first (Airflow's LocalExecutor freezes before it forks): the
        # run leaves it so.
        gc.freeze()
        theirs = gc.get_freeze_count()
        second = Intake(hook, PushOptions(listing_threshold=0))
        second.admit(external_id="x")
        second.read_whole_listing()
        second.close()
        assert gc.get_freeze_count() >= theirs
    finally:
        gc.unfreeze()
        if frozen_before:
            gc.freeze()
