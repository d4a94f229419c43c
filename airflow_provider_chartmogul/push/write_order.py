"""Per-customer order: which records may be written now, so that one customer's writes follow input
order (the rule: README, "Order of writes"). Bookkeeping only, no I/O or threads: the pusher's
main thread tells it what it learns and asks which records may start."""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from airflow_provider_chartmogul.push.records import CustomerRecord


@dataclass(eq=False, slots=True)
class Entry:
    """One record on its way through the run.

    :param waits: what the write needs besides its turn: ``"listing"`` (the customer's state,
        from the listing), ``"decision"`` (the choice between lookups and the listing), or None.
    :param listed: the customer's state comes from the listing (not a read of its own).
    """

    record: CustomerRecord
    uuid: str | None = None
    waits: str | None = None
    listed: bool = False
    running: bool = False
    unresolved: bool = False
    claims: list[str] = field(default_factory=list)

    @property
    def index(self) -> int:
        return self.record.index


class _MinIndex:
    """A set of record indices with its smallest member (a heap with lazy deletion)."""

    __slots__ = ("_heap", "_members")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._members: set[int] = set()

    def add(self, index: int) -> None:
        if index not in self._members:
            self._members.add(index)
            heapq.heappush(self._heap, index)

    def discard(self, index: int) -> None:
        self._members.discard(index)

    def min(self) -> float:
        heap = self._heap
        while heap and heap[0] not in self._members:
            heapq.heappop(heap)
        return heap[0] if heap else math.inf

    def __len__(self) -> int:
        return len(self._members)


class CustomerOrder:
    """Which records may start, given what is known about whom each one is for.

    :param indexed: whether the listing has indexed a customer (or no listing is being read, so
        that every customer counts as known by its identifiers).
    """

    def __init__(self, indexed: Callable[[str], bool]) -> None:
        self._indexed = indexed
        self._chains: dict[str, list[Entry]] = {}
        self._anything = _MinIndex()  # unknown, and could be any customer (a lookup in flight)
        self._unlisted = _MinIndex()  # unknown until the listing is read: any customer not indexed
        self._claims: dict[str, _MinIndex] = {}  # uuid -> unknown records that match it so far
        self._dirty: set[str] = set()
        self._blocked: set[str] = set()  # chains whose head waits for an unknown record
        self._unblocked = False

    # ---- what the main thread learns ----------------------------------------------------------------

    def hold(self, entry: Entry, *, until_listed: bool = False) -> None:
        """``entry``'s customer is not known yet: it could be anyone (``until_listed``: anyone the
        listing has not indexed yet, and the customers :meth:`claim` names)."""
        entry.unresolved = True
        (self._unlisted if until_listed else self._anything).add(entry.index)

    def relist(self, entry: Entry) -> None:
        """A held ``entry`` now waits for the listing (it began) instead of a lookup of its own."""
        self._anything.discard(entry.index)
        self._unlisted.add(entry.index)
        self._unblocked = True

    def claim(self, entry: Entry, uuid: str) -> None:
        """The listing indexed ``uuid``, and the unknown ``entry`` matches it (so far)."""
        self._claims.setdefault(uuid, _MinIndex()).add(entry.index)
        entry.claims.append(uuid)

    def place(self, entry: Entry, uuid: str) -> None:
        """``entry`` is for customer ``uuid``: it joins that customer's queue in input order."""
        if entry.unresolved:
            self._forget(entry)
        entry.uuid = uuid
        chain = self._chains.setdefault(uuid, [])
        if not chain or chain[-1].index < entry.index:
            chain.append(entry)
        else:
            bisect.insort(chain, entry, key=lambda e: e.index)
        self._dirty.add(uuid)

    def drop(self, entry: Entry) -> None:
        """An unknown ``entry`` is finished without a customer (no match, several, stopped)."""
        if entry.unresolved:
            self._forget(entry)

    def done(self, entry: Entry) -> None:
        """``entry``'s write is finished: the next record for its customer may go."""
        assert entry.uuid is not None
        chain = self._chains[entry.uuid]
        chain.remove(entry)
        if chain:
            self._dirty.add(entry.uuid)
        else:
            del self._chains[entry.uuid]
            self._blocked.discard(entry.uuid)

    def touch(self, uuid: str) -> None:
        """Something ``uuid``'s first waiting record needed may have arrived (indexed, ready)."""
        if uuid in self._chains:
            self._dirty.add(uuid)

    def has_runnable(self) -> bool:
        """Whether :meth:`runnable` may have records to start (something changed since it ran)."""
        return bool(self._dirty) or self._unblocked

    def touch_all(self) -> None:
        self._dirty.update(self._chains)

    def _forget(self, entry: Entry) -> None:
        entry.unresolved = False
        self._anything.discard(entry.index)
        self._unlisted.discard(entry.index)
        for uuid in entry.claims:
            claims = self._claims.get(uuid)
            if claims is not None:
                claims.discard(entry.index)
                if not claims:
                    del self._claims[uuid]
        entry.claims.clear()
        self._unblocked = True

    # ---- what may start -----------------------------------------------------------------------------

    def runnable(self) -> list[Entry]:
        """Records that may start now, marked running, in input order."""
        candidates = self._dirty
        if self._unblocked:
            candidates |= self._blocked
            self._unblocked = False
        self._dirty = set()
        if not candidates:
            return []
        anything, unlisted = self._anything.min(), self._unlisted.min()
        started = []
        for uuid in candidates:
            chain = self._chains.get(uuid)
            if not chain:
                continue
            head = chain[0]
            indexed = self._indexed(uuid)
            if head.running or head.waits == "decision" or (head.waits == "listing" and not indexed):
                continue
            if indexed:
                claims = self._claims.get(uuid)
                bound = min(anything, claims.min() if claims is not None else math.inf)
            else:
                bound = min(anything, unlisted)
            if head.index > bound:
                self._blocked.add(uuid)
                continue
            self._blocked.discard(uuid)
            head.running = True
            started.append(head)
        started.sort(key=lambda e: e.index)
        return started
