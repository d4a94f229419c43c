"""Phase one of ``mode="mirror"``: the whole listing and the whole input are read before the first
write, so that the plan's clears are counted and judged by the guards first
(docs/running-every-day.md, "Mirror").

The input is kept in a private SQLite database (like the customer index: memory stays flat for an
account of 10^6 customers, docs/large-accounts.md), the customers records match are marked in the
index, and phase two is an ordinary sync of the kept input followed by one clearing record (a
DELETE of the managed keys it holds) for each customer of the listing that holds a managed key and
that no record matched.
"""

from __future__ import annotations

import itertools
import json
import logging
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.attributes import type_of_stored_value
from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulCancelledError,
    ChartMogulFatalError,
    ChartMogulValidationError,
)
from airflow_provider_chartmogul.push.guards import CLEAR_SAMPLE_SIZE, ClearPlan, refusal
from airflow_provider_chartmogul.push.index import CACHE_KIB, CustomerIndex
from airflow_provider_chartmogul.push.plan import ObservedTypes
from airflow_provider_chartmogul.push.records import CustomerRecord, parse_record
from airflow_provider_chartmogul.push.sql_rows import RejectedInput

if TYPE_CHECKING:
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.push.options import PushOptions
    from airflow_provider_chartmogul.push.report import RunReport

_PAGE = 200  # customers indexed per transaction
log = logging.getLogger(__name__)


class PlanRefused(Exception):
    """A guard refused the mirror's plan; nothing was sent. ``report`` holds the plan's summary
    (``mirror``) and a sample of its clears."""

    def __init__(self, why: str, report: RunReport) -> None:
        super().__init__(f"The mirror's plan was refused, nothing was sent: {why}")
        self.report = report


class MirrorPlan:
    """Reads the listing and the input, counts the clears and checks the guards.

    :param stopped: why the run was stopped, or None (polled between pages and records).
    """

    def __init__(
        self,
        hook: ChartMogulHook,
        options: PushOptions,
        observed: ObservedTypes,
        stopped: Callable[[], str | None],
    ) -> None:
        self.hook = hook
        self.options = options
        self.observed = observed
        self._stopped = stopped
        self.index = CustomerIndex(keep_state=True)
        self.listing_requests = 0
        self.summary: ClearPlan | None = None
        self.refused: str | None = None  # why a guard refuses the plan
        self._kept = sqlite3.connect("", check_same_thread=False, isolation_level=None)
        self._kept.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._kept.execute("CREATE TABLE item (position INTEGER PRIMARY KEY, item BLOB NOT NULL)")
        # Matched customers whose record clears a managed key they hold (a NULL), with those keys.
        self._kept.execute("CREATE TABLE nulled (uuid TEXT PRIMARY KEY, keys TEXT NOT NULL) WITHOUT ROWID")

    def close(self) -> dict[str, Any] | None:
        """Drop the kept input and the index; the plan's summary for the report."""
        self.index.close()
        self._kept.close()
        if self.summary is None:
            return None
        return {**self.summary.as_dict(), "refused": self.refused, "listing_requests": self.listing_requests}

    def prepare(self, items: Iterable[Any]) -> Iterator[Any]:
        """Phase one; then the items phase two runs: the input as read, then the clears.

        A plan a guard refuses says why in :attr:`refused`; the caller sends nothing then (a dry run
        shows the plan and the reason).
        """
        self._read_listing()
        records, managed_values, managed = self._read_input(items)
        keys = sorted(self.options.managed_keys if self.options.managed_keys is not None else managed)
        holders = self.index.holders(keys)
        clears = 0
        shown: list[dict[str, Any]] = []
        nulled = (
            (uuid, json.loads(held)) for uuid, held in self._kept.execute("SELECT uuid, keys FROM nulled")
        )
        unlisted = ((uuid, sorted(held)) for uuid, held in self.index.unmatched_holders(keys))
        for uuid, cleared in itertools.chain(nulled, unlisted):
            clears += 1
            if len(shown) < CLEAR_SAMPLE_SIZE:
                shown.append({"customer_uuid": uuid, "keys": cleared})
        self.summary = ClearPlan(holders, clears, records, managed_values, shown)
        self.refused = refusal(
            self.summary,
            max_clear_fraction=self.options.max_clear_fraction,
            allow_empty_source=self.options.allow_empty_source,
        )
        log.info(
            "Mirror plan: %d customers listed, %d records read; managed keys %s; clears on %d of the "
            "%d customers holding them%s",
            self.index.customers,
            records,
            ", ".join(keys) or "none",
            clears,
            holders,
            f" (refused: {self.refused})" if self.refused else "",
        )
        return self._phase_two(keys)

    def _read_listing(self) -> None:
        def count() -> None:
            self.listing_requests += 1

        page: list[dict[str, Any]] = []
        for customer in self.hook.iter_customers(on_page=count):
            page.append(customer)
            if len(page) >= _PAGE:
                self._index(page)
                page = []
        self._index(page)

    def _index(self, page: list[dict[str, Any]]) -> None:
        if self._stopped() is not None:
            raise _Stopped("the run was stopped")
        self.index.add(page)
        for customer in page:
            self.observed.observe((customer.get("attributes") or {}).get("custom") or {})

    def _read_input(self, items: Iterable[Any]) -> tuple[int, int, set[str]]:
        records = managed_values = 0
        managed: set[str] = set()
        wanted = None if self.options.managed_keys is None else frozenset(self.options.managed_keys)
        self._kept.execute("BEGIN")
        for position, item in enumerate(items):
            if position % _PAGE == 0 and self._stopped() is not None:
                raise _Stopped("the run was stopped")
            records += 1
            record = self._parsed(item, position)
            # Phase two takes the parsed record as it is (checked once); an item that is not one
            # is kept as read, to be reported with its reason.
            kept = item if record is None else record
            self._kept.execute("INSERT INTO item VALUES (?, ?)", (position, pickle.dumps(kept)))
            if record is None:
                continue
            nulls = []
            for attribute in record.custom:
                if wanted is None or attribute.key in wanted:
                    managed.add(attribute.key)
                    managed_values += attribute.value is not None
                    if attribute.value is None:
                        nulls.append(attribute.key)
            matches = self._match(record)
            for uuid in matches:
                self.index.mark_matched(uuid)
            if len(matches) == 1:
                held = [key for key in nulls if key in (self.index.state(matches[0]) or {})]
                if held:
                    self._kept.execute(
                        "INSERT OR IGNORE INTO nulled VALUES (?, ?)", (matches[0], json.dumps(held))
                    )
        self._kept.execute("COMMIT")
        return records, managed_values, managed

    def _parsed(self, item: Any, position: int) -> CustomerRecord | None:
        """The record (phase two reports the items that are none, with their reasons)."""
        if isinstance(item, RejectedInput):
            return None
        try:
            return parse_record(item, index=position, default_source=self.options.source, allow_clear=True)
        except ChartMogulValidationError:
            return None

    def _match(self, record: CustomerRecord) -> list[str]:
        """The customers ``record`` may mean: all of them when it matches several (phase two
        reports it as ambiguous, and none of them is cleared)."""
        if record.customer_uuid is not None:
            return [record.customer_uuid]
        if record.email is not None:
            return self.index.by_email(record.email)
        return self.index.by_external_id(str(record.external_id), record.data_source_uuid)

    def _phase_two(self, keys: list[str]) -> Iterator[Any]:
        """The kept input (parsed records, and the items that are none), then the clears."""
        for (item,) in self._kept.execute("SELECT item FROM item ORDER BY position"):
            yield pickle.loads(item)  # written by this run, a moment ago
        for uuid, held in self.index.unmatched_holders(keys):
            yield {
                "customer_uuid": uuid,
                "custom": [
                    {"type": self._type(key, value), "key": key, "value": None} for key, value in held.items()
                ],
            }

    def _type(self, key: str, value: Any) -> str:
        return self.observed.get(key) or type_of_stored_value(value) or "String"


class _Stopped(ChartMogulCancelledError):
    """The run was stopped during phase one (the pusher reports it as any stop)."""


def stopped_by(error: ChartMogulAPIError) -> ChartMogulFatalError | None:
    """The error that stops a run whose phase one failed with ``error`` (None: a stop, or a
    listing that failed without a fatal answer)."""
    if isinstance(error, ChartMogulFatalError) and not isinstance(error, ChartMogulCancelledError):
        return error
    return None
