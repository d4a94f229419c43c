"""ChartMogulHook: the connection, the HTTP session and one method per ChartMogul API call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import quote

import requests

from airflow_provider_chartmogul.attributes import (
    CustomAttribute,
    infer_type,
    normalize_attribute,
    normalize_custom,
    validate_key,
)
from airflow_provider_chartmogul.client.engine import RequestEngine, RequestStats
from airflow_provider_chartmogul.client.identifiers import (
    data_source_uuids,
    external_ids,
    validate_customer_uuid,
)
from airflow_provider_chartmogul.client.redis_connection import open_shared_budget
from airflow_provider_chartmogul.client.send_control import SendGate
from airflow_provider_chartmogul.client.settings import ClientSettings, build_settings, check_override
from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS
from airflow_provider_chartmogul.client.shared_budget import SharedBudget
from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulCancelledError,
    ChartMogulValidationError,
    shorten,
)
from airflow_provider_chartmogul.get_provider_info import CONNECTION_TYPE, UI_FIELD_BEHAVIOUR
from airflow_provider_chartmogul.metrics import ChartMogulMetrics, RequestMetrics, task_tags
from airflow_provider_chartmogul.redaction import register_secret
from airflow_provider_chartmogul.version_compat import BaseHook

JSON = Any
MAX_PAGE_SIZE = 200
ATTRIBUTES_PATH = "/v1/customers/{}/attributes"  # formatted with the customer uuid, quoted


def _segment(value: str) -> str:
    """One URL path segment; nothing in it can change the path."""
    return quote(value, safe="")


class ChartMogulHook(BaseHook):
    """Talks to the ChartMogul API with the key of a ``chartmogul`` Airflow connection.

    One pooled ``requests.Session`` per hook, shared by the threads of one task. Every request
    goes through a smooth client-side rate limiter and a cap on requests in flight, has a timeout,
    and is retried on 429, 5xx and connection errors with exponential backoff and jitter
    (honouring ``Retry-After``), bounded both by a retry count and a time budget.

    Connection fields: the API key in *password*; *host* optional (default
    ``https://api.chartmogul.com``); extras ``timeout``, ``max_retries``, ``retry_budget``,
    ``max_requests_per_second``, ``max_connections`` and ``verify``.

    :param chartmogul_conn_id: the Airflow connection of type ``chartmogul``.
    :param timeout: seconds to wait for one answer; overrides the connection.
    :param max_retries: retries of one request; overrides the connection.
    :param retry_budget: seconds one request may spend retrying; overrides the connection.
    :param max_requests_per_second: client-side rate limit; overrides the connection.
    :param max_connections: requests in flight at once; overrides the connection.
    :param shared_budget_conn_id: a ``redis`` connection holding the account-wide request budget
        (docs/shared-budget.md); overrides the connection's extra of the same name.
    """

    conn_name_attr = "chartmogul_conn_id"
    default_conn_name = "chartmogul_default"
    conn_type = CONNECTION_TYPE
    hook_name = "ChartMogul"

    def __init__(
        self,
        chartmogul_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_budget: float | None = None,
        max_requests_per_second: float | None = None,
        max_connections: int | None = None,
        shared_budget_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.chartmogul_conn_id = chartmogul_conn_id
        overrides = {
            "timeout": timeout,
            "max_retries": max_retries,
            "retry_budget": retry_budget,
            "max_requests_per_second": max_requests_per_second,
            "max_connections": max_connections,
            "shared_budget_conn_id": shared_budget_conn_id,
        }
        self._overrides = {name: check_override(name, value) for name, value in overrides.items()}
        self._settings: ClientSettings | None = None
        self._engine: RequestEngine | None = None
        self._budget: SharedBudget | None = None
        self._setup_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._cancel_reason = ""
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chartmogul_conn_id={self.chartmogul_conn_id!r})"

    # ---- connection form (Airflow 2.x, 3.0 and 3.1; 3.2+ reads the provider info) -------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, spec in CONNECTION_EXTRA_FIELDS.items():
            schema = spec["schema"]
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            field_class = IntegerField if "integer" in types else StringField
            validators: list[Any] = [Optional()]
            if "integer" in types:
                validators.append(NumberRange(min=schema.get("minimum"), max=schema.get("maximum")))
            widgets[name] = field_class(
                lazy_gettext(spec["label"]),
                description=spec.get("description"),
                widget=BS3TextFieldWidget(),
                validators=validators,
                default=schema.get("default"),
            )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # ---- session ---------------------------------------------------------------------------------

    @property
    def settings(self) -> ClientSettings:
        """The connection's settings, read once; registers the key with Airflow's secrets masker."""
        if self._settings is None:
            with self._setup_lock:
                if self._settings is None:
                    conn = self.get_connection(self.chartmogul_conn_id)
                    settings = build_settings(conn, overrides=self._overrides)
                    register_secret(settings.api_key)
                    self._settings = settings
                    # The budget's Redis connection is read with the ChartMogul one (nothing is sent).
                    self._budget = open_shared_budget(settings, self.get_connection, logger=self.log)
        return self._settings

    @property
    def max_connections(self) -> int:
        """How many requests this hook lets be in flight at once."""
        return self.settings.max_connections

    @property
    def requests_in_backoff(self) -> int:
        """How many of this hook's callers are waiting out a retry's back-off now. Such a caller
        holds its own thread and no connection slot: a caller with a pool of threads can run this
        many more at once without exceeding :attr:`max_connections` requests in flight."""
        engine = self._engine
        return 0 if engine is None else engine.in_backoff

    def get_conn(self) -> requests.Session:
        """The hook's pooled session (created on first use), ready for calls this hook lacks."""
        return self.engine.transport.session

    @cached_property
    def metrics(self) -> ChartMogulMetrics:
        """This hook's metrics (docs/metrics.md), tagged with the task it runs in."""
        return ChartMogulMetrics(task_tags())

    @property
    def engine(self) -> RequestEngine:
        """The request engine (session, flow control, retries), created on first use."""
        engine = self._engine
        if engine is None:
            settings = self.settings
            with self._setup_lock:
                if self._engine is None:
                    if self._budget is None:  # closed before
                        self._budget = open_shared_budget(settings, self.get_connection, logger=self.log)
                    gates: list[SendGate] = [self._budget] if self._budget is not None else []
                    gates.append(RequestMetrics(self.metrics, send_rate=lambda: self.engine.limiter.rate))
                    self._engine = RequestEngine(settings, self.stats, log=self.log, gates=gates)
                    if self._cancelled.is_set():
                        self._engine.cancel(self._cancel_reason)
                engine = self._engine
        return engine

    @property
    def shared_budget(self) -> SharedBudget | None:
        """The account-wide budget this hook's requests take their slots from (once its settings
        are read), or ``None`` without one; ``shared_budget.status()`` is for the report."""
        return self._budget

    def cancel(self, reason: str = "the task was stopped") -> None:
        """Stop this hook: no new request starts after it, and callers waiting for a send slot or a
        retry wake at once; each raises :class:`ChartMogulCancelledError`. Requests already in
        flight end within their deadline. Safe to call from any thread (``on_kill``)."""
        with self._setup_lock:
            self._cancel_reason = reason
            self._cancelled.set()
            if self._engine is not None:
                self._engine.cancel(reason)

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def close(self) -> None:
        """Close the pooled connections."""
        with self._setup_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.close()

    def __enter__(self) -> ChartMogulHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: JSON = None,
        params: Mapping[str, Any] | None = None,
        priority: bool = False,
    ) -> Any:
        """Send one API request (retried as the connection allows); the parsed JSON answer.

        :param path: the path under the base URL, starting with ``/v1/``; callers encode segments.
        :param priority: go ahead of other requests waiting for a send slot (listing pages that
            writes wait for).
        :raises ChartMogulAuthError: 401, or a 403 before any request of its kind (read, write)
            succeeded with this key.
        :raises ChartMogulForbiddenError: a 403 after requests of its kind succeeded: this one
            request was refused, not the key (not fatal).
        :raises ChartMogulTLSError: the server's certificate was refused.
        :raises ChartMogulUnavailableError: nothing succeeded for a while (the circuit breaker).
        :raises ChartMogulCancelledError: :meth:`cancel` was called.
        :raises ChartMogulAPIError: any other error answer, or no answer, after retries.
        """
        if self._cancelled.is_set():
            raise ChartMogulCancelledError(
                f"not sent: {self._cancel_reason}", method=method, path=path, retryable=True
            )
        return self.engine.request(method, path, json_body=json_body, params=params, priority=priority)

    # ---- API calls -------------------------------------------------------------------------------

    def ping(self) -> str:
        """``GET /v1/ping``; the API's answer (``"pong!"``)."""
        answer = self.request("GET", "/v1/ping")
        return str(answer.get("data")) if isinstance(answer, dict) else str(answer)

    def test_connection(self) -> tuple[bool, str]:
        """Used by Airflow's *Test* button: ping ChartMogul with the connection's key."""
        try:
            answer = self.ping()
        except Exception as exc:  # the UI shows any failure as text
            return False, str(exc)
        return True, f"Connected to ChartMogul at {self.settings.base_url} (ping answered {answer!r})"

    # ---- custom attributes ---------------------------------------------------------------------
    # The public methods check a direct caller's values, then send through ``_send_*``, which take
    # checked values: a push run checks its records once, as they enter it (push/records.py).

    @staticmethod
    def _checked_uuid(customer_uuid: Any) -> tuple[str, str]:
        """The checked uuid and the label errors about that customer carry."""
        uuid = validate_customer_uuid(customer_uuid, customer=f"customer_uuid={customer_uuid!r}")
        return uuid, f"customer_uuid={uuid}"

    def add_custom_attributes(
        self,
        customer_uuid: str,
        custom: Sequence[Mapping[str, Any] | CustomAttribute],
        *,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Add custom attributes to a customer: the seed call.

        ``POST /v1/customers/{uuid}/attributes/custom``

        :param customer_uuid: the ChartMogul customer uuid (``cus_...``); never empty: the
            official client's fallback to the by-email call is deliberately not reproduced.
        :param custom: the seed's list of ``{"type", "key", "value", "source"?}`` (or
            :class:`CustomAttribute`); validated first, and nothing is sent if any attribute
            breaks a rule.
        :param source: applied to attributes that carry no ``source`` of their own.
        :return: the customer's whole custom-attribute map after the call.
        """
        uuid, label = self._checked_uuid(customer_uuid)
        attributes = normalize_custom(custom, customer=label, default_source=source)
        if not attributes:
            raise ChartMogulValidationError("custom is empty: there is nothing to add", customer=label)
        return self._send_add(uuid, attributes)

    def update_custom_attributes(self, customer_uuid: str, custom: Mapping[str, Any]) -> dict[str, Any]:
        """Change the values of attributes the account already defines (``PUT``).

        :param custom: ``{key: value}`` or ``{key: {"value": value, "source": source}}``.
        :return: the customer's whole custom-attribute map after the call.
        """
        uuid, label = self._checked_uuid(customer_uuid)
        if not isinstance(custom, Mapping) or not custom:
            raise ChartMogulValidationError(
                "custom must be a non-empty mapping of key to value",
                customer=label,
                value=custom,
                has_value=True,
            )
        body = {key: self._checked_update(key, value, customer=label) for key, value in custom.items()}
        return self._send_update(uuid, body)

    def remove_custom_attributes(self, customer_uuid: str, keys: Iterable[str]) -> dict[str, Any] | None:
        """Remove attributes from a customer (``DELETE``).

        :return: the remaining custom-attribute map when the API sends it (200), else ``None``
            (202 and 204 are accepted too: different API versions answer differently).
        """
        uuid, label = self._checked_uuid(customer_uuid)
        if isinstance(keys, str):
            keys = [keys]
        checked = [validate_key(key, customer=label) for key in keys]
        if not checked:
            raise ChartMogulValidationError("no keys to remove", customer=label)
        return self._send_remove(uuid, checked)

    def get_custom_attributes(self, customer_uuid: str) -> dict[str, Any]:
        """The customer's custom attributes (``GET /v1/customers/{uuid}/attributes``)."""
        uuid, _ = self._checked_uuid(customer_uuid)
        return self._read_custom(uuid)

    def _send_add(self, uuid: str, attributes: Sequence[CustomAttribute]) -> dict[str, Any]:
        """``POST`` checked ``attributes`` (non-empty) to the customer of checked ``uuid``."""
        path = ATTRIBUTES_PATH.format(_segment(uuid)) + "/custom"
        answer = self.request("POST", path, json_body={"custom": [a.as_payload() for a in attributes]})
        return self._custom_map(answer, "POST", path)

    def _send_update(self, uuid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT`` a checked ``{key: value or {"value", "source"}}`` (non-empty)."""
        path = ATTRIBUTES_PATH.format(_segment(uuid)) + "/custom"
        answer = self.request("PUT", path, json_body={"custom": dict(body)})
        return self._custom_map(answer, "PUT", path)

    def _send_remove(self, uuid: str, keys: Sequence[str]) -> dict[str, Any] | None:
        """``DELETE`` checked ``keys`` (non-empty); the remaining map when the API sends one."""
        path = ATTRIBUTES_PATH.format(_segment(uuid)) + "/custom"
        answer = self.request("DELETE", path, json_body={"custom": list(keys)})
        if isinstance(answer, dict) and isinstance(answer.get("custom"), dict):
            return answer["custom"]
        return None

    def _read_custom(self, uuid: str) -> dict[str, Any]:
        """The custom attributes of the customer of checked ``uuid``."""
        path = ATTRIBUTES_PATH.format(_segment(uuid))
        return self._custom_map(self.request("GET", path), "GET", path)

    def add_custom_attributes_by_email(
        self, email: str, custom: Sequence[Mapping[str, Any] | CustomAttribute], *, source: str | None = None
    ) -> list[dict[str, Any]]:
        """Add custom attributes to **every** customer with this email; the customers it matched.

        ChartMogul applies this to all customers sharing the email, and answers 200 even when none
        matches. The operator never uses it behind the user's back; it resolves emails first.
        """
        label = f"email={email!r}"
        if not isinstance(email, str) or "@" not in email:
            raise ChartMogulValidationError("email must be an email address", customer=label)
        attributes = normalize_custom(custom, customer=label, default_source=source)
        if not attributes:
            raise ChartMogulValidationError("custom is empty: there is nothing to add", customer=label)
        body = {"email": email, "custom": [a.as_payload() for a in attributes]}
        answer = self.request("POST", "/v1/customers/attributes/custom", json_body=body)
        entries = answer.get("entries") if isinstance(answer, dict) else None
        return list(entries or [])

    def iter_customers(
        self,
        external_id: str | None = None,
        data_source_uuid: str | None = None,
        email: str | None = None,
        *,
        per_page: int = MAX_PAGE_SIZE,
        on_page: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Customers matching the filters (all customers without any), following cursor pagination.

        An ``email`` is looked up with the search endpoint, which answers 404 when nothing
        matches: that yields nothing. Several customers may share an email, and an external id is
        unique only within a data source.

        :param on_page: called once per page requested (to count what a lookup cost).
        """
        params: dict[str, Any]
        if email is not None:
            path, params = "/v1/customers/search", {"email": email}
        else:
            path, params = "/v1/customers", {}
            if external_id is not None:
                params["external_id"] = external_id
            if data_source_uuid is not None:
                params["data_source_uuid"] = data_source_uuid
        params["per_page"] = max(1, min(per_page, MAX_PAGE_SIZE))
        seen: set[str] = set()
        while True:
            if on_page is not None:
                on_page()
            try:
                page = self.request("GET", path, params=params, priority=True)
            except ChartMogulAPIError as exc:
                if email is not None and exc.status == 404:
                    return
                raise
            for customer in (page or {}).get("entries") or []:
                if email is not None and not _matches(customer, external_id, data_source_uuid):
                    continue
                yield customer
            cursor = (page or {}).get("cursor")
            if not (page or {}).get("has_more") or not cursor:
                return
            if not isinstance(cursor, str) or cursor in seen:
                raise ChartMogulAPIError(
                    f"the listing did not advance: page {len(seen) + 1} named the cursor "
                    f"{shorten(cursor, 40)}, which is no new cursor; the listing ends here, incomplete",
                    status=200,
                    method="GET",
                    path=path,
                    retryable=False,
                )
            seen.add(cursor)
            params = {**params, "cursor": cursor}

    @staticmethod
    def _checked_update(key: Any, value: Any, *, customer: str) -> Any:
        """One ``PUT`` entry, checked by the same rules as the seed's attributes (key, length, lone
        surrogates, NaN and infinity, integer range, source); its type is the value's own."""
        inner, source = (
            (value.get("value"), value.get("source")) if isinstance(value, Mapping) else (value, None)
        )
        try:
            type_ = infer_type(inner)
        except ValueError:
            raise ChartMogulValidationError(
                "value must be a string, number, boolean or timestamp",
                customer=customer,
                key=validate_key(key, customer=customer),
                value=inner,
                has_value=True,
            ) from None
        raw: dict[str, Any] = {"type": type_, "key": key, "value": inner}
        if source is not None:
            raw["source"] = source
        attribute = normalize_attribute(raw, customer=customer)
        if isinstance(value, Mapping):
            return {**value, "value": attribute.value}
        return attribute.value

    @staticmethod
    def _custom_map(answer: Any, method: str, path: str) -> dict[str, Any]:
        """The ``custom`` map of an answer about one customer; anything else is an error (the
        write may have been applied: replaying it is safe)."""
        if isinstance(answer, dict) and isinstance(answer.get("custom"), dict):
            return answer["custom"]
        shown = shorten(json.dumps(answer, default=repr), 200, quote=False)
        raise ChartMogulAPIError(
            f"unexpected answer: a JSON object with a 'custom' map was expected, got {shown}",
            status=200,
            method=method,
            path=path,
            retryable=False,
        )


def _matches(customer: Mapping[str, Any], external_id: str | None, data_source_uuid: str | None) -> bool:
    if external_id is not None and external_id not in external_ids(customer):
        return False
    return data_source_uuid is None or data_source_uuid in data_source_uuids(customer)
