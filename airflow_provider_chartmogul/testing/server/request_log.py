"""The request log: what each API request was and how it was answered, and the counters of stats()."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.testing.server.answers import Answer
from airflow_provider_chartmogul.testing.server.http import ApiRequest
from airflow_provider_chartmogul.testing.server.trickle import Trickle

_BODY_FIELDS = frozenset({"body", "raw_body", "response_body"})
# Rejections by the limits are counted on their own, not as injected faults.
_LIMIT_REJECTIONS = frozenset({"rate_limit", "max_parallel"})


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the server saw it.

    ``query`` is ``dict[str, list[str]]``; ``path`` is raw (percent-encoded, no query);
    ``body`` is the parsed JSON or None (empty or unparsable); ``status`` is None when no answer
    was sent ("drop"/"slow"); ``started``/``ended`` are ``time.monotonic()`` at arrival and when
    the answer was ready (just before it is written; the record is in the log before the client
    can read the answer); ``api_key`` is the Basic-auth user name; ``headers`` have lower-case names
    (repeated headers joined with ", "); ``fault`` says which failure was injected, if any.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    raw_body: bytes
    status: int | None
    started: float
    ended: float
    api_key: str | None
    headers: dict[str, str]
    fault: str | None
    response_body: bytes = b""

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
        }


class RequestLog:
    """The records (when kept) and the counters of every API request. Not thread-safe."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.reset_counters()

    def reset_counters(self) -> None:
        self.total = 0
        self.dropped = 0
        self.by_status: dict[int, int] = {}
        self.fault_counts: dict[str, int] = {}
        self.trickles: list[Trickle] = []

    def add(self, request: ApiRequest, answer: Answer | None, ended: float, keep: bool) -> None:
        """Count one answered (or dropped) request; keep its record if ``keep``."""
        status = answer.status if answer is not None else None
        fault = answer.fault if answer is not None else None
        self.total += 1
        if status is None:
            self.dropped += 1
        else:
            self.by_status[status] = self.by_status.get(status, 0) + 1
        if fault is not None and fault not in _LIMIT_REJECTIONS:
            self.fault_counts[fault] = self.fault_counts.get(fault, 0) + 1
        if keep:
            self.records.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=request.query,
                    body=request.body,
                    raw_body=request.raw_body,
                    status=status,
                    started=request.started,
                    ended=ended,
                    api_key=request.api_key,
                    headers=request.headers,
                    fault=fault,
                    response_body=answer.body if answer is not None and status is not None else b"",
                )
            )

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "dropped": self.dropped,
            "faults": dict(self.fault_counts),
            "faults_injected": sum(self.fault_counts.values()),
        }
