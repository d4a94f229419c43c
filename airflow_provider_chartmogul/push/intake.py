"""How records enter a run: whom each is for, and how customers are looked up.

Customers named by ``customer_uuid`` are known at once. Others are looked up one by one (a
request each) or found in the customer listing, read in a thread of its own while records are
written (:mod:`airflow_provider_chartmogul.push.listing`); with ``customer_lookup="auto"`` records
that need a lookup are held until more than ``listing_threshold`` of them arrive (then the
listing is read) or the input ends (then each is looked up). Which record may be written when is
:mod:`airflow_provider_chartmogul.push.schedule`'s business.
"""

from __future__ import annotations

import logging
import queue
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_chartmogul.client.identifiers import data_source_uuids, external_ids
from airflow_provider_chartmogul.exceptions import ChartMogulCancelledError, ChartMogulFatalError
from airflow_provider_chartmogul.push.listing import ListingReader
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import CustomerRecord
from airflow_provider_chartmogul.push.report import Outcome
from airflow_provider_chartmogul.push.resolve import (
    CustomerDirectory,
    CustomerResolver,
    ResolutionError,
)
from airflow_provider_chartmogul.push.schedule import CustomerOrder, Entry

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.push.run import PushOptions

Strategy = Literal["undecided", "per_customer", "listing"]


class CustomerIntake:
    """The pusher's part that admits records and indexes listing pages (main thread only)."""

    hook: ChartMogulHook
    options: PushOptions
    log: logging.Logger
    observed: ObservedTypes
    resolver: CustomerResolver
    order: CustomerOrder
    _live: dict[int, Entry]
    _held: list[Entry]
    _lookups_needed: int
    _strategy: Strategy
    _listing: ListingReader | None
    _listed: bool
    _waiting_ids: dict[tuple[str, str], list[Entry]]

    def _submit_now(self, kind: str, entry: Entry) -> None:
        raise NotImplementedError

    def _done(self, entry: Entry, outcome: Outcome) -> None:
        raise NotImplementedError

    def _set_abort(self, reason: str, error: ChartMogulFatalError | None) -> None:
        raise NotImplementedError

    def _notify(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _reason(exc: ChartMogulFatalError) -> str:
        return exc.api_message if isinstance(exc, ChartMogulCancelledError) else str(exc)

    def _known(self, uuid: str) -> bool:
        """Whether every identifier of customer ``uuid`` is known (no listing read, or indexed)."""
        directory = self.resolver.directory
        return self._listed or directory is None or uuid in directory

    def _admit(self, record: CustomerRecord) -> None:
        entry = Entry(record)
        self._live[record.index] = entry
        needs_identity = record.customer_uuid is None
        if not needs_identity and not self.options.needs_state:
            self.order.place(entry, record.customer_uuid)  # type: ignore[arg-type]
            return
        self._lookups_needed += 1
        if self._strategy == "undecided":
            self._held.append(entry)
            if needs_identity:
                self.order.hold(entry)
            else:
                entry.waits = "decision"
                self.order.place(entry, record.customer_uuid)  # type: ignore[arg-type]
            if self._lookups_needed > self.options.listing_threshold:
                self._start_listing(f"more than {self.options.listing_threshold} customers to look up")
        elif self._strategy == "per_customer":
            self._admit_per_customer(entry)
        else:
            self._admit_listed(entry)

    def _admit_per_customer(self, entry: Entry) -> None:
        record = entry.record
        entry.waits = None
        if record.customer_uuid is not None:  # its state is read by the write
            if entry.uuid is None:
                self.order.place(entry, record.customer_uuid)
            else:
                self.order.touch(entry.uuid)
            return
        if not entry.unresolved:
            self.order.hold(entry)
        self._submit_now("lookup", entry)

    def _admit_listed(self, entry: Entry) -> None:
        record = entry.record
        directory = self.resolver.directory
        assert directory is not None
        if record.customer_uuid is not None:
            entry.waits = "listing" if self.options.needs_state else None
            entry.listed = self.options.needs_state
            if entry.uuid is None:
                self.order.place(entry, record.customer_uuid)
            else:
                self.order.touch(entry.uuid)
            return
        candidates = directory.candidates(record)
        # An external id is unique within a data source, so one match there is final; an email or
        # a bare external id may match another customer on a later page.
        if self._listed or (record.data_source_uuid is not None and candidates):
            self._resolve_listed(entry)
            return
        if entry.unresolved:
            self.order.relist(entry)
        else:
            self.order.hold(entry, until_listed=True)
        for uuid in candidates:
            self.order.claim(entry, uuid)
        key = (
            ("email", record.email.lower())
            if record.email is not None
            else ("external_id", str(record.external_id))
        )
        self._waiting_ids.setdefault(key, []).append(entry)

    def _resolve_listed(self, entry: Entry) -> None:
        directory = self.resolver.directory
        assert directory is not None
        try:
            uuid = directory.find(entry.record)
        except ResolutionError as exc:
            self.order.drop(entry)
            record = entry.record
            self._done(
                entry, Outcome.failure("resolution", record.label, record, str(exc), http_status=exc.status)
            )
            return
        entry.waits = "listing" if self.options.needs_state else None
        entry.listed = self.options.needs_state
        self.order.place(entry, uuid)

    def _decide_per_customer(self) -> None:
        if self._strategy != "undecided":
            return
        self._strategy = "per_customer"
        if self._held:
            self.log.info("Looking up %d customers one by one (per-customer lookups)", len(self._held))
        held, self._held = self._held, []
        for entry in held:
            self._admit_per_customer(entry)

    def _start_listing(self, why: str) -> None:
        self._strategy = "listing"
        self.resolver.directory = CustomerDirectory(keep_state=self.options.needs_state)
        self.log.info("Reading the customer listing (%s), writing as its pages arrive", why)
        self._listing = ListingReader(self.hook, self._notify)
        self._listing.start()
        held, self._held = self._held, []
        for entry in held:
            self._admit_listed(entry)

    def _take_pages(self) -> None:
        listing = self._listing
        if listing is None or self._listed:
            return
        directory = self.resolver.directory
        assert directory is not None
        while True:
            try:
                page = listing.pages.get_nowait()
            except queue.Empty:
                return
            if page is None:
                break
            for customer in page:
                self.observed.observe((customer.get("attributes") or {}).get("custom") or {})
                directory.add(customer)
                uuid = customer["uuid"]
                self._match_waiting(customer, uuid)
                self.order.touch(uuid)
        directory.requests = listing.requests
        if listing.error is not None:
            error = listing.error
            if isinstance(error, ChartMogulFatalError):
                self._set_abort(
                    self._reason(error), None if isinstance(error, ChartMogulCancelledError) else error
                )
            else:
                self._set_abort(f"the customer listing failed: {error}", None)
            return
        self._listed = True
        self.log.info(
            "Indexed %d ChartMogul customers from the customer listing: %d requests in %.1f s",
            directory.customers,
            listing.requests,
            listing.seconds,
        )
        waiting = {id(e): e for entries in self._waiting_ids.values() for e in entries if e.unresolved}
        self._waiting_ids.clear()
        for entry in sorted(waiting.values(), key=lambda e: e.index):
            self._resolve_listed(entry)
        self.order.touch_all()

    def _match_waiting(self, customer: dict[str, Any], uuid: str) -> None:
        if not self._waiting_ids:
            return
        keys = [("external_id", e) for e in external_ids(customer)]
        if customer.get("email"):
            keys.append(("email", str(customer["email"]).lower()))
        sources = data_source_uuids(customer)
        for key in keys:
            for entry in self._waiting_ids.get(key, ()):
                if not entry.unresolved:
                    continue
                ds = entry.record.data_source_uuid
                if key[0] == "external_id" and ds is not None:
                    if ds in sources:
                        entry.waits = "listing" if self.options.needs_state else None
                        entry.listed = self.options.needs_state
                        self.order.place(entry, uuid)
                else:
                    self.order.claim(entry, uuid)
