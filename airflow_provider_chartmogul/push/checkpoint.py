"""Checkpoint: what a push has answered, kept across the tries of one task instance.

On Airflow 3.3+ the progress lives in the task state store (``context["task_state_store"]``,
AIP-103), which Airflow keeps per task instance across its tries. Without a store (older
Airflow, a test calling ``execute`` directly) a checkpoint does nothing and every try sends
everything again, which is safe: writes are upserts. The format, the limits and what a retry
re-sends are in docs/running-every-day.md.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

KEY = "chartmogul_push_progress"
FORMAT = 1
#: Records whose digest tells one input from another.
HEAD = 100
#: Ranges of answered records kept; with more gaps (failures) the records after the last kept
#: range are re-sent on a retry. 1,000 ranges stay under 30 KB of JSON, well under the store's
#: default ``max_value_storage_bytes`` (64 KB).
MAX_RANGES = 1000
#: Seconds between writes (``PushOptions.checkpoint_interval``): what a SIGKILL can lose.
DEFAULT_INTERVAL = 0.5


class StateStore(Protocol):
    """What a checkpoint needs of Airflow's ``TaskStateStoreAccessor``."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class Progress:
    """The records answered, as sorted, disjoint, half-open ranges of input positions.

    ``mark`` is O(log n) to find a record's place (n: ranges, at most ``2 * MAX_RANGES``); records
    finished a little out of order join the last range as the gap before them closes.
    """

    def __init__(self, ranges: Iterable[Sequence[int]] = ()) -> None:
        """:raises ValueError: when ``ranges`` is not pairs of whole numbers ``0 <= start < end``."""
        self._starts: list[int] = []
        self._ends: list[int] = []
        pairs = [tuple(pair) for pair in ranges]
        if not all(
            len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
            and 0 <= pair[0] < pair[1]
            for pair in pairs
        ):
            raise ValueError(f"not ranges of record positions: {pairs[:3]!r}...")
        for start, end in sorted(pairs):
            if self._ends and start <= self._ends[-1]:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    @property
    def watermark(self) -> int:
        """Every record before this position was answered."""
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    @property
    def answered(self) -> int:
        return sum(end - start for start, end in zip(self._starts, self._ends, strict=True))

    def is_done(self, index: int) -> bool:
        position = bisect.bisect_right(self._starts, index) - 1
        return position >= 0 and index < self._ends[position]

    def mark(self, index: int) -> None:
        position = bisect.bisect_right(self._starts, index) - 1
        if position >= 0 and index < self._ends[position]:
            return
        if position >= 0 and self._ends[position] == index:
            self._ends[position] = index + 1
            self._merge_after(position)
        elif position + 1 < len(self._starts) and self._starts[position + 1] == index + 1:
            self._starts[position + 1] = index
        else:
            self._starts.insert(position + 1, index)
            self._ends.insert(position + 1, index + 1)
            if len(self._starts) > 2 * MAX_RANGES:
                del self._starts[MAX_RANGES:], self._ends[MAX_RANGES:]

    def ranges(self) -> list[list[int]]:
        """At most :data:`MAX_RANGES` ranges, the first ones (the rest is forgotten: re-sent)."""
        return [[s, e] for s, e in itertools.islice(zip(self._starts, self._ends, strict=True), MAX_RANGES)]

    def _merge_after(self, position: int) -> None:
        following = position + 1
        if following < len(self._starts) and self._starts[following] <= self._ends[position]:
            self._ends[position] = max(self._ends[position], self._ends[following])
            del self._starts[following], self._ends[following]


def input_digest(head: Sequence[Any]) -> str:
    """A digest of the first records of an input, to tell a retry's input from another one."""
    digest = hashlib.sha256()
    for record in head:
        digest.update(json.dumps(record, sort_keys=True, default=repr).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class Resumed:
    """How this try started: from an earlier try's progress, or over (and why)."""

    from_try: int | None
    watermark: int
    answered_before: int
    started_over: str | None = None

    def as_dict(self, done_earlier: int) -> dict[str, Any]:
        if self.started_over is not None:
            return {"started_over": self.started_over}
        return {"from_try": self.from_try, "watermark": self.watermark, "done_earlier": done_earlier}


class Checkpoint:
    """A push's progress in the task state store: ``watch`` the input, ask ``should_skip`` for
    each record, ``mark_done`` each one answered, ``flush`` often (it writes at most once per
    ``interval``), ``flush(force=True)`` when the run stops, ``finish`` when the task succeeds.

    All calls from one thread (the run's main loop): Airflow's store talks to the supervisor.

    :param store: the task state store, or None for a checkpoint that does nothing.
    :param try_number: this try's number, written with the progress.
    :param interval: seconds between writes.
    """

    def __init__(
        self,
        store: StateStore | None,
        *,
        try_number: int | None = None,
        interval: float = DEFAULT_INTERVAL,
        log: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.try_number = try_number
        self.interval = interval
        self.log = log or logging.getLogger(__name__)
        self.progress = Progress()
        self.resumed: Resumed | None = None
        self.done_earlier = 0
        self._earlier: dict[str, Any] | None = None
        self._digest: str | None = None
        self._head = 0
        self._count: int | None = None
        self._dirty = False
        self._written_at = -math.inf
        self._failed_writes = 0

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any] | None, *, enabled: bool = True, **kwargs: Any
    ) -> Checkpoint:
        """The checkpoint of the running task instance: with its store on Airflow 3.3+, one that
        does nothing when ``enabled`` is false or there is no store."""
        store = context.get("task_state_store") if enabled and isinstance(context, Mapping) else None
        ti = context.get("ti") if isinstance(context, Mapping) else None
        return cls(store, try_number=getattr(ti, "try_number", None), **kwargs)

    @property
    def active(self) -> bool:
        return self.store is not None

    # ---- reading the input --------------------------------------------------------------------

    def watch(self, items: Iterable[Any]) -> Iterable[Any]:
        """``items`` as they are, after their first records were compared with the earlier try's.

        A list (anything with a length) is handed back itself; any other iterable as an iterator
        that yields the records it had to read ahead first."""
        if not self.active:
            return items
        if isinstance(items, Sequence):
            self._count = len(items)
            self._start(list(items[:HEAD]))
            return items
        iterator = iter(items)
        head = list(itertools.islice(iterator, HEAD))
        self._start(head)
        return self._counted(head, iterator)

    def _counted(self, head: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
        """``head`` then ``rest``, counted; closing it closes ``rest`` (a SQL cursor is released)."""
        try:
            count = 0
            for count, item in enumerate(itertools.chain(head, rest), start=1):  # noqa: B007
                yield item
            self._count = count
            self._dirty = True
        finally:
            close = getattr(rest, "close", None)
            if callable(close):
                close()

    def _start(self, head: list[Any]) -> None:
        self._digest, self._head = input_digest(head), len(head)
        try:
            earlier = self.store.get(KEY, None) if self.store is not None else None
        except Exception as exc:  # the store is an aid: a run without it re-sends, safely
            self.log.warning("Could not read the earlier tries' progress (%s): starting from the top", exc)
            earlier = None
        if not isinstance(earlier, Mapping):
            return
        why = self._why_not_resume(earlier)
        if why is not None:
            self.resumed = Resumed(earlier.get("try"), 0, 0, started_over=why)
            self.log.warning("Not resuming the earlier try's progress: %s; every record is sent again", why)
            self._dirty = True  # the earlier progress is replaced at the first flush
            return
        self.progress = Progress(earlier.get("done") or [])
        self._earlier = dict(earlier)
        self.resumed = Resumed(earlier.get("try"), self.progress.watermark, self.progress.answered)
        self.log.info(
            "Resuming after try %s: %d records were answered then (all before record #%d), and are "
            "not sent again",
            earlier.get("try"),
            self.progress.answered,
            self.progress.watermark,
        )

    def _why_not_resume(self, earlier: Mapping[str, Any]) -> str | None:
        if earlier.get("format") != FORMAT:
            return f"the progress was written in another format ({earlier.get('format')!r})"
        count = earlier.get("count")
        if count is not None and self._count is not None and count != self._count:
            return f"the input has {self._count} records, the earlier try's had {count}"
        if earlier.get("head") != self._head or earlier.get("digest") != self._digest:
            return "the input's first records differ from the earlier try's"
        try:
            Progress(earlier.get("done") or [])
        except (TypeError, ValueError):
            return "the progress is unreadable"
        return None

    # ---- the run ------------------------------------------------------------------------------

    def should_skip(self, index: int) -> bool:
        """Whether record ``index`` was answered by an earlier try (counted in ``done_earlier``)."""
        if self._earlier is None or not self.progress.is_done(index):
            return False
        self.done_earlier += 1
        return True

    def mark_done(self, index: int) -> None:
        """Record ``index`` is answered (written, or nothing to write): a retry need not send it."""
        if self.active:
            self.progress.mark(index)
            self._dirty = True

    def flush(self, now: float, *, force: bool = False) -> bool:
        """Write the progress when it changed and ``interval`` passed since the last write (or
        ``force``); whether it was written. A failed write is logged, never raised."""
        if not (self.active and self._dirty) or (not force and now - self._written_at < self.interval):
            return False
        value = self.value()
        try:
            self.store.set(KEY, value)  # type: ignore[union-attr]
        except Exception as exc:
            self._failed_writes += 1
            if self._failed_writes == 1:
                self.log.warning("Could not keep the run's progress in the task state store: %s", exc)
            return False
        self._dirty, self._written_at = False, now
        return True

    def finish(self) -> None:
        """The task succeeded: forget the progress, so that a later run of it (cleared) sends all."""
        if not self.active:
            return
        try:
            self.store.delete(KEY)  # type: ignore[union-attr]
        except Exception as exc:
            self.log.warning("Could not clear the run's progress from the task state store: %s", exc)
        self._dirty = False

    def value(self) -> dict[str, Any]:
        """What is written: small JSON, whatever the input's size."""
        return {
            "format": FORMAT,
            "try": self.try_number,
            "digest": self._digest,
            "head": self._head,
            "count": self._count,
            "watermark": self.progress.watermark,
            "done": self.progress.ranges(),
        }

    def summary(self) -> dict[str, Any] | None:
        """For the report: where this try resumed from and how many records it skipped as done
        earlier, or why it started over; None when there was no earlier progress."""
        return None if self.resumed is None else self.resumed.as_dict(self.done_earlier)
