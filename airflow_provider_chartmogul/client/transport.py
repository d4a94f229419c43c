"""The hook's HTTP transport: one pooled ``requests.Session``, used through its public API only,
and a hard deadline on every exchange.

Every request goes through ``Session.request``, so ``responses``, ``requests-mock`` and adapters
mounted on :meth:`ChartMogulHook.get_conn` see and shape it. ``requests`` times out per socket
operation, so an answer that trickles in a byte at a time could hold a request for minutes: each
exchange runs on a daemon thread of its own while the caller waits at most ``timeout`` seconds for
the whole answer (connect, TLS, status line, headers and body); at the deadline the exchange's
socket is shut down, so its thread ends and its connection slot is free at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.client.settings import ClientSettings

_CHUNK = 64 * 1024
#: How much of an error answer is read (the message is at its start; a 150 MB page is not read).
MAX_ERROR_BODY_BYTES = 256 * 1024
#: The largest successful answer read (a page of 200 customers is well under 1 MB).
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: its status, headers (case-insensitive) and body (already decompressed)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text, in the charset the answer names (UTF-8 when it names none)."""
        charset = "utf-8"
        for part in (self.headers.get("Content-Type") or "").split(";")[1:]:
            name, _, value = part.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("\"'")
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON. :raises ValueError: when it is not JSON."""
        return json.loads(self.body)


class NoAnswer(Exception):
    """The request got no whole HTTP answer (connection refused or reset, deadline, TLS failure).

    :param reason: the underlying exception's class name only: its text can hold the URL and,
        with proxies, more.
    :param timeout: the deadline passed (the request may have been applied).
    :param fatal: why no attempt can succeed as configured (a refused certificate, TLS to a
        plain-HTTP server, an unreadable CA bundle): the message, else ``None`` (retried).
    """

    def __init__(self, reason: str, *, timeout: bool = False, fatal: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.fatal = fatal


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors behind it (causes, contexts, urllib3's ``reason``), outermost first."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ):
            if isinstance(inner, BaseException):
                todo.append(inner)
    return found


def _root_cause(exc: BaseException) -> str:
    """The class name of the deepest OS error behind ``exc`` (``ConnectionRefusedError`` rather
    than requests' ``ConnectionError``): names only, since the texts hold the URL."""
    names = [type(exc).__name__] + [type(e).__name__ for e in _causes(exc)[1:] if isinstance(e, OSError)]
    return names[-1]


# OpenSSL's reasons when the other end answered something that is no TLS record: plain HTTP.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)


def _tls_failure(exc: BaseException, base_url: str) -> NoAnswer:
    """A TLS failure by its cause: a refused certificate or a plain-HTTP server is final; an EOF,
    reset or timeout during the handshake is a connection error like any other."""
    causes = _causes(exc)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes):
        return NoAnswer(
            "SSLCertVerificationError",
            fatal="TLS certificate verification failed (SSLError); nothing was sent. Check the API "
            "base URL, or point the connection's 'verify' extra at a CA bundle",
        )
    if any(isinstance(e, ssl.SSLError) and getattr(e, "reason", None) in _NOT_TLS for e in causes):
        return NoAnswer(
            "SSLError",
            fatal=f"{base_url} does not speak TLS (it answered in plain HTTP); nothing was sent. "
            "Check the scheme and port of the connection's host",
        )
    if any(isinstance(e, TimeoutError | socket.timeout) for e in causes):
        return NoAnswer("TLSHandshakeTimeout", timeout=True)
    for e in reversed(causes):
        if isinstance(e, ssl.SSLError | ConnectionError):
            return NoAnswer(type(e).__name__)
    return NoAnswer("SSLError")


_tracking = threading.local()


class _Exchange:
    """One request in progress on its own thread, and how its caller gives up on it: at the
    deadline the exchange's socket is shut down, which wakes a read blocked on the status line,
    the headers or the body, so the thread ends and the connection is closed at once."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.abandoned = False
        self._socket: socket.socket | None = None
        self._done = False
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        """The request was written on ``sock``: from now on an abandon shuts it down."""
        if sock is None:
            return
        with self._lock:
            self._socket = sock
            abandoned = self.abandoned and not self._done
        if abandoned:
            self._shut(sock)

    def finish(self) -> None:
        """The answer is read: the socket goes back to the pool and is no longer ours to shut."""
        with self._lock:
            self._done = True
            self._socket = None

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            sock = None if self._done else self._socket
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Tracked:
    """Tells the exchange on this thread which socket its request was written on."""

    sock: socket.socket | None

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        exchange = getattr(_tracking, "exchange", None)
        if exchange is not None:
            exchange.attach(self.sock)


class _TrackedHTTPConnection(_Tracked, urllib3.connection.HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, urllib3.connection.HTTPSConnection):
    pass


class _TrackedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections that tell the exchange on their thread which socket
    carries its request (urllib3's documented ``ConnectionCls`` of a pool class)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class Transport:
    """Sends requests to one ChartMogul base URL through one pooled ``requests.Session``.

    :param settings: the connection's settings (base URL, key, timeout, connections, TLS).
    :param clock: seconds, monotonic (injected in tests).
    """

    def __init__(self, settings: ClientSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        session = requests.Session()
        # REQUESTS_CA_BUNDLE and .netrc would otherwise be re-read from the environment on every
        # request, and a .netrc entry could replace the key. Proxies are read once, here.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(settings.base_url))
        session.auth = (settings.api_key, "")
        session.verify = settings.verify
        session.headers.update(
            {
                "User-Agent": f"airflow-provider-chartmogul/{__version__} "
                f"python-requests/{requests.__version__}",
                "Accept": "application/json",
            }
        )
        adapter = _DeadlineAdapter(
            pool_connections=1,
            pool_maxsize=settings.max_connections,
            pool_block=True,
            max_retries=0,  # retries are the hook's: they must pass the flow control again
        )
        # Only the API's own URL: other URLs requested through get_conn() keep requests' defaults.
        session.mount(settings.base_url, adapter)
        self.session = session
        self._timeout = (min(10.0, settings.timeout), settings.timeout)
        self._live: set[_Exchange] = set()
        self._live_lock = threading.Lock()
        self._closed = False

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request and read its whole answer within the connection's ``timeout``.

        Each exchange runs on a daemon thread of its own, so one left behind never delays the
        process's exit, and never holds up another exchange.

        :param path: the path under the base URL, starting with ``/``; callers encode segments.
        :param body: JSON, sent as ``application/json`` when not None.
        :param params: the query string.
        :param on_finished: called once the exchange is over, on whichever thread ends it (after
            the deadline, that is the exchange's thread: the connection is only free then).
        :raises NoAnswer: when no whole answer came in time.
        """
        headers = None if body is None else {"Content-Type": "application/json"}
        url = self._settings.base_url + path
        exchange = _Exchange(deadline=self._clock() + self._settings.timeout)
        future: Future[Answer] = Future()
        with self._live_lock:
            closed = self._closed
            if not closed:
                self._live.add(exchange)
        if closed:
            if on_finished is not None:
                on_finished()
            raise NoAnswer("TransportClosed")
        thread = threading.Thread(
            target=self._run,
            args=(future, method, url, body, headers, params, exchange, on_finished),
            name="chartmogul-http",
            daemon=True,
        )
        thread.start()
        try:
            return future.result(timeout=max(0.0, exchange.deadline - self._clock()))
        except FutureTimeout:
            exchange.abandon()
            raise NoAnswer("Timeout", timeout=True) from None
        except BaseException:  # the caller was interrupted (a task timeout): end the exchange too
            exchange.abandon()
            raise

    def _run(
        self,
        future: Future[Answer],
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        params: Mapping[str, Any] | None,
        exchange: _Exchange,
        on_finished: Callable[[], None] | None,
    ) -> None:
        _tracking.exchange = exchange
        try:
            future.set_result(self._exchange(method, url, body, headers, params, exchange))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            _tracking.exchange = None
            with self._live_lock:
                self._live.discard(exchange)
            if on_finished is not None:
                on_finished()

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        params: Mapping[str, Any] | None,
        exchange: _Exchange,
    ) -> Answer:
        try:
            response = self.session.request(
                method,
                url,
                data=body,
                headers=headers,
                params=params,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError as exc:
            raise _tls_failure(exc, self._settings.base_url) from None
        except requests.exceptions.Timeout as exc:
            raise NoAnswer(type(exc).__name__, timeout=True) from None
        except requests.RequestException as exc:
            if exchange.abandoned:
                raise NoAnswer("Timeout", timeout=True) from None
            raise NoAnswer(_root_cause(exc)) from None
        except OSError as exc:  # requests' own check of the CA bundle path
            raise NoAnswer(
                type(exc).__name__,
                fatal="the CA bundle in the connection's 'verify' extra cannot be read "
                f"({type(exc).__name__}); nothing was sent",
            ) from None
        with response:
            limit = MAX_BODY_BYTES if response.status_code < 300 else MAX_ERROR_BODY_BYTES
            chunks = []
            size = 0
            try:
                for chunk in response.iter_content(_CHUNK):
                    chunks.append(chunk)
                    size += len(chunk)
                    if exchange.abandoned or self._clock() > exchange.deadline:
                        raise NoAnswer("Timeout", timeout=True)
                    if size >= limit:
                        break  # an error page's message is at its start; the rest is not read
            except requests.exceptions.Timeout as exc:
                raise NoAnswer(type(exc).__name__, timeout=True) from None
            except (requests.RequestException, OSError) as exc:
                if exchange.abandoned:
                    raise NoAnswer("Timeout", timeout=True) from None
                raise NoAnswer(_root_cause(exc)) from None
            if size >= limit and response.status_code < 300:
                raise NoAnswer("AnswerTooLarge")
            exchange.finish()
            return Answer(response.status_code, response.headers, b"".join(chunks)[:limit])

    def close(self) -> None:
        """Close the pooled connections; exchanges still in flight are abandoned (their sockets
        shut down), so their threads end at once."""
        with self._live_lock:
            self._closed = True
            live = list(self._live)
        for exchange in live:
            exchange.abandon()
        self.session.close()
