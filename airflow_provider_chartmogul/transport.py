"""The hook's HTTP transport: one pooled ``requests.Session``, and a lean way to send through it.

Every request the hook makes looks alike (same base URL, headers, key, TLS settings and timeout),
yet ``Session.request`` redoes all of that work per request: it merges settings, prepares the URL,
handles cookies twice, builds a ``Response``, looks for redirects and, without a charset, guesses the
encoding of the answer. That is about half of the client's CPU per customer. So the session's
headers, proxy choice and TLS settings are prepared once, and each request goes straight to the
connection pool of the session's own adapter: the same pool, connections and TLS context a
``session.request`` call would use, without the per-request work.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ClosedPoolError, SSLError

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.settings import ClientSettings


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
    """The request got no HTTP answer (connection refused or reset, timeout, TLS failure).

    :param reason: the underlying exception's class name only: its text can hold the URL and,
        with proxies, more.
    :param tls: the server's TLS certificate was refused, so nothing was sent.
    """

    def __init__(self, reason: str, *, tls: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tls = tls


# The callback of the request this thread is sending, run once its bytes are written.
_sending = threading.local()


@functools.cache
def _reporting_writes(connection_class: type[Any]) -> type[Any]:
    """``connection_class``, also calling this thread's ``on_written`` once a request is written."""

    class ReportingWrites(connection_class):  # type: ignore[misc,valid-type]
        def request(self, *args: Any, **kwargs: Any) -> None:
            super().request(*args, **kwargs)
            on_written = getattr(_sending, "on_written", None)
            if on_written is not None:
                on_written()

    ReportingWrites.__name__ = ReportingWrites.__qualname__ = f"ReportingWrites{connection_class.__name__}"
    return ReportingWrites


class Transport:
    """Sends requests to one ChartMogul base URL through one pooled ``requests.Session``.

    :param settings: the connection's settings (base URL, key, timeout, connections, TLS).
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        session = requests.Session()
        # REQUESTS_CA_BUNDLE, proxies and .netrc would otherwise be re-read from the environment on
        # every request, and a .netrc entry could replace the key. The proxies are read once here.
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
        self._adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=settings.max_connections,
            pool_block=True,
            max_retries=0,  # retries are the hook's: they must pass the rate limiter again
        )
        # Only the API's own URL: other URLs requested through get_conn() keep requests' defaults,
        # and cannot evict this adapter's pool.
        session.mount(settings.base_url, self._adapter)
        self.session = session

        # Exactly the headers session.request would send (session headers, then the key).
        template = session.prepare_request(requests.Request("POST", f"{settings.base_url}/", json={}))
        headers = {
            name: value if isinstance(value, str) else value.decode("latin-1")
            for name, value in template.headers.items()
        }
        self._authorization = headers.pop("Authorization")
        for computed in ("Content-Length", "Content-Type"):
            headers.pop(computed, None)
        self._headers = headers
        # Through an http:// proxy the request line carries the whole URL; otherwise only the path.
        self._url_prefix = self._adapter.request_url(template, session.proxies).removesuffix("/")
        self._template = template
        self._timeout = urllib3.Timeout(connect=min(10.0, settings.timeout), read=settings.timeout)
        self._no_retries = urllib3.Retry(total=False, redirect=False)  # retries are the hook's
        self._pool = self._connection_pool()

    def _connection_pool(self) -> urllib3.HTTPConnectionPool:
        pool = self._adapter.get_connection_with_tls_context(
            self._template, verify=self._settings.verify, proxies=self.session.proxies
        )
        pool.ConnectionCls = _reporting_writes(pool.ConnectionCls)
        return pool

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request and read its whole answer.

        :param path: the path under the base URL, starting with ``/``; callers encode segments.
        :param json_body: sent as ``application/json`` when not None.
        :param params: the query string.
        :param on_written: called once the request has been written to the connection, before
            the answer is read.
        :raises NoAnswer: when no HTTP answer came.
        :raises ValueError: ``json_body`` cannot be JSON (NaN or infinity, say).
        """
        url = self._url_prefix + path
        if params:
            url += "?" + urlencode(params, doseq=True)
        headers = dict(self._headers)
        body = None
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            headers["Content-Length"] = str(len(body))
            headers["Content-Type"] = "application/json"
        headers["Authorization"] = self._authorization
        _sending.on_written = on_written
        try:
            try:
                response = self._urlopen(method, url, body, headers)
            except ClosedPoolError:
                # The pool was closed under us (close(), or evicted by another use of the
                # session's adapter): take the adapter's current one.
                self._pool = self._connection_pool()
                response = self._urlopen(method, url, body, headers)
        except SSLError:
            raise NoAnswer("SSLError", tls=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise NoAnswer(type(exc).__name__) from None
        finally:
            _sending.on_written = None
        return Answer(response.status, response.headers, response.data)

    def _urlopen(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        return self._pool.urlopen(
            method,
            url,
            body=body,
            headers=headers,
            redirect=False,
            assert_same_host=False,
            retries=self._no_retries,
            timeout=self._timeout,
            preload_content=True,
            decode_content=True,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
