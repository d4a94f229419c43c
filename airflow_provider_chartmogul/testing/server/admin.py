"""The control API under ``/_testing/``, for tests and benchmarks that run the server in another process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_chartmogul.testing.server.attribute_rules import validate_key, validate_type
from airflow_provider_chartmogul.testing.server.http import is_loopback, parse_json, query_value
from airflow_provider_chartmogul.testing.server.replies import Reply, json_reply
from airflow_provider_chartmogul.testing.server.state import AccountStore

if TYPE_CHECKING:
    from airflow_provider_chartmogul.testing.server.server import ChartMogulServer

ADMIN_PREFIX = "/_testing"

Query = dict[str, list[str]]
Endpoint = Callable[[Query, Any], Reply]
_OK: dict[str, Any] = {"ok": True}


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class AdminApi:
    """No auth, loopback clients only; never rate limited, faulted or logged.

    ``VERB /_testing/NAME`` is the method ``verb_name``; each mirrors ChartMogulServer's Python API.
    Bad input answers 400 ``{"error": "..."}``.
    """

    def __init__(self, server: ChartMogulServer, store: AccountStore, lock: threading.RLock) -> None:
        self._server = server
        self._store = store
        self._lock = lock

    def serve(self, method: str, path: str, query: Query, raw_body: bytes, client_host: str) -> Reply:
        if not is_loopback(client_host):
            return json_reply(403, {"error": "the /_testing endpoints only answer loopback clients"})
        name = path[len(ADMIN_PREFIX) :].strip("/")
        body, body_ok = parse_json(raw_body)
        if not body_ok:
            return json_reply(400, {"error": "body is not valid JSON"})
        endpoint: Endpoint | None = getattr(self, f"{method.lower()}_{name}", None)
        if endpoint is None:
            return json_reply(404, {"error": f"no admin endpoint {method} {path}"})
        try:
            return endpoint(query, body)
        except (TypeError, ValueError) as exc:
            return json_reply(400, {"error": str(exc)})

    def get_requests(self, query: Query, body: Any) -> Reply:
        since = int(query_value(query, "since") or 0)
        bodies = query_value(query, "bodies") != "0"
        records = self._server.indexed_requests(since)
        return json_reply(200, [{"index": index, **record.to_json(bodies)} for index, record in records])

    def delete_requests(self, query: Query, body: Any) -> Reply:
        self._server.clear_requests()
        return json_reply(200, _OK)

    def get_customers(self, query: Query, body: Any) -> Reply:
        uuid = query_value(query, "uuid")
        shape = self._server.config["customer_shape"]
        with self._lock:
            if query_value(query, "view") == "custom":
                return json_reply(200, {c.uuid: dict(c.custom) for c in self._store.order})
            if uuid is not None:
                customer = self._store.customers.get(uuid)
                shown = [customer.render(shape)] if customer is not None else []
            else:
                shown = [customer.render(shape) for customer in self._store.order]
        return json_reply(200, shown)

    def post_customers(self, query: Query, body: Any) -> Reply:
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise ValueError("body must be a list of add_customer keyword objects")
        with self._lock:
            uuids = self._store.load(body)
        return json_reply(200, {"count": len(uuids), "uuids": uuids})

    def post_synthetic(self, query: Query, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ValueError("body must be an object of seed_synthetic() keywords")
        count = self._server.seed_synthetic(**body)
        return json_reply(200, {"count": count})

    def get_config(self, query: Query, body: Any) -> Reply:
        return json_reply(200, self._server.config)

    def post_config(self, query: Query, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ValueError("body must be an object of configure() keywords")
        self._server.configure(**body)
        return self.get_config(query, body)

    def post_reset(self, query: Query, body: Any) -> Reply:
        self._server.reset()
        return json_reply(200, _OK)

    def get_stats(self, query: Query, body: Any) -> Reply:
        return json_reply(200, self._server.stats())

    def post_faults(self, query: Query, body: Any) -> Reply:
        if not isinstance(body, list):
            raise ValueError("body must be a list of fault kinds")
        self._server.queue_faults(body)
        return json_reply(200, {"ok": True, "queued": len(body)})

    def post_fail_customer(self, query: Query, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ValueError("body must be an object of fail_customer() keywords")
        self._server.fail_customer(**body)
        return json_reply(200, _OK)

    def get_definitions(self, query: Query, body: Any) -> Reply:
        return json_reply(200, self._server.definitions)

    def post_definitions(self, query: Query, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise ValueError("body must be an object key -> type")
        for key, type_ in body.items():  # all are checked before any is defined
            validate_type(type_, validate_key(key))
        for key, type_ in body.items():
            self._server.define_attribute(key, type_)
        return self.get_definitions(query, body)
