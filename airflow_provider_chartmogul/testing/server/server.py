"""ChartMogulServer: the test server's lifecycle, its Python API, and the path of an API request."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_chartmogul.testing.server.admin import AdminApi, is_admin_path
from airflow_provider_chartmogul.testing.server.customers import DEFAULT_DATA_SOURCE_UUID, NEWEST_SHAPE
from airflow_provider_chartmogul.testing.server.faults import HEAD_TRICKLES, Faults, fault_reply
from airflow_provider_chartmogul.testing.server.http import (
    ApiRequest,
    Handler,
    HTTPServer,
    read_api_request,
)
from airflow_provider_chartmogul.testing.server.limits import Limits
from airflow_provider_chartmogul.testing.server.replies import (
    READ_ONLY_BODY,
    UNAUTHORIZED_BODY,
    Reply,
    coded_error,
    json_reply,
)
from airflow_provider_chartmogul.testing.server.request_log import RequestLog, RequestRecord
from airflow_provider_chartmogul.testing.server.responses import ApiCall
from airflow_provider_chartmogul.testing.server.routes import WRITE_METHODS, resolve
from airflow_provider_chartmogul.testing.server.settings import Settings, validate_settings
from airflow_provider_chartmogul.testing.server.state import AccountStore, bulk_load
from airflow_provider_chartmogul.testing.server.synthetic import check_synthetic
from airflow_provider_chartmogul.testing.server.trickle import send_trickled


class ChartMogulServer:
    """An in-memory ChartMogul account served over HTTP. See docs/test-server.md.

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
        delete_status: int = 204,
        customer_shape: str = NEWEST_SHAPE,
        record_requests: bool = True,
        request_log_limit: int | None = 100_000,
        request_log_body_bytes: int | None = 64 * 1024 * 1024,
        verbose: bool = False,
        quiet: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._verbose = verbose
        self._quiet = quiet
        self._lock = threading.RLock()
        self._settings = validate_settings(
            Settings(api_keys={}),
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
                "customer_shape": customer_shape,
                "record_requests": record_requests,
                "request_log_limit": request_log_limit,
                "request_log_body_bytes": request_log_body_bytes,
            },
        )
        self._store = AccountStore()
        self._log = RequestLog()
        self._limits = Limits()
        self._faults = Faults(self._settings.fault_seed)
        self._admin = AdminApi(self, self._store, self._lock)
        self._stopping = threading.Event()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> ChartMogulServer:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        httpd = HTTPServer(
            (self.host, self._requested_port), self._handle, verbose=self._verbose, quiet=self._quiet
        )
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
        billing_system_url, billing_system_type, chartmogul_url, website_url, owner, id, tags.
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
            ).render(self._settings.customer_shape)

    def add_customers(self, customers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Bulk add_customer under one lock (100k in 1-3 s here). Not atomic: on an error the
        customers before the bad one stay. After 10,000 or more it calls ``gc.freeze()`` so
        full garbage collections stop walking the loaded customers (see ``state.bulk_load``)."""
        shown: list[dict[str, Any]] = []
        with self._lock, bulk_load(shown):
            added = [self._store.add_customer(**dict(kwargs)) for kwargs in customers]
            shown.extend(customer.render(self._settings.customer_shape) for customer in added)
        return shown

    def load_customers(self, customers: Iterable[Mapping[str, Any]]) -> list[str]:
        """Like :meth:`add_customers`, but returns only the new uuids and renders nothing, so a
        large seed (the CLI's ``--seed``) does not add every rendered customer to peak memory."""
        with self._lock:
            return self._store.load(customers)

    def seed_synthetic(self, count: int, *, start: int = 0, custom_share: float = 1.0) -> int:
        """Add ``count`` synthetic customers (numbers ``start`` on) and define their keys; how many.

        Identifiers and custom values follow the formulas of :mod:`.synthetic` (docs/test-server.md,
        "Synthetic customers"); ``custom_share`` of them (spread evenly) hold custom attributes.
        A million load in a few seconds.
        """
        count, start, custom_share = check_synthetic(count, start, custom_share)
        with self._lock:
            return self._store.load_synthetic(count, start, custom_share)

    def define_attribute(self, key: str, type_: str) -> None:
        """Define ``key`` account-wide with ``type_`` (redefines an existing key)."""
        with self._lock:
            self._store.define(key, type_)

    def get_customer(self, uuid: str) -> dict[str, Any] | None:
        """A snapshot of the customer as the API shows it, or None."""
        with self._lock:
            customer = self._store.customers.get(uuid)
            return customer.render(self._settings.customer_shape) if customer is not None else None

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
        """A copy of the request log (API requests only, oldest first; bounded, see the settings
        ``request_log_limit`` and ``request_log_body_bytes``)."""
        with self._lock:
            return list(self._log.records)

    def indexed_requests(self, since: int = 0) -> list[tuple[int, RequestRecord]]:
        """The records kept whose index (counted from the last clear, dropped records included)
        is ``since`` or above, with their indices."""
        with self._lock:
            first = self._log.first_index
            skip = max(since - first, 0)
            return [(first + skip + i, record) for i, record in enumerate(list(self._log.records)[skip:])]

    def clear_requests(self) -> None:
        """Empty the request log (indices for ``?since=`` restart at 0). Stats are kept."""
        with self._lock:
            self._log.clear()

    def stats(self) -> dict[str, Any]:
        """Counters since start or reset().

        ``total``, ``by_status`` (int status -> count; string keys over ``/_testing/stats``),
        ``dropped`` (no answer), ``faults`` (kind -> count, "fail_customer" included),
        ``faults_injected``, ``rate_limited``, ``parallel_rejected``, ``in_flight``,
        ``max_in_flight``, ``log_records_dropped`` and ``log_bodies_dropped`` (what the request
        log's bounds took since it was last cleared), ``trickles`` (one dict per "trickle" fault:
        ``path``, ``started``, ``ended``, ``held``, ``bytes_sent``, ``body_bytes``, ``hung_up``).
        """
        with self._lock:
            trickles = [trickle.to_json() for trickle in self._log.trickles]
            return {**self._log.stats(), **self._limits.stats(), "trickles": trickles}

    def reset(self) -> None:
        """Forget customers, definitions, the log, queued faults, failing customers, the rate
        window and the stats; re-seed the fault generator. Settings are kept."""
        with self._lock:
            self._store.clear()
            self._log.clear()
            self._log.reset_counters()
            self._limits.reset()
            self._faults.reset(self._settings.fault_seed)

    # ---------------------------------------------------------------------------- behaviour

    def configure(self, **changes: Any) -> None:
        """Change settings at run time: latency, rate_limit, rate_limit_retry_after,
        max_parallel, faults, fault_seed (re-seeds the generator), slow_seconds, type_conflict,
        delete_status, customer_shape, record_requests, request_log_limit, request_log_body_bytes,
        trickle_seconds, api_keys. Raises TypeError/ValueError on bad input."""
        with self._lock:
            self._settings = validate_settings(self._settings, changes)
            if "fault_seed" in changes:
                self._faults.reseed(self._settings.fault_seed)

    @property
    def config(self) -> dict[str, Any]:
        """The current settings as a JSON-ready dict."""
        with self._lock:
            return self._settings.to_json()

    def queue_faults(self, kinds: Iterable[str]) -> None:
        """The next API requests get these faults, one each, in order (before random faults)."""
        with self._lock:
            self._faults.queue(kinds)

    def fail_customer(self, uuid: str, status: int = 500, body: Any = None, times: int | None = None) -> None:
        """Requests whose path names this customer (``/v1/customers/{uuid}...``) answer ``status``.

        ``times=None``: always; ``times=N``: the next N such requests; ``times=0`` removes the
        failure. ``body``: dict/list -> JSON, str/bytes -> text/plain, None -> the body this
        server normally sends with that status. Such requests change nothing.
        """
        with self._lock:
            self._faults.fail_customer(uuid, status, body, times)

    def fault_customer(self, uuid: str, kind: str, times: int | None = None) -> None:
        """Requests naming this customer get the fault ``kind`` (one of ``FAULT_KINDS``: "500",
        "drop", "trickle_head"...); ``times`` as for :meth:`fail_customer`."""
        with self._lock:
            self._faults.fault_customer(uuid, kind, times)

    def misdirect_lookup(self, external_id: str, answer_uuid: str | None) -> None:
        """A lookup ``GET /v1/customers?external_id=...`` answers the customer ``answer_uuid``
        (whose external id differs) instead; ``None`` ends it."""
        with self._lock:
            self._faults.misdirect_lookup(external_id, answer_uuid)

    # ---------------------------------------------------------------- the path of a request

    def _handle(self, handler: Handler, raw_body: bytes) -> None:
        split = urlsplit(handler.path)
        path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        if is_admin_path(path):
            answer = self._admin.serve(handler.command, path, query, raw_body, handler.client_address[0])
            handler.send_reply(answer)
            return
        self._serve_api(handler, read_api_request(handler, path, query, raw_body))

    def _serve_api(self, handler: Handler, request: ApiRequest) -> None:
        """Limits, latency, the answer, the log; then the answer is written (see the docs' order)."""
        with self._lock:
            settings = self._settings
            rejection = self._limits.admit(request.started, settings)
        answer = rejection
        try:
            if settings.latency > 0:
                self._stopping.wait(settings.latency)
            if answer is None:
                answer = self._answer_or_500(request)
            if answer.status is None:
                handler.close_connection = True
                if answer.linger > 0:
                    self._stopping.wait(answer.linger)
        finally:
            # Account before answering: once a client has its answer, the log, the stats and the
            # in-flight count already include the request.
            self._account(request, answer, admitted=rejection is None)
        if answer.trickle:
            handler.close_connection = True
            self._send_trickled(handler, answer, request)
        elif answer.status is not None:
            handler.send_reply(answer)

    def _answer_or_500(self, request: ApiRequest) -> Reply:
        try:
            return self._answer_api(request)
        except Exception as exc:  # a bug in this double must still answer, not hang a client
            if not self._quiet:
                traceback.print_exc()
            return coded_error(500, f"test server error: {exc!r}")

    def _answer_api(self, request: ApiRequest) -> Reply:
        """Fault, auth (401), route (404/405), read-only (403), failing customer, endpoint."""
        with self._lock:
            settings = self._settings
            fault = self._faults.next(settings)
        if fault is not None:
            return fault_reply(fault, settings)
        role = settings.api_keys.get(request.api_key) if request.api_key is not None else None
        if role is None:
            return json_reply(401, UNAUTHORIZED_BODY)  # as recorded: no WWW-Authenticate
        route = resolve(request.method, request.path)
        if isinstance(route, Reply):
            return route
        writes = request.method in WRITE_METHODS
        if writes and role != "read-write":
            return json_reply(403, READ_ONLY_BODY)
        uuid = route.params.get("uuid")
        if uuid is not None:
            with self._lock:
                failure = self._faults.take_failure(uuid, settings)
            if failure is not None:
                return failure
        with self._lock:
            misdirected = self._faults.misdirected(request.path, request.query, self._store)
        if misdirected is not None:
            return misdirected
        if writes and not request.body_ok:
            return json_reply(400, {"errors": {"body": "is not valid JSON"}})
        call = ApiCall(
            request.method, route.params, request.query, request.body, settings, self._store, self._lock
        )
        return route.endpoint(call)

    def _account(self, request: ApiRequest, answer: Reply | None, admitted: bool) -> None:
        ended = time.monotonic()
        with self._lock:
            if admitted:
                self._limits.release()
            self._log.add(request, answer, ended, self._settings)

    def _send_trickled(self, handler: Handler, answer: Reply, request: ApiRequest) -> None:
        head, body = handler.encode_reply(answer)
        handler.wfile.flush()
        trickle = send_trickled(
            handler.connection,
            head,
            body,
            self._settings.trickle_seconds,
            self._stopping,
            path=request.path,
            started=request.started,
            head_too=answer.fault in HEAD_TRICKLES,
        )
        with self._lock:
            self._log.trickles.append(trickle)
