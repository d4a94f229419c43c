"""HTTP plumbing of the test server: the threaded listener, the request handler, request parsing."""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_chartmogul.testing.server.replies import Reply, json_reply, phrase

#: Called with the handler (request line and headers read) and the request body.
RequestCallback = Callable[["Handler", bytes], None]


class HTTPServer(ThreadingHTTPServer):
    """Threaded server that remembers open connections so stop() can close idle keep-alives."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The official client opens a new connection per request; a short backlog would make bursts
    # wait for SYN retransmits (1 s+) instead of being queued.
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], on_request: RequestCallback, *, verbose: bool, quiet: bool
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.on_request = on_request
        self.verbose = verbose
        self.quiet = quiet
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

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
        if isinstance(exc, (ConnectionError, TimeoutError)) or self.quiet:
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the server's callback, and writes answers for it."""

    protocol_version = "HTTP/1.1"
    server_version = "ChartMogulTestServer/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True
    server: HTTPServer

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
        if self.server.verbose:
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
            self.send_reply(json_reply(400, {"errors": {"body": "could not be read"}}))
            return
        self.server.on_request(self, raw_body)

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

    def send_reply(self, answer: Reply) -> None:
        """Write status line, headers and body in one write (no Nagle/delayed-ACK stalls)."""
        head, body = self.encode_reply(answer)
        try:
            self.wfile.write(head + body)
        except OSError:
            self.close_connection = True
            return
        if self.server.verbose:
            assert answer.status is not None
            self.log_request(answer.status, len(body))

    def encode_reply(self, answer: Reply) -> tuple[bytes, bytes]:
        """The status line and headers, and the body, as sent."""
        assert answer.status is not None
        status = answer.status
        lines = [
            f"{self.protocol_version} {status} {phrase(status)}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        body = answer.body
        if status == 204 or status == 304 or status < 200:
            body = b""
        else:
            if answer.content_type:
                lines.append(f"Content-Type: {answer.content_type}")
            # As recorded: successful answers come gzip-encoded when the client accepts it; error
            # answers (and the faults, which stand for proxies) do not.
            if (
                body
                and status < 300
                and answer.fault is None
                and accepts_gzip(self.headers.get("Accept-Encoding"))
            ):
                body = gzip.compress(body, compresslevel=1, mtime=0)
                lines += ["Content-Encoding: gzip", "Vary: Accept-Encoding"]
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in answer.headers)
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


@dataclass(frozen=True)
class ApiRequest:
    """One API request as read: ``path`` raw, ``headers`` with lower-case names, ``started`` at arrival."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    body_ok: bool  # the body is empty or valid JSON
    raw_body: bytes
    started: float
    api_key: str | None
    headers: dict[str, str]


def read_api_request(handler: Handler, path: str, query: dict[str, list[str]], raw_body: bytes) -> ApiRequest:
    headers = lower_case_headers(handler.headers)
    body, body_ok = parse_json(raw_body)
    return ApiRequest(
        method=handler.command,
        path=path,
        query=query,
        body=body,
        body_ok=body_ok,
        raw_body=raw_body,
        started=handler.arrived,
        api_key=basic_auth_user(headers.get("authorization")),
        headers=headers,
    )


class _SharedStrings:
    """One string object for each of the first ``size`` distinct texts seen, so the request log's
    many copies of the same header names and values (host, user agent, key) are stored once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        found = self._known.get(text)
        if found is not None:
            return found
        with self._lock:
            if len(self._known) < self._size:
                self._known.setdefault(text, text)
        return self._known.get(text, text)


_shared = _SharedStrings(4096)


def lower_case_headers(headers: Message) -> dict[str, str]:
    """Header names in lower case; a repeated header's values joined with ", "."""
    joined: dict[str, str] = {}
    for name, value in headers.items():
        lower = _shared(name.lower())
        joined[lower] = f"{joined[lower]}, {value}" if lower in joined else _shared(value)
    return joined


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (``gzip`` or ``*`` with a q above 0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        name, _, value = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) > 0
            except ValueError:
                return False
        return True
    return False


def basic_auth_user(header: str | None) -> str | None:
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


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """(parsed JSON or None, whether the body was valid). An empty body is valid (None)."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant), True
    except (UnicodeDecodeError, ValueError):
        return None, False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def query_value(query: Mapping[str, list[str]], name: str) -> str | None:
    """The first value of a query parameter, or None."""
    values = query.get(name)
    return values[0] if values else None


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
