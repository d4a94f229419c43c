"""Injected failures: the fault kinds and their answers, the random mix, queued faults, failing
customers (a status, or any fault kind, for one customer's requests) and misdirected lookups."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.testing.server.replies import (
    HTML_TYPE,
    JSON_TYPE,
    TEXT_TYPE,
    Reply,
    json_reply,
    rate_limit_reply,
    status_reply,
)
from airflow_provider_chartmogul.testing.server.trickle import TRICKLE_BODY

if TYPE_CHECKING:
    from airflow_provider_chartmogul.testing.server.settings import Settings
    from airflow_provider_chartmogul.testing.server.state import AccountStore

FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "slow",
    "html",
    "text",
    "bad_json",
    "trickle",
    "trickle_head",
)
#: Faults whose status line and headers trickle too, not only the body.
HEAD_TRICKLES = frozenset({"trickle_head"})

_RAILS_500_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n  <title>We're sorry, but something went wrong (500)</title>\n"
    '</head>\n<body>\n  <div class="dialog">\n    <h1>We\'re sorry, but something went wrong.</h1>\n'
    "  </div>\n  <p>If you are the application owner check the logs for more information.</p>\n"
    "</body>\n</html>\n"
)
_ENVOY_TEXT = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
)
_BAD_JSON = b'{"custom": {"channel": "Facebook", "age": 8, "pro": tr'


def _known_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    return kind


def parse_faults(faults: Mapping[str, float] | str | None) -> dict[str, float]:
    """Validate a fault mix: a dict kind -> fraction, or the CLI form ``"429=0.05,drop=0.02"``."""
    if faults is None:
        return {}
    if isinstance(faults, str):
        parsed: dict[str, float] = {}
        for item in faults.split(","):
            if not item.strip():
                continue
            name, sep, share = item.partition("=")
            if not sep:
                raise ValueError(f"fault {item!r} must look like KIND=FRACTION")
            parsed[name.strip()] = float(share)
        faults = parsed
    result: dict[str, float] = {}
    for raw_kind, raw_fraction in dict(faults).items():
        kind = _known_kind(str(raw_kind))
        fraction = float(raw_fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction of fault {kind!r} must be within 0..1")
        result[kind] = fraction
    if sum(result.values()) > 1.0 + 1e-9:
        raise ValueError("fault fractions add up to more than 1")
    return result


def fault_reply(kind: str, settings: Settings) -> Reply:
    """The answer of an injected fault (``status`` None: close without answering)."""
    if kind == "429":
        return rate_limit_reply(settings.rate_limit_retry_after, kind)
    if kind == "drop":
        return Reply(None, fault=kind)
    if kind == "slow":
        return Reply(None, fault=kind, linger=settings.slow_seconds)
    if kind == "bad_json":
        return Reply(200, _BAD_JSON, JSON_TYPE, fault=kind)
    if kind in ("trickle", "trickle_head"):
        return Reply(500, TRICKLE_BODY, JSON_TYPE, fault=kind, trickle=True)
    if kind == "html":
        return Reply(500, _RAILS_500_PAGE.encode(), HTML_TYPE, fault=kind)
    if kind == "text":
        return Reply(500, _ENVOY_TEXT.encode(), TEXT_TYPE, fault=kind)
    answer = status_reply(int(kind), settings.rate_limit_retry_after)
    answer.fault = kind
    return answer


@dataclass
class _Failure:
    status: int
    body: Any
    remaining: int | None


class Faults:
    """Which requests fail: queued faults first, then random ones, and failing customers.

    Not thread-safe: the server calls it under its lock.
    """

    def __init__(self, seed: int) -> None:
        self._queued: deque[str] = deque()
        self._failures: dict[str, _Failure] = {}
        self._customer_faults: dict[str, tuple[str, int | None]] = {}
        self._misdirected: dict[str, str] = {}
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def reset(self, seed: int) -> None:
        """Forget queued faults and failing customers; re-seed the generator."""
        self._queued.clear()
        self._failures.clear()
        self._customer_faults.clear()
        self._misdirected.clear()
        self.reseed(seed)

    def queue(self, kinds: Iterable[str]) -> None:
        """The next API requests get these faults, one each, in order; all or none are queued."""
        self._queued.extend([_known_kind(str(kind)) for kind in kinds])

    def next(self, settings: Settings) -> str | None:
        """The fault of the request being answered, or None."""
        if self._queued:
            return self._queued.popleft()
        if not settings.faults:
            return None
        draw = self._rng.random()
        cumulative = 0.0
        for kind, fraction in settings.faults.items():
            cumulative += fraction
            if draw < cumulative:
                return kind
        return None

    def fail_customer(self, uuid: str, status: int, body: Any, times: int | None) -> None:
        """See :meth:`ChartMogulServer.fail_customer`."""
        status = int(status)
        if not 200 <= status <= 599:
            raise ValueError("status must be within 200..599")
        if times is not None and int(times) < 0:
            raise ValueError("times must be >= 0 or None")
        if times is not None and int(times) == 0:
            self._failures.pop(uuid, None)
        else:
            self._failures[uuid] = _Failure(status, body, None if times is None else int(times))

    def fault_customer(self, uuid: str, kind: str, times: int | None) -> None:
        """See :meth:`ChartMogulServer.fault_customer`."""
        _known_kind(kind)
        if times is not None and int(times) < 0:
            raise ValueError("times must be >= 0 or None")
        if times is not None and int(times) == 0:
            self._customer_faults.pop(uuid, None)
        else:
            self._customer_faults[uuid] = (kind, None if times is None else int(times))

    def misdirect_lookup(self, external_id: str, answer_uuid: str | None) -> None:
        """See :meth:`ChartMogulServer.misdirect_lookup`."""
        if answer_uuid is None:
            self._misdirected.pop(external_id, None)
        else:
            self._misdirected[external_id] = answer_uuid

    def misdirected(self, path: str, query: Mapping[str, list[str]], store: AccountStore) -> Reply | None:
        """The answer of a lookup by an ``external_id`` that is misdirected: a page holding the
        other customer (whose ``external_id`` is not the one asked for), else None."""
        asked = query.get("external_id")
        if path != "/v1/customers" or not asked or asked[0] not in self._misdirected:
            return None
        other = store.customers.get(self._misdirected[asked[0]])
        entries = [] if other is None else [other.render()]
        answer = json_reply(200, {"entries": entries, "cursor": None, "has_more": False})
        answer.fault = "misdirected_lookup"
        return answer

    def take_failure(self, uuid: str, settings: Settings) -> Reply | None:
        """The answer of a request naming ``uuid`` if that customer fails (counting it), else None."""
        fault = self._customer_faults.get(uuid)
        if fault is not None:
            kind, remaining = fault
            if remaining is not None:
                if remaining <= 1:
                    del self._customer_faults[uuid]
                else:
                    self._customer_faults[uuid] = (kind, remaining - 1)
            return fault_reply(kind, settings)
        failure = self._failures.get(uuid)
        if failure is None:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._failures[uuid]
        if failure.body is None:
            answer = status_reply(failure.status, settings.rate_limit_retry_after)
        elif isinstance(failure.body, (dict, list)):
            answer = json_reply(failure.status, failure.body)
        else:
            text = failure.body if isinstance(failure.body, bytes) else str(failure.body).encode()
            answer = Reply(failure.status, text, TEXT_TYPE)
        answer.fault = "fail_customer"
        return answer
