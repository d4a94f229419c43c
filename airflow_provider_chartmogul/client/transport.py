"""The hook's HTTP transport: one pooled ``requests.Session``, used through its public API only,
and a hard deadline on every exchange.

Every request goes through ``Session.request``, so ``responses``, ``requests-mock`` and adapters
mounted on :meth:`ChartMogulHook.get_conn` see and shape it. ``requests`` times out per socket
operation, so an answer that trickles in a byte at a time could hold a request for minutes: each
exchange runs on one of the transport's I/O threads while the caller waits at most ``timeout``
seconds for the whole answer (connect, headers and body). An exchange left behind is closed as soon
as its thread gets control back, and keeps its connection slot until then.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.client.settings import ClientSettings

_CHUNK = 64 * 1024


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
    :param tls: the server's TLS certificate was refused, so nothing was sent.
    :param timeout: the deadline passed (the request may have been applied).
    """

    def __init__(self, reason: str, *, tls: bool = False, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tls = tls
        self.timeout = timeout


def _root_cause(exc: BaseException) -> str:
    """The class name of the deepest error behind ``exc`` (``ConnectionRefusedError`` rather than
    requests' ``ConnectionError``): names only, since the texts hold the URL."""
    names = [type(exc).__name__]
    seen = {id(exc)}
    inner = exc.__cause__ or exc.__context__
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if isinstance(inner, OSError):
            names.append(type(inner).__name__)
        inner = inner.__cause__ or inner.__context__
    return names[-1]


class _Exchange:
    """One request in progress on an I/O thread, and how its caller gives up on it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.abandoned = False
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def started(self, response: requests.Response) -> None:
        with self._lock:
            self._response = response
            abandoned = self.abandoned
        if abandoned:
            self._stop_reading(response)

    def abandon(self) -> None:
        """The deadline passed: end a body read blocked on a trickling answer now, so the connection
        is closed at once rather than when the answer is complete."""
        with self._lock:
            self.abandoned = True
            response = self._response
        if response is not None:
            self._stop_reading(response)

    @staticmethod
    def _stop_reading(response: requests.Response) -> None:
        # urllib3 2.3+: shuts the socket down for reading, which wakes a read blocked on it. Mocks
        # and older urllib3 have no such method; their reads end at the socket timeout.
        shutdown = getattr(response.raw, "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                shutdown()


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
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=settings.max_connections,
            pool_block=True,
            max_retries=0,  # retries are the hook's: they must pass the flow control again
        )
        # Only the API's own URL: other URLs requested through get_conn() keep requests' defaults.
        session.mount(settings.base_url, adapter)
        self.session = session
        self._timeout = (min(10.0, settings.timeout), settings.timeout)
        self._io = ThreadPoolExecutor(
            max_workers=settings.max_connections, thread_name_prefix="chartmogul-http"
        )
        self._closed = False

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request and read its whole answer within the connection's ``timeout``.

        :param path: the path under the base URL, starting with ``/``; callers encode segments.
        :param json_body: sent as ``application/json`` when not None.
        :param params: the query string.
        :param on_finished: called once the exchange is over, on whichever thread ends it (after
            the deadline, that is the I/O thread: the connection is only free then).
        :raises NoAnswer: when no whole answer came in time.
        :raises ValueError: ``json_body`` cannot be JSON (NaN or infinity, say).
        """
        body = None
        headers = None
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        url = self._settings.base_url + path
        exchange = _Exchange(deadline=self._clock() + self._settings.timeout)
        try:
            future = self._io.submit(
                self._exchange, method, url, body, headers, params, exchange, on_finished
            )
        except RuntimeError:  # closed
            if on_finished is not None:
                on_finished()
            raise NoAnswer("TransportClosed") from None
        try:
            return future.result(timeout=max(0.0, exchange.deadline - self._clock()))
        except FutureTimeout:
            exchange.abandon()
            raise NoAnswer("Timeout", timeout=True) from None

    def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        params: Mapping[str, Any] | None,
        exchange: _Exchange,
        on_finished: Callable[[], None] | None,
    ) -> Answer:
        try:
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
            except requests.exceptions.SSLError:
                raise NoAnswer("SSLError", tls=True) from None
            except requests.exceptions.Timeout as exc:
                raise NoAnswer(type(exc).__name__, timeout=True) from None
            except (requests.RequestException, OSError) as exc:
                raise NoAnswer(_root_cause(exc)) from None
            with response:
                exchange.started(response)
                chunks = []
                try:
                    for chunk in response.iter_content(_CHUNK):
                        chunks.append(chunk)
                        if exchange.abandoned or self._clock() > exchange.deadline:
                            raise NoAnswer("Timeout", timeout=True)
                except requests.exceptions.Timeout as exc:
                    raise NoAnswer(type(exc).__name__, timeout=True) from None
                except (requests.RequestException, OSError) as exc:
                    if exchange.abandoned:
                        raise NoAnswer("Timeout", timeout=True) from None
                    raise NoAnswer(_root_cause(exc)) from None
                return Answer(response.status_code, response.headers, b"".join(chunks))
        finally:
            if on_finished is not None:
                on_finished()

    def close(self) -> None:
        """Close the pooled connections and the I/O threads (exchanges left behind end on their own)."""
        self._io.shutdown(wait=False, cancel_futures=True)
        self.session.close()
