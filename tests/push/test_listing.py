"""Tests of the customer listing reader (``airflow_provider_chartmogul.push.listing``): the pages of
``GET /v1/customers`` are read in a thread of their own and handed over one by one through a queue
that ends with ``None``; a stop ends the reading early, an error is kept for the main thread.

A real :class:`ChartMogulHook` reads from the project's ChartMogul-compatible server: the listing is
HTTP, 200 customers a page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulAuthError,
    ChartMogulCancelledError,
    ChartMogulFatalError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.push.listing import ListingReader
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

JOIN_SECONDS = 10.0


@pytest.fixture
def hook(chartmogul_conn: ChartMogulServer) -> Iterator[ChartMogulHook]:
    with ChartMogulHook(max_requests_per_second=1000) as hook:
        yield hook


def _customers(server: ChartMogulServer, count: int) -> list[str]:
    return [c["uuid"] for c in server.add_customers([{"external_id": f"ext_{i}"} for i in range(count)])]


def _listing_requests(server: ChartMogulServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == "/v1/customers")


def _run(reader: ListingReader) -> list[list[dict[str, Any]] | None]:
    """Start ``reader`` and take everything it queues, up to its end (None)."""
    reader.start()
    items: list[list[dict[str, Any]] | None] = []
    while not items or items[-1] is not None:
        items.append(reader.pages.get(timeout=JOIN_SECONDS))
    return items


def _nothing() -> None:
    pass


# ---------------------------------------------------------------------------------------------
# Reading every page
# ---------------------------------------------------------------------------------------------


def test_every_customer_arrives_page_by_page_then_the_end(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    uuids = _customers(chartmogul_conn, 450)
    reader = ListingReader(hook, _nothing)

    items = _run(reader)

    assert items[-1] is None
    pages = items[:-1]
    assert [len(page) for page in pages] == [200, 200, 50]  # type: ignore[arg-type]
    assert [c["uuid"] for page in pages for c in page] == uuids  # type: ignore[union-attr]
    assert reader.error is None
    assert reader.requests == _listing_requests(chartmogul_conn) == 3


def test_a_page_holds_the_customers_as_the_api_lists_them(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    customer = chartmogul_conn.add_customer(external_id="acct-1", email="a@example.com", custom={"seats": 3})

    items = _run(ListingReader(hook, _nothing))

    assert len(items) == 2 and items[1] is None
    (listed,) = items[0]  # type: ignore[misc]
    assert listed["uuid"] == customer["uuid"]
    assert listed["email"] == "a@example.com"
    assert listed["attributes"]["custom"] == {"seats": 3}


def test_an_empty_account_ends_after_one_request(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    reader = ListingReader(hook, _nothing)

    assert _run(reader) == [None]
    assert reader.requests == _listing_requests(chartmogul_conn) == 1
    assert reader.error is None


def test_the_first_page_is_handed_over_before_the_next_is_requested(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    _customers(chartmogul_conn, 450)
    seen: list[tuple[int, int]] = []
    reader: ListingReader

    ended = threading.Event()

    def notify() -> None:
        seen.append((reader.pages.qsize(), _listing_requests(chartmogul_conn)))
        if reader.seconds:  # set when the reading ends, before the last notify
            ended.set()

    reader = ListingReader(hook, notify)
    reader.start()
    assert ended.wait(JOIN_SECONDS), "the listing did not end"

    # Woken with the first page waiting while only its own request had been made.
    assert seen[0] == (1, 1)
    # And woken last with every page and the end waiting.
    assert seen[-1] == (4, 3)


def test_pages_are_read_in_a_daemon_thread_of_their_own(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    _customers(chartmogul_conn, 250)
    threads: list[threading.Thread] = []
    reader = ListingReader(hook, lambda: threads.append(threading.current_thread()))

    _run(reader)

    assert threads
    assert all(t is not threading.main_thread() for t in threads)
    assert {t.name for t in threads} == {"chartmogul-listing"}
    assert all(t.daemon for t in threads)


def test_the_reading_time_is_measured(chartmogul_conn: ChartMogulServer, hook: ChartMogulHook) -> None:
    _customers(chartmogul_conn, 250)
    chartmogul_conn.configure(latency=0.1)
    reader = ListingReader(hook, _nothing)

    _run(reader)

    # Two pages, each answered after at least 0.1 s.
    assert 0.2 <= reader.seconds < JOIN_SECONDS


# ---------------------------------------------------------------------------------------------
# Stopping early
# ---------------------------------------------------------------------------------------------


def test_a_reader_stopped_before_it_starts_requests_nothing(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    _customers(chartmogul_conn, 10)
    reader = ListingReader(hook, _nothing)
    reader.stop()

    assert _run(reader) == [None]
    assert _listing_requests(chartmogul_conn) == 0
    assert reader.requests == 0
    assert reader.error is None


def test_a_stop_requests_no_further_page(chartmogul_conn: ChartMogulServer, hook: ChartMogulHook) -> None:
    uuids = _customers(chartmogul_conn, 1000)  # five pages
    reader: ListingReader

    def stop_at_the_first_page() -> None:
        reader.stop()

    reader = ListingReader(hook, stop_at_the_first_page)
    items = _run(reader)

    # The first page is handed over; the stop came while the second was being requested, which
    # still ends; no third is requested.
    assert [c["uuid"] for c in items[0]] == uuids[:200]  # type: ignore[union-attr]
    assert items[-1] is None
    assert _listing_requests(chartmogul_conn) == 2
    assert reader.error is None


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_a_refused_key_is_kept_for_the_main_thread(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_server, api_key="sk_test_not_a_known_key_0000_SECRET"),
    )
    notified: list[bool] = []
    woken = threading.Event()

    def wake() -> None:
        notified.append(reader.pages.empty())
        woken.set()

    with ChartMogulHook() as hook:
        reader = ListingReader(hook, wake)
        reader.start()
        # The queue is read only once the reader has woken the main thread: reading it earlier would
        # race the check of what the wake-up found waiting.
        assert woken.wait(JOIN_SECONDS)
        assert reader.pages.get(timeout=JOIN_SECONDS) is None

    assert isinstance(reader.error, ChartMogulAuthError)
    assert reader.error.status == 401
    assert notified == [False], "the main thread is woken once, with the end waiting"


def test_an_error_after_some_pages_keeps_the_pages_already_handed_over(
    chartmogul_conn: ChartMogulServer,
) -> None:
    uuids = _customers(chartmogul_conn, 450)
    reader: ListingReader
    pages_seen = 0

    def fail_the_next_page() -> None:
        nonlocal pages_seen
        pages_seen += 1
        if pages_seen == 1:  # the first page is waiting: the next request gets a 500
            chartmogul_conn.configure(faults={"500": 1.0})

    with ChartMogulHook(max_retries=0) as hook:
        reader = ListingReader(hook, fail_the_next_page)
        items = _run(reader)

    assert [c["uuid"] for c in items[0]] == uuids[:200]  # type: ignore[union-attr]
    assert items[1:] == [None]
    assert isinstance(reader.error, ChartMogulAPIError)
    assert not isinstance(reader.error, ChartMogulFatalError)
    assert reader.error.status == 500
    assert reader.requests == 2


def test_a_cancelled_hook_sends_nothing_and_the_cancellation_is_kept(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook
) -> None:
    _customers(chartmogul_conn, 10)
    hook.cancel("the task was stopped")
    reader = ListingReader(hook, _nothing)

    assert _run(reader) == [None]
    assert isinstance(reader.error, ChartMogulCancelledError)
    assert "the task was stopped" in str(reader.error)
    assert _listing_requests(chartmogul_conn) == 0


def test_an_unexpected_error_while_reading_is_kept_too(
    chartmogul_conn: ChartMogulServer, hook: ChartMogulHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    _customers(chartmogul_conn, 10)
    original: Callable[..., Any] = hook.request

    def broken(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise RuntimeError("a bug while reading a page")

    monkeypatch.setattr(hook, "request", broken)
    reader = ListingReader(hook, _nothing)

    assert _run(reader) == [None]
    assert isinstance(reader.error, RuntimeError)
    assert str(reader.error) == "a bug while reading a page"
