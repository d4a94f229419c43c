"""How records enter a run: whom each is for, and how customers are looked up.

Customers named by ``customer_uuid`` are known at once. Others are looked up one by one (a
request each) or found in the customer listing, read in a thread of its own while records are
written (:mod:`airflow_provider_chartmogul.push.listing`) and indexed
(:mod:`airflow_provider_chartmogul.push.index`); with ``customer_lookup="auto"`` records that need
a lookup are held until more than ``listing_threshold`` of them arrive (then the listing is read)
or the input ends (then each is looked up). Which record may be written when is
:mod:`airflow_provider_chartmogul.push.write_order`'s business.
"""

from __future__ import annotations

import gc
import logging
import queue
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_chartmogul.client.identifiers import data_source_uuids, external_ids
from airflow_provider_chartmogul.exceptions import ChartMogulCancelledError, ChartMogulFatalError
from airflow_provider_chartmogul.push.index import CustomerIndex
from airflow_provider_chartmogul.push.listing import ListingReader
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import CustomerRecord
from airflow_provider_chartmogul.push.report import LookupSummary, Outcome
from airflow_provider_chartmogul.push.resolve import ResolutionError, pick
from airflow_provider_chartmogul.push.write_order import CustomerOrder, Entry

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.push.options import PushOptions

Strategy = Literal["undecided", "per_customer", "listing"]
WaitKey = tuple[str, str]  # ("email", lower-cased) or ("external_id", as given)


class CustomerIntake:
    """Admits records and indexes the listing's pages (main thread only).

    :param submit_lookup: start a per-customer lookup of an entry's customer.
    :param finish: an entry ended without a write (no match, several, the listing failed...).
    :param abort: stop the run (why, and the fatal error if one caused it).
    :param notify: wake the main loop (called from the listing's thread).
    """

    def __init__(
        self,
        hook: ChartMogulHook,
        options: PushOptions,
        observed: ObservedTypes,
        *,
        submit_lookup: Callable[[Entry], None],
        finish: Callable[[Entry, Outcome], None],
        abort: Callable[[str, ChartMogulFatalError | None], None],
        notify: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.hook = hook
        self.options = options
        self.observed = observed
        self.log = log
        self._submit_lookup = submit_lookup
        self._finish = finish
        self._abort = abort
        self._notify = notify
        self.order = CustomerOrder(self.known)
        self.index: CustomerIndex | None = None
        self.listing: ListingReader | None = None
        self.listed = False  # the whole listing is indexed
        self.strategy: Strategy = "per_customer" if options.customer_lookup == "per_customer" else "undecided"
        self._held: list[Entry] = []  # waiting for the choice between lookups and the listing
        self._lookups_needed = 0
        self._waiting: dict[WaitKey, list[Entry]] = {}  # unresolved until the listing says whom
        self._thaw = False  # the heap was frozen for the listing: unfreeze it at close

    def start(self) -> None:
        """At the start of the run: read the listing now if ``customer_lookup="listing"``."""
        if self.options.customer_lookup == "listing" or self.options.mode == "mirror":
            self._start_listing(
                f"customer_lookup={self.options.customer_lookup!r}, mode={self.options.mode!r}"
            )

    def close(self) -> None:
        """Stop the listing and drop the index (at the end of the run: nothing is written after)."""
        if self.listing is not None:
            self.listing.stop()
        if self.index is not None:
            self.index.close()
        if self._thaw:
            self._thaw = False
            gc.unfreeze()

    def known(self, uuid: str) -> bool:
        """Whether every identifier of customer ``uuid`` is known (no listing read, or indexed)."""
        return self.listed or self.index is None or uuid in self.index

    def listed_state(self, uuid: str) -> dict[str, Any] | None:
        """Customer ``uuid``'s attributes as the listing showed them (or as last written)."""
        assert self.index is not None
        return self.index.state(uuid)

    def written(self, uuid: str, after: Mapping[str, Any]) -> None:
        """A listed customer's attributes after a write, for its next record."""
        if self.index is not None:
            self.index.set_state(uuid, after)

    def summary(self, per_customer_requests: int) -> LookupSummary:
        if self.index is not None:
            requests = (self.listing.requests if self.listing is not None else 0) + per_customer_requests
            return LookupSummary("listing", requests, self.index.customers)
        if per_customer_requests:
            return LookupSummary("per_customer", per_customer_requests)
        return LookupSummary()

    # ---- records ---------------------------------------------------------------------------------

    def admit(self, entry: Entry) -> None:
        """Take one record in: placed in its customer's queue, held, looked up, or finished (no
        customer matches it)."""
        listing = self.listing
        if listing is not None and not self.listed and not listing.pages.empty():
            # Pages that arrived while records were being read (the run reads many at once at
            # its start): indexed now, so that the writes they unblock start now.
            self.take_pages()
        record = entry.record
        needs_identity = record.customer_uuid is None
        if not needs_identity and not self.options.needs_state:
            self.order.place(entry, record.customer_uuid)  # type: ignore[arg-type]
            return
        self._lookups_needed += 1
        if self.strategy == "undecided":
            self._held.append(entry)
            if needs_identity:
                self.order.hold(entry)
            else:
                entry.waits = "decision"
                self.order.place(entry, record.customer_uuid)  # type: ignore[arg-type]
            if self._lookups_needed > self.options.listing_threshold:
                self._start_listing(f"more than {self.options.listing_threshold} customers to look up")
        elif self.strategy == "per_customer":
            self._admit_per_customer(entry)
        else:
            self._admit_listed(entry)

    def input_ended(self) -> None:
        """No more records (or too many waiting): held records are looked up one by one."""
        if self.strategy != "undecided":
            return
        self.strategy = "per_customer"
        if self._held:
            self.log.info("Looking up %d customers one by one (per-customer lookups)", len(self._held))
        held, self._held = self._held, []
        for entry in held:
            self._admit_per_customer(entry)

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
        self._submit_lookup(entry)

    def _found(self, entry: Entry, uuid: str) -> None:
        """``entry`` is for listed customer ``uuid``: its state comes from the index."""
        entry.waits = "listing" if self.options.needs_state else None
        entry.listed = self.options.needs_state
        self.order.place(entry, uuid)

    def _admit_listed(self, entry: Entry) -> None:
        record = entry.record
        assert self.index is not None
        if record.customer_uuid is not None:
            if entry.uuid is None:
                self._found(entry, record.customer_uuid)
            else:
                entry.waits = "listing" if self.options.needs_state else None
                entry.listed = self.options.needs_state
                self.order.touch(entry.uuid)
            return
        candidates = self._candidates(record)
        # An external id is unique within a data source, so one match there is final; an email or
        # a bare external id may match another customer on a later page.
        if self.listed or (record.data_source_uuid is not None and candidates):
            self._resolve_listed(entry, candidates)
            return
        if entry.unresolved:
            self.order.relist(entry)
        else:
            self.order.hold(entry, until_listed=True)
        for uuid in candidates:
            self.order.claim(entry, uuid)
        self._waiting.setdefault(_wait_key(record), []).append(entry)

    def _candidates(self, record: CustomerRecord) -> list[str]:
        assert self.index is not None
        if record.email is not None:
            return self.index.by_email(record.email)
        return self.index.by_external_id(str(record.external_id), record.data_source_uuid)

    def _resolve_listed(self, entry: Entry, candidates: list[str] | None = None) -> None:
        if candidates is None:
            candidates = self._candidates(entry.record)
        try:
            uuid = pick(entry.record, candidates)
        except ResolutionError as exc:
            self.order.drop(entry)
            record = entry.record
            self._finish(
                entry, Outcome.failure("resolution", record.label, record, str(exc), http_status=exc.status)
            )
            return
        self._found(entry, uuid)

    # ---- the listing -----------------------------------------------------------------------------

    def _start_listing(self, why: str) -> None:
        self.strategy = "listing"
        self.index = CustomerIndex(keep_state=self.options.needs_state)
        # The listing's pages pass through the heap between two threads, long enough for the
        # collector to move them to its oldest generation: every hundred pages or so that starts
        # a full collection of the whole heap (Airflow and the provider imported are 160,000
        # objects), a 0.1-0.3 s pause in which no request is sent (1 s of a 100k customers' sync
        # at 40/s). The objects alive now are taken out of its reach until the run ends (unless
        # someone froze them before us; then they stay frozen). Cyclic garbage alive now waits
        # until then too.
        self._thaw = gc.get_freeze_count() == 0
        gc.freeze()
        self.log.info("Reading the customer listing (%s), writing as its pages arrive", why)
        self.listing = ListingReader(self.hook, self._notify)
        self.listing.start()
        held, self._held = self._held, []
        for entry in held:
            self._admit_listed(entry)

    def take_pages(self) -> None:
        """Index the listing's pages read so far; at its end, resolve every record waiting for it."""
        listing, index = self.listing, self.index
        if listing is None or index is None or self.listed:
            return
        while True:
            try:
                page = listing.pages.get_nowait()
            except queue.Empty:
                return
            if page is None:
                break
            index.add(page)
            for customer in page:
                self.observed.observe((customer.get("attributes") or {}).get("custom") or {})
                uuid = customer["uuid"]
                if self._waiting:
                    self._match_waiting(customer, uuid)
                self.order.touch(uuid)
        if listing.error is not None:
            error = listing.error
            if isinstance(error, ChartMogulCancelledError):
                self._abort(error.api_message, None)
            elif isinstance(error, ChartMogulFatalError):
                self._abort(str(error), error)
            else:
                self._abort(f"the customer listing failed: {error}", None)
            return
        self.listed = True
        self.log.info(
            "Indexed %d ChartMogul customers from the customer listing: %d requests in %.1f s",
            index.customers,
            listing.requests,
            listing.seconds,
        )
        waiting = {id(e): e for entries in self._waiting.values() for e in entries if e.unresolved}
        self._waiting.clear()
        for entry in sorted(waiting.values(), key=lambda e: e.index):
            self._resolve_listed(entry)
        self.order.touch_all()

    def _match_waiting(self, customer: Mapping[str, Any], uuid: str) -> None:
        keys: list[WaitKey] = [("external_id", e) for e in external_ids(customer)]
        if customer.get("email"):
            keys.append(("email", str(customer["email"]).lower()))
        sources = data_source_uuids(customer)
        for key in keys:
            entries = self._waiting.get(key)
            if not entries:
                continue
            for entry in entries:
                if not entry.unresolved:
                    continue
                ds = entry.record.data_source_uuid
                if key[0] != "external_id" or ds is None:
                    self.order.claim(entry, uuid)
                elif ds in sources:
                    self._found(entry, uuid)
            # Resolved entries leave, so that what waits stays bounded by what is in flight.
            entries[:] = [entry for entry in entries if entry.unresolved]
            if not entries:
                del self._waiting[key]


def _wait_key(record: CustomerRecord) -> WaitKey:
    if record.email is not None:
        return ("email", record.email.lower())
    return ("external_id", str(record.external_id))
