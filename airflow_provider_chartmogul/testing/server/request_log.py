"""The request log: what each API request was and how it was answered, and the counters of stats()."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.testing.server.http import ApiRequest, parse_json
from airflow_provider_chartmogul.testing.server.replies import Reply
from airflow_provider_chartmogul.testing.server.settings import Settings
from airflow_provider_chartmogul.testing.server.trickle import Trickle

_BODY_FIELDS = frozenset({"body", "raw_body", "response_body"})
# Rejections by the limits are counted on their own, not as injected faults.
_LIMIT_REJECTIONS = frozenset({"rate_limit", "max_parallel"})


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request as the server saw it.

    ``query`` is ``dict[str, list[str]]``; ``path`` is raw (percent-encoded, no query);
    ``body`` is the parsed JSON or None (empty or unparsable); ``status`` is None when no answer
    was sent ("drop"/"slow"); ``started``/``ended`` are ``time.monotonic()`` at arrival and when
    the answer was ready (just before it is written; the record is in the log before the client
    can read the answer); ``api_key`` is the Basic-auth user name; ``headers`` have lower-case names
    (repeated headers joined with ", "); ``fault`` says which failure was injected, if any;
    ``bodies_dropped`` is True once the log released this record's bodies to stay in its budget.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    raw_body: bytes
    status: int | None
    started: float
    ended: float
    api_key: str | None
    headers: dict[str, str]
    fault: str | None
    response_body: bytes = b""
    bodies_dropped: bool = False

    @property
    def body(self) -> Any:
        """The request body parsed as JSON (a fresh copy), or None; parsed when read, as a parsed
        body takes several times the memory of its bytes."""
        return parse_json(self.raw_body)[0]

    @property
    def body_bytes(self) -> int:
        """The bytes of the bodies this record holds (what ``request_log_body_bytes`` counts)."""
        return len(self.raw_body) + len(self.response_body)

    def without_bodies(self) -> RequestRecord:
        return dataclasses.replace(self, raw_body=b"", response_body=b"", bodies_dropped=True)

    @property
    def duration(self) -> float:
        """Seconds from arrival to the end of the answer."""
        return self.ended - self.started

    def to_json(self, bodies: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (bytes decoded as UTF-8 with backslash escapes); ``bodies=False``
        leaves out ``body``, ``raw_body`` and ``response_body``."""
        if not bodies:
            return {k: v for k, v in self.to_json().items() if k not in _BODY_FIELDS}
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "body": self.body,
            "raw_body": self.raw_body.decode("utf-8", errors="backslashreplace"),
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration,
            "api_key": self.api_key,
            "headers": self.headers,
            "fault": self.fault,
            "response_body": self.response_body.decode("utf-8", errors="backslashreplace"),
            "bodies_dropped": self.bodies_dropped,
        }


class RequestLog:
    """The records (when kept) and the counters of every API request. Not thread-safe.

    The records are bounded, so a long run cannot grow the server without end: at most ``limit``
    are kept (the oldest go first), and once their bodies add up to more than ``body_bytes`` the
    oldest records' bodies are released (the records stay, with ``bodies_dropped``). Indices count
    from the last :meth:`clear`, also past records that went.
    """

    def __init__(self) -> None:
        self.records: deque[RequestRecord] = deque()
        # A request that arrived before the last clear() (or reset_counters()) belongs to what came
        # before it, say a client of an earlier test whose answer ends after it: not kept, nor counted
        # when it came before reset_counters().
        self._cleared_at = self._counted_from = -math.inf
        self.added = 0  # records appended since the last clear()
        self.records_dropped = 0
        self.bodies_dropped = 0
        self._with_bodies = 0  # the newest this many records hold their bodies
        self._body_bytes = 0
        self.reset_counters()

    def reset_counters(self) -> None:
        self._counted_from = time.monotonic()
        self.total = 0
        self.dropped = 0
        self.by_status: dict[int, int] = {}
        self.fault_counts: dict[str, int] = {}
        self.trickles: list[Trickle] = []

    def clear(self) -> None:
        """Forget the records; indices restart at 0."""
        self._cleared_at = time.monotonic()
        self.records = deque(maxlen=self.records.maxlen)
        self.added = self.records_dropped = self.bodies_dropped = 0
        self._with_bodies = self._body_bytes = 0

    @property
    def first_index(self) -> int:
        """The index of the oldest record kept."""
        return self.added - len(self.records)

    def add(self, request: ApiRequest, answer: Reply | None, ended: float, settings: Settings) -> None:
        """Count one answered (or dropped) request; keep its record if the settings say so."""
        if request.started < self._counted_from:
            return
        status = answer.status if answer is not None else None
        fault = answer.fault if answer is not None else None
        self.total += 1
        if status is None:
            self.dropped += 1
        else:
            self.by_status[status] = self.by_status.get(status, 0) + 1
        if fault is not None and fault not in _LIMIT_REJECTIONS:
            self.fault_counts[fault] = self.fault_counts.get(fault, 0) + 1
        if settings.record_requests and request.started >= self._cleared_at:
            record = RequestRecord(
                method=request.method,
                path=request.path,
                query=request.query,
                raw_body=request.raw_body,
                status=status,
                started=request.started,
                ended=ended,
                api_key=request.api_key,
                headers=request.headers,
                fault=fault,
                response_body=answer.body if answer is not None and status is not None else b"",
            )
            self._keep(record, settings.request_log_limit, settings.request_log_body_bytes)

    def _keep(self, record: RequestRecord, limit: int | None, body_bytes: int | None) -> None:
        if self.records.maxlen != limit:  # the setting changed: the oldest beyond a lower limit go
            kept = deque(self.records, maxlen=limit)
            self.records_dropped += len(self.records) - len(kept)
            self.records = kept
            self._with_bodies = min(self._with_bodies, len(kept))
            self._body_bytes = sum(kept[-i].body_bytes for i in range(1, self._with_bodies + 1))
        if len(self.records) == self.records.maxlen:
            oldest = self.records[0]  # the deque drops it on append
            self.records_dropped += 1
            if self._with_bodies == len(self.records):
                self._with_bodies -= 1
                self._body_bytes -= oldest.body_bytes
        self.records.append(record)
        self.added += 1
        self._with_bodies += 1
        self._body_bytes += record.body_bytes
        # The records holding bodies are always the newest: release the oldest of them first.
        while body_bytes is not None and self._body_bytes > body_bytes:
            index = len(self.records) - self._with_bodies
            released = self.records[index]
            if released.body_bytes:
                self.records[index] = released.without_bodies()
                self._body_bytes -= released.body_bytes
                self.bodies_dropped += 1
            self._with_bodies -= 1

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "dropped": self.dropped,
            "faults": dict(self.fault_counts),
            "faults_injected": sum(self.fault_counts.values()),
            "log_records_dropped": self.records_dropped,
            "log_bodies_dropped": self.bodies_dropped,
        }
