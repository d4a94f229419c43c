"""A ChartMogul-compatible HTTP server for tests, the demo and the benchmarks.

The real ChartMogul API cannot be reached from the test machines, so this module serves the part
of it the provider uses, in memory, over real HTTP (standard library only: it imports without
Airflow). It can inject the failures the real API and the proxies in front of it produce, and it
records every request so tests can compare what different clients send.

Python use::

    from airflow_provider_chartmogul.testing.server import ChartMogulServer

    with ChartMogulServer(api_keys={"sk_test": "read-write"}, rate_limit=40) as server:
        server.add_customer(uuid="cus_de305d54-75b4-431b-adb2-eb6b9e546012", email="a@example.com")
        ...  # point a client at server.url + "/v1", user "sk_test", empty password
        assert server.requests[-1].status == 200

Command line (prints exactly one line, ``ChartMogul-compatible server listening on
http://HOST:PORT``, then serves until SIGINT/SIGTERM and exits 0)::

    python -m airflow_provider_chartmogul.testing.server --port 0 --api-key sk_test \\
        [--read-only-key KEY] [--seed customers.json] [--latency 0.15] [--rate-limit 40] \\
        [--max-parallel 20] [--faults 429=0.05,drop=0.02] [--retry-after 1] [--quiet | --verbose]

Endpoints (HTTP Basic auth: user = API key, password ignored; JSON in and out; HTTP/1.1
keep-alive; every answer but 204 carries Content-Length)
----------------------------------------------------------------------------------------------
``GET /v1/ping``                                  200 ``{"data": "pong!"}``
``GET /v1/customers``                             listing, filters ``external_id``,
                                                  ``data_source_uuid``, ``email``; ``per_page``,
                                                  ``cursor``
``GET /v1/customers/search?email=E``              same envelope; 404 when nothing matches
``GET /v1/customers/{uuid}``                      one customer object
``GET /v1/customers/{uuid}/attributes``           ``{"tags": [], "stripe": {}, "clearbit": {},
                                                  "custom": {...}}``
``POST /v1/customers/{uuid}/attributes/custom``   the seed call: ``{"custom": [{type, key, value,
                                                  source?}]}`` -> ``{"custom": {whole map}}``
``PUT /v1/customers/{uuid}/attributes/custom``    ``{"custom": {key: v | {"value": v, "source":
                                                  s}}}`` -> ``{"custom": {whole map}}``
``DELETE /v1/customers/{uuid}/attributes/custom`` ``{"custom": ["k1", ...]}`` -> 200 ``{"custom":
                                                  {remaining}}`` | 202 ``{"message": ...}`` | 204
``POST /v1/customers/attributes/custom``          ``{"email": e, "custom": [...]}`` -> 200
                                                  ``{"entries": [customer, ...]}`` (maybe empty)

Error bodies (different shapes on purpose: clients must cope with all of them)
----------------------------------------------------------------------------------------------
=====  ==========================================================  ===============================
code   when                                                        body
=====  ==========================================================  ===============================
400    ``custom`` (or ``email``) missing or of the wrong JSON      ``{"errors": {"custom": "is
       kind, body not JSON, bad ``per_page`` / ``cursor``          missing"}}`` (field -> message)
401    no or unknown API key                                       ``{"code": 401, "message": "No
                                                                   valid API key provided",
                                                                   "param": null}`` +
                                                                   ``WWW-Authenticate``
403    write (POST/PUT/DELETE) with a read-only key                ``{"code": 403, "message": "This
                                                                   API key is read-only: ...",
                                                                   "param": null}``
404    unknown customer uuid (attributes, custom, retrieve)        ``{"error": "Customer not
                                                                   found"}``
404    search by email matching nothing                            ``{"code": 404, "message": "No
                                                                   customers found with email
                                                                   ...", "param": "email"}``
404    unknown path                                                ``{"code": 404, "message": "No
                                                                   route matches ...", "param":
                                                                   null}``
405    known path, wrong method (+ ``Allow`` header)               ``{"code": 405, "message": ...,
                                                                   "param": null}``
422    POST (per customer or by email): bad key / type / value,    ``{"code": 422, "message": ...,
       or type conflict                                            "param": "<key>"}``
422    PUT: key not defined on the account, or value not of the    Rails style ``{"error_details":
       defined type                                                {"<key>": ["<message>"]}}``
429    over ``rate_limit`` (and the "429" fault)                   ``{"code": 429, "message": "Your
                                                                   request rate has exceeded our
                                                                   rate limit.", "param": null}``
                                                                   (+ ``Retry-After`` if
                                                                   ``rate_limit_retry_after``)
503    over ``max_parallel``                                       ``{"code": 503, "message": "Too
                                                                   many parallel connections ...",
                                                                   "param": null}``
=====  ==========================================================  ===============================

Injected faults (``faults={"429": 0.05, ...}`` drawn from ``random.Random(fault_seed)``, at most
one per request; or ``queue_faults([...])`` for the next requests, in order, before any random
draw): ``"429"`` as above; ``"500"`` text/plain ``Internal Server Error``; ``"502"`` / ``"504"``
an nginx-style text/html page; ``"503"`` JSON ``{"code": 503, "message": "Service temporarily
unavailable", "param": null}``; ``"html"`` 500 with a Rails-style text/html page; ``"text"`` 500
with an envoy-style text/plain line; ``"bad_json"`` 200 with truncated JSON; ``"drop"`` closes
the connection without an answer; ``"slow"`` waits ``slow_seconds`` then closes without an
answer; ``"trickle"`` (slow loris) sends a 500's status line and headers at once, then its 26-byte
body one byte every ``trickle_seconds`` (default 1.5) until done or the client hangs up, and
``stats()["trickles"]`` says when each ended (server time) and whether the client hung up.
**A faulted request never changes state**: the fault is decided before the request is
authenticated, routed or applied, so a write that met a fault was not applied (a client that
retries it is safe). The same holds for ``fail_customer`` answers, 429 and 503 rejections.
Every path outside ``/_testing/`` is an API path (unknown ones answer 404) and goes through
limits, latency, faults and the log; ``/_testing/`` never does. A request is in the log and the
stats before its answer is written, so a client that has its answer can inspect them at once.

Order of processing for an API request: rate limit (429) -> parallel limit (503) -> ``latency``
sleep -> fault -> auth (401) -> route (404/405) -> read-only (403) -> ``fail_customer`` ->
endpoint. ``latency`` is added before every API answer, rejections included.

Behaviours chosen where the real API is undocumented
----------------------------------------------------
* Rate limit: one account per server (all keys share it). A sliding one-second window over the
  arrival times of the requests it *admitted*; any API request (any path, any key, even a bad
  one) is counted; rejected (429) ones are not. So in every window (t-1 s, t] at most
  ``rate_limit`` requests are answered with something other than the limiter's 429. Requests
  refused by ``max_parallel`` were admitted by the limiter and do count.
* ``max_parallel``: requests admitted and not yet answered (latency and ``slow`` included) are
  "in flight"; a request arriving while ``max_parallel`` are in flight gets 503 and is not in
  flight itself, so ``stats()["max_in_flight"] <= max_parallel``.
* Types are case-sensitive (``"String"``, not ``"string"``). String: JSON strings only, at most
  255 characters (any characters). Integer: JSON integers or strings of ASCII digits with an
  optional sign; booleans and floats (even ``8.0``) are refused. Decimal: any finite JSON number or
  numeric string, stored as float. Timestamp: ISO 8601 (``datetime.fromisoformat`` of Python 3.11,
  ``Z`` included) or ``"2016-01-31 00:00:00 UTC"``; naive means UTC; stored as
  ``2016-01-31T00:00:00.000Z``. Boolean: JSON true/false, 1/0, or ``TRUE true t 1 FALSE false f 0``.
  ``null`` values are refused. Keys: ``[A-Za-z0-9_]+``. ``source`` must be a string if present; it
  is never stored or returned.
* A request is validated entirely before anything is written: one bad entry rejects it all.
* POST of a key already defined with the same type overwrites the value. With another type:
  ``type_conflict="error"`` answers 422 naming the key and both types; ``"overwrite"`` redefines
  the key account-wide (values other customers already hold are left as they are).
* POST ``{"custom": []}`` answers 200 with the unchanged map.
* PUT keys must already be defined on the account; the answer is the whole map.
* DELETE of keys the customer does not have is not an error (they are skipped).
* By email: emails match case-insensitively. With 0 matches the body is still validated (422 on
  a bad entry), nothing is defined, and the answer is ``200 {"entries": []}``.
* Listing: ``per_page`` defaults to 50, must be 1..200 (anything else -> 400, no clamping).
  Stable insertion order. The cursor is opaque (base64 of the next position) and is returned even
  on the last page (with ``has_more: false``); using it again yields an empty page. A cursor the
  server did not make -> 400. Blank filter values (``?external_id=``) are ignored.
  ``external_id`` matches ``external_id`` and ``external_ids``; ``data_source_uuid`` matches
  ``data_source_uuid`` and ``data_source_uuids``; ``email`` case-insensitively.
* Customers without an external ID get ``ext_<id>``; missing ``name`` / ``email`` / ``company``
  are ``""`` rather than null (the official Python client's schema refuses null there).
* A trailing slash on a path is ignored. Path segments are percent-decoded after splitting on
  ``/``, so ``%2F`` in a uuid stays inside the segment (and simply matches no customer).

Admin endpoints (no auth, loopback clients only, not rate limited, not faulted, not logged)
-----------------------------------------------------------------------------------------
``GET /_testing/requests[?since=N][&bodies=0]`` (log entries from index N, each with ``index``;
``raw_body`` as UTF-8 text, ``started``/``ended`` are ``time.monotonic()`` values of the server
process; ``bodies=0`` leaves out the three body fields), ``DELETE /_testing/requests``, ``GET
/_testing/customers[?uuid=U]`` (list of customer objects; ``?view=custom``: uuid -> custom map),
``POST /_testing/customers`` (list of add_customer kwargs -> ``{"count": n, "uuids": [...]}``),
``GET|POST /_testing/config`` (POST body = configure kwargs; answers the current config),
``POST /_testing/reset``, ``GET /_testing/stats``, ``POST /_testing/faults`` (list, as
queue_faults), ``POST /_testing/fail_customer`` (fail_customer kwargs), ``GET|POST
/_testing/definitions`` (POST body ``{key: type}``). Bad input -> 400 ``{"error": "..."}``.

Request log: :class:`RequestRecord`; ``query`` is always ``dict[str, list[str]]``
(``urllib.parse.parse_qs`` with blank values kept); ``path`` is the raw (still percent-encoded)
path without the query; ``fault`` is the injected fault kind, ``"fail_customer"``,
``"rate_limit"`` / ``"max_parallel"`` for the limiter's rejections, or None.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import dataclasses
import gc
import ipaddress
import json
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_provider_chartmogul.testing.server.state import (
    ATTRIBUTE_TYPES,
    DEFAULT_DATA_SOURCE_UUID,
    AccountStore,
    AttributeValidationError,
    StoredCustomer,
    decode_cursor,
    validate_key,
    validate_type,
)
from airflow_provider_chartmogul.testing.server.trickle import TRICKLE_BODY, Trickle, send_trickled

__all__ = [
    "ATTRIBUTE_TYPES",
    "DEFAULT_DATA_SOURCE_UUID",
    "FAULT_KINDS",
    "ChartMogulServer",
    "RequestRecord",
    "main",
]

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
)
ROLES: tuple[str, ...] = ("read-write", "read-only")
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

UNAUTHORIZED_BODY: dict[str, Any] = {"code": 401, "message": "No valid API key provided", "param": None}
READ_ONLY_BODY: dict[str, Any] = {
    "code": 403,
    "message": "This API key is read-only: it cannot be used for POST, PUT or DELETE requests",
    "param": None,
}
RATE_LIMIT_BODY: dict[str, Any] = {
    "code": 429,
    "message": "Your request rate has exceeded our rate limit.",
    "param": None,
}
TOO_MANY_PARALLEL_BODY: dict[str, Any] = {
    "code": 503,
    "message": "Too many parallel connections: slow down and retry",
    "param": None,
}
CUSTOMER_NOT_FOUND_BODY: dict[str, Any] = {"error": "Customer not found"}

_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
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

# (segments, endpoint name, allowed methods); literal routes come before the {uuid} ones.
_ROUTES: tuple[tuple[tuple[str, ...], str, frozenset[str]], ...] = (
    (("v1", "ping"), "ping", frozenset({"GET"})),
    (("v1", "customers"), "list_customers", frozenset({"GET"})),
    (("v1", "customers", "search"), "search", frozenset({"GET"})),
    (("v1", "customers", "attributes", "custom"), "by_email", frozenset({"POST"})),
    (("v1", "customers", "{uuid}"), "retrieve", frozenset({"GET"})),
    (("v1", "customers", "{uuid}", "attributes"), "attributes", frozenset({"GET"})),
    (("v1", "customers", "{uuid}", "attributes", "custom"), "custom", frozenset({"POST", "PUT", "DELETE"})),
)


_BODY_FIELDS = frozenset({"body", "raw_body", "response_body"})


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


@dataclass(frozen=True)
class _Settings:
    """Run-time configuration; replaced as a whole by configure()."""

    api_keys: Mapping[str, str]
    latency: float = 0.0
    rate_limit: float | None = None
    rate_limit_retry_after: float | None = None
    max_parallel: int | None = None
    faults: Mapping[str, float] = field(default_factory=dict)
    fault_seed: int = 0
    slow_seconds: float = 5.0
    type_conflict: str = "error"
    delete_status: int = 200
    record_requests: bool = True
    trickle_seconds: float = 1.5

    def to_json(self) -> dict[str, Any]:
        return {
            "api_keys": dict(self.api_keys),
            "latency": self.latency,
            "rate_limit": self.rate_limit,
            "rate_limit_retry_after": self.rate_limit_retry_after,
            "max_parallel": self.max_parallel,
            "faults": dict(self.faults),
            "fault_seed": self.fault_seed,
            "slow_seconds": self.slow_seconds,
            "type_conflict": self.type_conflict,
            "delete_status": self.delete_status,
            "record_requests": self.record_requests,
            "trickle_seconds": self.trickle_seconds,
        }


@dataclass
class _Answer:
    """What to send back; ``status`` None means: close the connection without an answer."""

    status: int | None
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    fault: str | None = None
    linger: float = 0.0  # seconds to wait before closing, for the "slow" fault
    trickle: bool = False  # send the body byte by byte (the "trickle" fault)


@dataclass
class _Failure:
    status: int
    body: Any
    remaining: int | None


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json_answer(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None, fault: str | None = None
) -> _Answer:
    return _Answer(status, _json_bytes(payload), JSON_TYPE, headers or [], fault)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _basic_auth_user(header: str | None) -> str | None:
    """The user name of a Basic Authorization header, or None."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """(parsed JSON or None, whether the body was valid). An empty body is valid (None)."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant), True
    except (UnicodeDecodeError, ValueError):
        return None, False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _validate_settings(current: _Settings, changes: Mapping[str, Any]) -> _Settings:
    """Return ``current`` with ``changes`` applied, or raise TypeError/ValueError."""
    allowed = {item.name for item in dataclasses.fields(_Settings)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
    values = dict(changes)
    if "api_keys" in values:
        keys = dict(values["api_keys"] or {})
        for key, role in keys.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"API keys must be non-empty strings, got {key!r}")
            if role not in ROLES:
                raise ValueError(f"role of API key {key!r} must be one of {ROLES}, got {role!r}")
        values["api_keys"] = keys
    for name in ("latency", "slow_seconds", "trickle_seconds"):
        if name in values:
            values[name] = float(values[name])
            if values[name] < 0:
                raise ValueError(f"{name} must be >= 0")
    for name in ("rate_limit", "rate_limit_retry_after"):
        if values.get(name) is not None:
            values[name] = float(values[name])
            if values[name] < 0 or (name == "rate_limit" and values[name] == 0):
                raise ValueError(f"{name} must be positive")
    if values.get("max_parallel") is not None:
        values["max_parallel"] = int(values["max_parallel"])
        if values["max_parallel"] < 1:
            raise ValueError("max_parallel must be >= 1")
    if "faults" in values:
        values["faults"] = parse_faults(values["faults"])
    if "fault_seed" in values:
        values["fault_seed"] = int(values["fault_seed"])
    if "type_conflict" in values and values["type_conflict"] not in ("error", "overwrite"):
        raise ValueError("type_conflict must be 'error' or 'overwrite'")
    if "delete_status" in values:
        values["delete_status"] = int(values["delete_status"])
        if values["delete_status"] not in (200, 202, 204):
            raise ValueError("delete_status must be 200, 202 or 204")
    if "record_requests" in values:
        values["record_requests"] = bool(values["record_requests"])
    return dataclasses.replace(current, **values)


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
        kind = str(raw_kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        fraction = float(raw_fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction of fault {kind!r} must be within 0..1")
        result[kind] = fraction
    if sum(result.values()) > 1.0 + 1e-9:
        raise ValueError("fault fractions add up to more than 1")
    return result


class _HTTPServer(ThreadingHTTPServer):
    """Threaded server that remembers open connections so stop() can close idle keep-alives."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The official client opens a new connection per request; a short backlog would make bursts
    # wait for SYN retransmits (1 s+) instead of being queued.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], owner: ChartMogulServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, dropped pools) are normal here; only real bugs are shown.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self.owner._quiet:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the owning ChartMogulServer, writes the answer."""

    protocol_version = "HTTP/1.1"
    server_version = "ChartMogulTestServer/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True
    server: _HTTPServer

    arrived = 0.0

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def parse_request(self) -> bool:
        # Called as soon as the request line has been read: the arrival time that the rate limit
        # and the request log use, before the time spent reading headers and body.
        self.arrived = time.monotonic()
        return super().parse_request()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner._verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET

    def _dispatch(self) -> None:
        try:
            raw_body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send_answer(_json_answer(400, {"errors": {"body": "could not be read"}}))
            return
        self.server.owner._handle(self, raw_body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(size)

    def version_string(self) -> str:
        return self.server_version

    def send_answer(self, answer: _Answer) -> None:
        """Write status line, headers and body in one write (no Nagle/delayed-ACK stalls)."""
        head, body = self.encode_answer(answer)
        try:
            self.wfile.write(head + body)
        except OSError:
            self.close_connection = True
            return
        if self.server.owner._verbose:
            assert answer.status is not None
            self.log_request(answer.status, len(body))

    def encode_answer(self, answer: _Answer) -> tuple[bytes, bytes]:
        """The status line and headers, and the body, as sent."""
        assert answer.status is not None
        status = answer.status
        lines = [
            f"{self.protocol_version} {status} {_phrase(status)}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        body = answer.body
        if status == 204 or status == 304 or status < 200:
            body = b""
        else:
            if answer.content_type:
                lines.append(f"Content-Type: {answer.content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in answer.headers)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


class ChartMogulServer:
    """An in-memory ChartMogul account served over HTTP. See the module docstring.

    All public methods are thread-safe. ``start()`` binds and serves in a daemon thread;
    ``stop()`` closes the listener and open connections (also interrupting latency/slow sleeps).
    """

    def __init__(
        self,
        api_keys: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        rate_limit_retry_after: float | None = None,
        max_parallel: int | None = None,
        faults: Mapping[str, float] | None = None,
        fault_seed: int = 0,
        slow_seconds: float = 5.0,
        type_conflict: str = "error",
        delete_status: int = 200,
        record_requests: bool = True,
        verbose: bool = False,
        quiet: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._verbose = verbose
        self._quiet = quiet
        self._lock = threading.RLock()
        self._settings = _validate_settings(
            _Settings(api_keys={}),
            {
                "api_keys": {"sk_test": "read-write"} if api_keys is None else api_keys,
                "latency": latency,
                "rate_limit": rate_limit,
                "rate_limit_retry_after": rate_limit_retry_after,
                "max_parallel": max_parallel,
                "faults": faults,
                "fault_seed": fault_seed,
                "slow_seconds": slow_seconds,
                "type_conflict": type_conflict,
                "delete_status": delete_status,
                "record_requests": record_requests,
            },
        )
        self._store = AccountStore()
        self._log: list[RequestRecord] = []
        self._queued_faults: deque[str] = deque()
        self._failures: dict[str, _Failure] = {}
        self._window: deque[float] = deque()
        self._rng = random.Random(self._settings.fault_seed)
        self._in_flight = 0
        self._reset_counters()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> ChartMogulServer:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self._requested_port), self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ChartMogulServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ChartMogulServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the requested one before start())."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: no trailing slash, no ``/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # ------------------------------------------------------------------------------- seeding

    def add_customer(
        self,
        uuid: str | None = None,
        external_id: str | None = None,
        data_source_uuid: str = DEFAULT_DATA_SOURCE_UUID,
        email: str | None = None,
        name: str | None = None,
        custom: Mapping[str, Any] | None = None,
        external_ids: Iterable[str] | None = None,
        data_source_uuids: Iterable[str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a customer and return it as the API shows it.

        ``uuid`` defaults to ``cus_<uuid4>``, ``external_id`` to ``ext_<id>``. ``custom`` values
        take the type defined for their key (define_attribute) or, for an undefined key, one
        inferred from the Python value (bool -> Boolean, int -> Integer, float -> Decimal,
        datetime -> Timestamp, str -> String), which is then defined account-wide. ``fields``
        may set other customer fields: company, country, state, city, zip, lead_created_at,
        free_trial_started_at, customer_since, status, mrr, arr, currency, currency_sign,
        billing_system_url, billing_system_type, chartmogul_url, website_url, id, tags.
        Raises ValueError (duplicate uuid, duplicate external_id in a data source, bad custom
        value) or TypeError (unknown field).
        """
        with self._lock:
            return self._store.add_customer(
                uuid=uuid,
                external_id=external_id,
                data_source_uuid=data_source_uuid,
                email=email,
                name=name,
                custom=custom,
                external_ids=external_ids,
                data_source_uuids=data_source_uuids,
                **fields,
            ).render()

    def add_customers(self, customers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Bulk add_customer under one lock (100k in 1-3 s here). Not atomic: on an error the
        customers before the bad one stay. After 10,000 or more it calls ``gc.freeze()`` so
        full garbage collections stop walking the loaded customers (see ``_gc_paused``)."""
        shown: list[dict[str, Any]] = []
        with self._lock, _gc_paused(shown):
            added = [self._store.add_customer(**dict(kwargs)) for kwargs in customers]
            shown.extend(customer.render() for customer in added)
        return shown

    def _add_customers_quiet(self, customers: Iterable[Mapping[str, Any]]) -> list[str]:
        uuids: list[str] = []
        with self._lock, _gc_paused(uuids):
            uuids.extend(self._store.add_customer(**dict(kwargs)).uuid for kwargs in customers)
        return uuids

    def define_attribute(self, key: str, type_: str) -> None:
        """Define ``key`` account-wide with ``type_`` (redefines an existing key)."""
        with self._lock:
            self._store.define(key, type_)

    def get_customer(self, uuid: str) -> dict[str, Any] | None:
        """A snapshot of the customer as the API shows it, or None."""
        with self._lock:
            customer = self._store.customers.get(uuid)
            return customer.render() if customer is not None else None

    def custom_attributes(self, uuid: str) -> dict[str, Any]:
        """A copy of the customer's custom map; KeyError for an unknown uuid."""
        with self._lock:
            return dict(self._store.customers[uuid].custom)

    @property
    def definitions(self) -> dict[str, str]:
        """A copy of the account-wide definitions, key -> type."""
        with self._lock:
            return dict(self._store.definitions)

    @property
    def customer_count(self) -> int:
        with self._lock:
            return len(self._store.order)

    # ------------------------------------------------------------------------- log and stats

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log (API requests only, oldest first)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Empty the request log (indices for ``?since=`` restart at 0). Stats are kept."""
        with self._lock:
            self._log.clear()

    def stats(self) -> dict[str, Any]:
        """Counters since start or reset().

        ``total``, ``by_status`` (int status -> count; string keys over ``/_testing/stats``),
        ``dropped`` (no answer), ``faults`` (kind -> count, "fail_customer" included),
        ``faults_injected``, ``rate_limited``, ``parallel_rejected``, ``in_flight``,
        ``max_in_flight``, ``trickles`` (one dict per "trickle" fault: ``path``, ``started``,
        ``ended``, ``held``, ``bytes_sent``, ``body_bytes``, ``hung_up``).
        """
        with self._lock:
            counters = self._counters
            return {
                "total": counters["total"],
                "by_status": dict(sorted(self._by_status.items())),
                "dropped": counters["dropped"],
                "faults": dict(self._fault_counts),
                "faults_injected": sum(self._fault_counts.values()),
                "rate_limited": counters["rate_limited"],
                "parallel_rejected": counters["parallel_rejected"],
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "trickles": [trickle.to_json() for trickle in self._trickles],
            }

    def _reset_counters(self) -> None:
        self._counters = {"total": 0, "dropped": 0, "rate_limited": 0, "parallel_rejected": 0}
        self._by_status: dict[int, int] = {}
        self._fault_counts: dict[str, int] = {}
        self._trickles: list[Trickle] = []
        self._max_in_flight = self._in_flight

    def reset(self) -> None:
        """Forget customers, definitions, the log, queued faults, failing customers, the rate
        window and the stats; re-seed the fault generator. Settings are kept."""
        with self._lock:
            self._store = AccountStore()
            self._log.clear()
            self._queued_faults.clear()
            self._failures.clear()
            self._window.clear()
            self._rng = random.Random(self._settings.fault_seed)
            self._reset_counters()

    # ---------------------------------------------------------------------------- behaviour

    def configure(self, **changes: Any) -> None:
        """Change settings at run time: latency, rate_limit, rate_limit_retry_after,
        max_parallel, faults, fault_seed (re-seeds the generator), slow_seconds, type_conflict,
        delete_status, record_requests, api_keys. Raises TypeError/ValueError on bad input."""
        with self._lock:
            self._settings = _validate_settings(self._settings, changes)
            if "fault_seed" in changes:
                self._rng = random.Random(self._settings.fault_seed)

    @property
    def config(self) -> dict[str, Any]:
        """The current settings as a JSON-ready dict."""
        with self._lock:
            return self._settings.to_json()

    def queue_faults(self, kinds: Iterable[str]) -> None:
        """The next API requests get these faults, one each, in order (before random faults)."""
        kinds = [str(kind) for kind in kinds]
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._queued_faults.extend(kinds)

    def fail_customer(self, uuid: str, status: int = 500, body: Any = None, times: int | None = None) -> None:
        """Requests whose path names this customer (``/v1/customers/{uuid}...``) answer ``status``.

        ``times=None``: always; ``times=N``: the next N such requests; ``times=0`` removes the
        failure. ``body``: dict/list -> JSON, str/bytes -> text/plain, None -> the body this
        server normally sends with that status. Such requests change nothing.
        """
        status = int(status)
        if not 200 <= status <= 599:
            raise ValueError("status must be within 200..599")
        if times is not None and int(times) < 0:
            raise ValueError("times must be >= 0 or None")
        with self._lock:
            if times is not None and int(times) == 0:
                self._failures.pop(uuid, None)
            else:
                self._failures[uuid] = _Failure(status, body, None if times is None else int(times))

    # ------------------------------------------------------------------------ HTTP: entry

    def _handle(self, handler: _Handler, raw_body: bytes) -> None:
        split = urlsplit(handler.path)
        path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        if path == "/_testing" or path.startswith("/_testing/"):
            handler.send_answer(self._serve_admin(handler, path, query, raw_body))
        else:
            self._serve_api(handler, path, query, raw_body)

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _serve_api(self, handler: _Handler, path: str, query: dict[str, list[str]], raw_body: bytes) -> None:
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        api_key = _basic_auth_user(headers.get("authorization"))
        body, body_ok = _parse_json(raw_body)

        answer: _Answer | None = None
        admitted = False
        started = handler.arrived
        with self._lock:
            settings = self._settings
            if settings.rate_limit is not None:
                horizon = started - 1.0
                while self._window and self._window[0] <= horizon:
                    self._window.popleft()
                if len(self._window) >= settings.rate_limit:
                    answer = self._rate_limit_answer(settings, "rate_limit")
                    self._counters["rate_limited"] += 1
                else:
                    # Arrival times are taken before this lock, so they may come in slightly out of order.
                    bisect.insort(self._window, started)
            if (
                answer is None
                and settings.max_parallel is not None
                and self._in_flight >= settings.max_parallel
            ):
                answer = _json_answer(503, TOO_MANY_PARALLEL_BODY, fault="max_parallel")
                self._counters["parallel_rejected"] += 1
            if answer is None:
                admitted = True
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)

        accounted = False
        try:
            if settings.latency > 0:
                self._pause(settings.latency)
            if answer is None:
                try:
                    answer = self._answer_api(handler.command, path, query, body, body_ok, api_key)
                except Exception as exc:  # a bug in this double must still answer, not hang a client
                    if not self._quiet:
                        traceback.print_exc()
                    answer = _json_answer(
                        500, {"code": 500, "message": f"test server error: {exc!r}", "param": None}
                    )
            if answer.status is None:
                handler.close_connection = True
                if answer.linger > 0:
                    self._pause(answer.linger)
            # Account before answering: once a client has its answer, the log, the stats and the
            # in-flight count already include the request.
            accounted = True
            self._account(
                handler.command, path, query, body, raw_body, started, api_key, headers, answer, admitted
            )
            if answer.trickle:
                handler.close_connection = True
                self._send_trickled(handler, answer, path, started)
            elif answer.status is not None:
                handler.send_answer(answer)
        finally:
            if not accounted:
                self._account(
                    handler.command, path, query, body, raw_body, started, api_key, headers, answer, admitted
                )

    def _send_trickled(self, handler: _Handler, answer: _Answer, path: str, started: float) -> None:
        head, body = handler.encode_answer(answer)
        handler.wfile.flush()
        trickle = send_trickled(
            handler.connection,
            head,
            body,
            self._settings.trickle_seconds,
            self._stopping,
            path=path,
            started=started,
        )
        with self._lock:
            self._trickles.append(trickle)

    def _account(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        raw_body: bytes,
        started: float,
        api_key: str | None,
        headers: dict[str, str],
        answer: _Answer | None,
        admitted: bool,
    ) -> None:
        ended = time.monotonic()
        status = answer.status if answer is not None else None
        fault = answer.fault if answer is not None else None
        with self._lock:
            if admitted:
                self._in_flight -= 1
            self._counters["total"] += 1
            if status is None:
                self._counters["dropped"] += 1
            else:
                self._by_status[status] = self._by_status.get(status, 0) + 1
            if fault is not None and fault not in ("rate_limit", "max_parallel"):
                self._fault_counts[fault] = self._fault_counts.get(fault, 0) + 1
            if self._settings.record_requests:
                self._log.append(
                    RequestRecord(
                        method=method,
                        path=path,
                        query=query,
                        body=body,
                        raw_body=raw_body,
                        status=status,
                        started=started,
                        ended=ended,
                        api_key=api_key,
                        headers=headers,
                        fault=fault,
                        response_body=answer.body if answer is not None and status is not None else b"",
                    )
                )

    def _answer_api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        body_ok: bool,
        api_key: str | None,
    ) -> _Answer:
        with self._lock:
            settings = self._settings
            fault = self._next_fault(settings)
        if fault is not None:
            return self._fault_answer(fault, settings)

        role = settings.api_keys.get(api_key) if api_key is not None else None
        if role is None:
            return _json_answer(401, UNAUTHORIZED_BODY, [("WWW-Authenticate", 'Basic realm="ChartMogul"')])

        segments = [unquote(segment) for segment in path.split("/")[1:]]
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()
        matched = self._route(segments)
        if matched is None:
            return _json_answer(
                404, {"code": 404, "message": f"No route matches [{method}] {path}", "param": None}
            )
        endpoint, params, allowed = matched
        if method not in allowed:
            return _json_answer(
                405,
                {"code": 405, "message": f"Method {method} is not allowed on {path}", "param": None},
                [("Allow", ", ".join(sorted(allowed)))],
            )
        if method in _WRITE_METHODS and role != "read-write":
            return _json_answer(403, READ_ONLY_BODY)
        uuid = params.get("uuid")
        if uuid is not None:
            failure = self._take_failure(uuid, settings)
            if failure is not None:
                return failure
        if method in _WRITE_METHODS and not body_ok:
            return _json_answer(400, {"errors": {"body": "is not valid JSON"}})
        handler = getattr(self, f"_api_{endpoint}")
        return handler(method, params, query, body, settings)  # type: ignore[no-any-return]

    @staticmethod
    def _route(segments: list[str]) -> tuple[str, dict[str, str], frozenset[str]] | None:
        for pattern, endpoint, allowed in _ROUTES:
            if len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for expected, actual in zip(pattern, segments, strict=True):
                if expected == "{uuid}":
                    params["uuid"] = actual
                elif expected != actual:
                    break
            else:
                return endpoint, params, allowed
        return None

    # ---------------------------------------------------------------------- faults, failures

    def _next_fault(self, settings: _Settings) -> str | None:
        if self._queued_faults:
            return self._queued_faults.popleft()
        if not settings.faults:
            return None
        draw = self._rng.random()
        cumulative = 0.0
        for kind, fraction in settings.faults.items():
            cumulative += fraction
            if draw < cumulative:
                return kind
        return None

    @staticmethod
    def _rate_limit_answer(settings: _Settings, fault: str) -> _Answer:
        headers = []
        if settings.rate_limit_retry_after is not None:
            headers.append(("Retry-After", _format_seconds(settings.rate_limit_retry_after)))
        return _json_answer(429, RATE_LIMIT_BODY, headers, fault)

    def _fault_answer(self, kind: str, settings: _Settings) -> _Answer:
        if kind == "429":
            return self._rate_limit_answer(settings, kind)
        if kind == "drop":
            return _Answer(None, fault=kind)
        if kind == "slow":
            return _Answer(None, fault=kind, linger=settings.slow_seconds)
        if kind == "bad_json":
            return _Answer(200, _BAD_JSON, JSON_TYPE, fault=kind)
        if kind == "trickle":
            return _Answer(500, TRICKLE_BODY, JSON_TYPE, fault=kind, trickle=True)
        if kind == "html":
            return _Answer(500, _RAILS_500_PAGE.encode(), HTML_TYPE, fault=kind)
        if kind == "text":
            return _Answer(500, _ENVOY_TEXT.encode(), TEXT_TYPE, fault=kind)
        answer = self._default_error_answer(int(kind), settings)
        answer.fault = kind
        return answer

    def _default_error_answer(self, status: int, settings: _Settings) -> _Answer:
        """The body this server normally sends with ``status``."""
        if status == 429:
            return self._rate_limit_answer(settings, "429")
        if status == 500:
            return _Answer(500, b"Internal Server Error", TEXT_TYPE)
        if status in (502, 504):
            page = _PROXY_PAGE.format(status=status, phrase=_phrase(status))
            return _Answer(status, page.encode(), HTML_TYPE)
        if status == 503:
            return _json_answer(
                503, {"code": 503, "message": "Service temporarily unavailable", "param": None}
            )
        if status == 401:
            return _json_answer(401, UNAUTHORIZED_BODY)
        if status == 403:
            return _json_answer(403, READ_ONLY_BODY)
        if status == 404:
            return _json_answer(404, CUSTOMER_NOT_FOUND_BODY)
        return _json_answer(status, {"code": status, "message": _phrase(status), "param": None})

    def _take_failure(self, uuid: str, settings: _Settings) -> _Answer | None:
        with self._lock:
            failure = self._failures.get(uuid)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[uuid]
        if failure.body is None:
            answer = self._default_error_answer(failure.status, settings)
        elif isinstance(failure.body, (dict, list)):
            answer = _json_answer(failure.status, failure.body)
        else:
            text = failure.body if isinstance(failure.body, bytes) else str(failure.body).encode()
            answer = _Answer(failure.status, text, TEXT_TYPE)
        answer.fault = "fail_customer"
        return answer

    # ------------------------------------------------------------------------ API endpoints

    def _api_ping(
        self, method: str, params: dict[str, str], query: Any, body: Any, settings: _Settings
    ) -> _Answer:
        return _json_answer(200, {"data": "pong!"})

    def _page_params(self, query: dict[str, list[str]]) -> tuple[int, int] | _Answer:
        raw_per_page = _first(query, "per_page")
        per_page = DEFAULT_PER_PAGE
        if raw_per_page not in (None, ""):
            try:
                per_page = int(raw_per_page)
            except ValueError:
                per_page = -1
            if not 1 <= per_page <= MAX_PER_PAGE:
                return _json_answer(
                    400, {"errors": {"per_page": f"must be an integer between 1 and {MAX_PER_PAGE}"}}
                )
        start = 0
        cursor = _first(query, "cursor")
        if cursor:
            try:
                start = decode_cursor(cursor)
            except ValueError:
                return _json_answer(400, {"errors": {"cursor": "is invalid"}})
        return start, per_page

    def _listing(self, query: dict[str, list[str]], email: str | None) -> _Answer:
        page_params = self._page_params(query)
        if isinstance(page_params, _Answer):
            return page_params
        start, per_page = page_params
        with self._lock:
            page = self._store.page(
                start=start,
                per_page=per_page,
                external_id=_first(query, "external_id") or None,
                data_source_uuid=_first(query, "data_source_uuid") or None,
                email=email,
            )
            entries = [customer.render() for customer in page.customers]
        return _json_answer(200, {"entries": entries, "cursor": page.cursor, "has_more": page.has_more})

    def _api_list_customers(
        self, method: str, params: dict[str, str], query: dict[str, list[str]], body: Any, settings: _Settings
    ) -> _Answer:
        return self._listing(query, _first(query, "email") or None)

    def _api_search(
        self, method: str, params: dict[str, str], query: dict[str, list[str]], body: Any, settings: _Settings
    ) -> _Answer:
        email = _first(query, "email")
        if not email:
            return _json_answer(400, {"errors": {"email": "is missing"}})
        with self._lock:
            found = bool(self._store.by_email.get(email.lower()))
        if not found:
            return _json_answer(
                404, {"code": 404, "message": f"No customers found with email {email!r}", "param": "email"}
            )
        return self._listing(query, email)

    def _customer(self, uuid: str) -> StoredCustomer | None:
        return self._store.customers.get(uuid)

    def _api_retrieve(
        self, method: str, params: dict[str, str], query: Any, body: Any, settings: _Settings
    ) -> _Answer:
        with self._lock:
            customer = self._customer(params["uuid"])
            shown = customer.render() if customer is not None else None
        if shown is None:
            return _json_answer(404, CUSTOMER_NOT_FOUND_BODY)
        return _json_answer(200, shown)

    def _api_attributes(
        self, method: str, params: dict[str, str], query: Any, body: Any, settings: _Settings
    ) -> _Answer:
        with self._lock:
            customer = self._customer(params["uuid"])
            attributes = customer.attributes() if customer is not None else None
        if attributes is None:
            return _json_answer(404, CUSTOMER_NOT_FOUND_BODY)
        return _json_answer(200, attributes)

    @staticmethod
    def _custom_of(body: Any) -> tuple[Any, _Answer | None]:
        if not isinstance(body, dict) or "custom" not in body:
            return None, _json_answer(400, {"errors": {"custom": "is missing"}})
        return body["custom"], None

    @staticmethod
    def _unprocessable(error: AttributeValidationError) -> _Answer:
        return _json_answer(422, {"code": 422, "message": error.message, "param": error.key})

    def _api_custom(
        self, method: str, params: dict[str, str], query: Any, body: Any, settings: _Settings
    ) -> _Answer:
        uuid = params["uuid"]
        with self._lock:
            if self._customer(uuid) is None:
                return _json_answer(404, CUSTOMER_NOT_FOUND_BODY)
        custom, missing = self._custom_of(body)
        if missing is not None:
            return missing
        with self._lock:
            customer = self._customer(uuid)
            assert customer is not None
            if method == "POST":
                try:
                    values, new_definitions = self._store.prepare_typed(custom, settings.type_conflict)
                except TypeError as exc:
                    return _json_answer(400, {"errors": {"custom": str(exc)}})
                except AttributeValidationError as exc:
                    return self._unprocessable(exc)
                self._store.definitions.update(new_definitions)
                customer.custom.update(values)
                return _json_answer(200, {"custom": dict(customer.custom)})
            if method == "PUT":
                try:
                    values = self._store.prepare_untyped(custom)
                except TypeError as exc:
                    return _json_answer(400, {"errors": {"custom": str(exc)}})
                except AttributeValidationError as exc:
                    return _json_answer(422, {"error_details": {exc.key or "custom": [exc.message]}})
                customer.custom.update(values)
                return _json_answer(200, {"custom": dict(customer.custom)})
            # DELETE
            if not isinstance(custom, list) or not all(isinstance(key, str) for key in custom):
                return _json_answer(400, {"errors": {"custom": "must be an array of attribute keys"}})
            for key in custom:
                customer.custom.pop(key, None)
            remaining = dict(customer.custom)
        if settings.delete_status == 204:
            return _Answer(204, b"", None)
        if settings.delete_status == 202:
            return _json_answer(202, {"message": f"Custom attributes removed: {', '.join(custom)}"})
        return _json_answer(200, {"custom": remaining})

    def _api_by_email(
        self, method: str, params: dict[str, str], query: Any, body: Any, settings: _Settings
    ) -> _Answer:
        custom, missing = self._custom_of(body)
        if missing is not None:
            return missing
        email = body.get("email")
        if not isinstance(email, str) or not email.strip():
            return _json_answer(400, {"errors": {"email": "is missing"}})
        with self._lock:
            try:
                values, new_definitions = self._store.prepare_typed(custom, settings.type_conflict)
            except TypeError as exc:
                return _json_answer(400, {"errors": {"custom": str(exc)}})
            except AttributeValidationError as exc:
                return self._unprocessable(exc)
            matches = self._store.by_email_exact(email)
            if matches:
                self._store.definitions.update(new_definitions)
            for customer in matches:
                customer.custom.update(values)
            entries = [customer.render() for customer in matches]
        return _json_answer(200, {"entries": entries})

    # ------------------------------------------------------------------------------- admin

    def _serve_admin(
        self, handler: _Handler, path: str, query: dict[str, list[str]], raw_body: bytes
    ) -> _Answer:
        if not _is_loopback(handler.client_address[0]):
            return _json_answer(403, {"error": "the /_testing endpoints only answer loopback clients"})
        name = path[len("/_testing") :].strip("/")
        method = handler.command
        body, body_ok = _parse_json(raw_body)
        if not body_ok:
            return _json_answer(400, {"error": "body is not valid JSON"})
        try:
            if name == "requests" and method == "GET":
                since = int(_first(query, "since") or 0)
                bodies = _first(query, "bodies") != "0"
                with self._lock:
                    records = list(enumerate(self._log))[max(since, 0) :]
                return _json_answer(
                    200, [{"index": index, **record.to_json(bodies)} for index, record in records]
                )
            if name == "requests" and method == "DELETE":
                self.clear_requests()
                return _json_answer(200, {"ok": True})
            if name == "customers" and method == "GET":
                uuid = _first(query, "uuid")
                with self._lock:
                    if _first(query, "view") == "custom":
                        return _json_answer(200, {c.uuid: dict(c.custom) for c in self._store.order})
                    if uuid is not None:
                        customer = self._store.customers.get(uuid)
                        shown = [customer.render()] if customer is not None else []
                    else:
                        shown = [customer.render() for customer in self._store.order]
                return _json_answer(200, shown)
            if name == "customers" and method == "POST":
                if isinstance(body, dict):
                    body = [body]
                if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
                    raise ValueError("body must be a list of add_customer keyword objects")
                uuids = self._add_customers_quiet(body)
                return _json_answer(200, {"count": len(uuids), "uuids": uuids})
            if name == "config" and method in ("GET", "POST"):
                if method == "POST":
                    if not isinstance(body, dict):
                        raise ValueError("body must be an object of configure() keywords")
                    self.configure(**body)
                return _json_answer(200, self.config)
            if name == "reset" and method == "POST":
                self.reset()
                return _json_answer(200, {"ok": True})
            if name == "stats" and method == "GET":
                return _json_answer(200, self.stats())
            if name == "faults" and method == "POST":
                if not isinstance(body, list):
                    raise ValueError("body must be a list of fault kinds")
                self.queue_faults(body)
                return _json_answer(200, {"ok": True, "queued": len(body)})
            if name == "fail_customer" and method == "POST":
                if not isinstance(body, dict):
                    raise ValueError("body must be an object of fail_customer() keywords")
                self.fail_customer(**body)
                return _json_answer(200, {"ok": True})
            if name == "definitions" and method in ("GET", "POST"):
                if method == "POST":
                    if not isinstance(body, dict):
                        raise ValueError("body must be an object key -> type")
                    for key, type_ in body.items():
                        validate_type(type_, validate_key(key))
                    for key, type_ in body.items():
                        self.define_attribute(key, type_)
                return _json_answer(200, self.definitions)
        except (TypeError, ValueError) as exc:
            return _json_answer(400, {"error": str(exc)})
        return _json_answer(404, {"error": f"no admin endpoint {method} {path}"})


_FREEZE_AFTER = 10_000


@contextlib.contextmanager
def _gc_paused(created: list[Any]) -> Iterator[None]:
    """Pause the cyclic GC during a bulk load, and freeze the heap after a large one.

    Loads allocate only acyclic containers, and generation-2 passes over a growing heap would
    triple the time of loading 100k customers. Afterwards each full collection would still walk
    every customer (about a second for 100k on a busy 2-core machine), stalling requests long
    enough to trip client timeouts; ``gc.freeze()`` takes the loaded objects out of future
    collections. The price, acceptable in a test process: cyclic garbage that already exists at
    that moment is never collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if len(created) >= _FREEZE_AFTER:
            gc.freeze()


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# ------------------------------------------------------------------------------------- CLI


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_chartmogul.testing.server",
        description="Serve a ChartMogul-compatible API (in memory) until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18765, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", metavar="KEY", help="read-write key (repeatable)"
    )
    parser.add_argument("--read-only-key", action="append", default=[], metavar="KEY", help="repeatable")
    parser.add_argument("--seed", metavar="FILE", help="JSON list of add_customer keyword objects")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429")
    parser.add_argument("--max-parallel", type=int, default=None)
    parser.add_argument("--faults", default=None, help="e.g. 429=0.05,drop=0.02")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--type-conflict", choices=("error", "overwrite"), default="error")
    parser.add_argument("--delete-status", type=int, choices=(200, 202, 204), default=200)
    parser.add_argument("--no-record", action="store_true", help="do not keep the request log")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print nothing but the listening line")
    output.add_argument("--verbose", action="store_true", help="access log on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from the command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    api_keys = dict.fromkeys(args.api_keys or ["sk_test"], "read-write")
    api_keys.update(dict.fromkeys(args.read_only_key, "read-only"))
    try:
        server = ChartMogulServer(
            api_keys=api_keys,
            host=args.host,
            port=args.port,
            latency=args.latency,
            rate_limit=args.rate_limit,
            rate_limit_retry_after=args.retry_after,
            max_parallel=args.max_parallel,
            faults=parse_faults(args.faults),
            fault_seed=args.fault_seed,
            slow_seconds=args.slow_seconds,
            type_conflict=args.type_conflict,
            delete_status=args.delete_status,
            record_requests=not args.no_record,
            verbose=args.verbose,
            quiet=args.quiet,
        )
        if args.seed:
            with open(args.seed, encoding="utf-8") as seed_file:
                seed = json.load(seed_file)
            if isinstance(seed, dict):  # {"definitions": {...}, "customers": [...]} is accepted too
                for key, type_ in (seed.get("definitions") or {}).items():
                    server.define_attribute(key, type_)
                seed = seed.get("customers") or []
            server._add_customers_quiet(seed)
        server.start()
    except (OSError, ValueError, TypeError) as exc:
        if not args.quiet:
            print(f"error: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"ChartMogul-compatible server listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
