"""The API endpoints: each turns one routed request into a Reply, reading or changing the account."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.testing.server.attribute_rules import AttributeValidationError
from airflow_provider_chartmogul.testing.server.customers import StoredCustomer
from airflow_provider_chartmogul.testing.server.http import query_value
from airflow_provider_chartmogul.testing.server.replies import (
    CUSTOMER_NOT_FOUND_BODY,
    Reply,
    coded_error,
    json_reply,
)
from airflow_provider_chartmogul.testing.server.settings import Settings
from airflow_provider_chartmogul.testing.server.state import AccountStore, decode_cursor

DEFAULT_PER_PAGE = 200  # as recorded: without per_page the API answered "per_page": 200
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class ApiCall:
    """One routed API request, the settings it is answered with, and the account it acts on.

    ``store`` is only read or changed under ``lock`` (the server's).
    """

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    settings: Settings
    store: AccountStore
    lock: threading.RLock


def ping(call: ApiCall) -> Reply:
    return json_reply(200, {"data": "pong!"})


# ------------------------------------------------------------------------------ reading customers


def _page_params(query: dict[str, list[str]]) -> tuple[int | None, int] | Reply:
    """(the cursor's position, or None for a first page; per_page), or the 400."""
    raw_per_page = query_value(query, "per_page")
    per_page = DEFAULT_PER_PAGE
    if raw_per_page not in (None, ""):
        try:
            per_page = int(raw_per_page)
        except ValueError:
            per_page = -1
        if not 1 <= per_page <= MAX_PER_PAGE:
            return json_reply(
                400, {"errors": {"per_page": f"must be an integer between 1 and {MAX_PER_PAGE}"}}
            )
    cursor = query_value(query, "cursor")
    if not cursor:
        return None, per_page
    try:
        return decode_cursor(cursor), per_page
    except ValueError:
        return json_reply(400, {"errors": {"cursor": "is invalid"}})


def _listing(call: ApiCall, email: str | None, *, search: bool) -> Reply:
    """A page in the recorded envelopes: a first page carries the page counts too (the search's
    ``total_pages`` is null); a page fetched with a cursor only entries, cursor and has_more."""
    page_params = _page_params(call.query)
    if isinstance(page_params, Reply):
        return page_params
    start, per_page = page_params
    filters = {
        "external_id": query_value(call.query, "external_id") or None,
        "data_source_uuid": query_value(call.query, "data_source_uuid") or None,
        "email": email,
    }
    with call.lock:
        page = call.store.page(start=start or 0, per_page=per_page, **filters)
        entries = [customer.render(call.settings.customer_shape) for customer in page.customers]
        total = None if search or start is not None else call.store.count(**filters)
    if start is not None:
        return json_reply(200, {"entries": entries, "cursor": page.cursor, "has_more": page.has_more})
    return json_reply(
        200,
        {
            "entries": entries,
            "current_page": 1,
            "total_pages": None if total is None else -(-total // per_page),
            "has_more": page.has_more,
            "per_page": per_page,
            "page": 1,
            "cursor": page.cursor,
        },
    )


def list_customers(call: ApiCall) -> Reply:
    return _listing(call, query_value(call.query, "email") or None, search=False)


def search(call: ApiCall) -> Reply:
    email = query_value(call.query, "email")
    if not email:
        return json_reply(400, {"errors": {"email": "is missing"}})
    with call.lock:
        found = email.lower() in call.store.by_email
    if not found:
        return coded_error(404, f'Can\'t find any customers with email: "{email}"', "email")
    return _listing(call, email, search=True)


def _show_customer(call: ApiCall, show: Callable[[StoredCustomer], dict[str, Any]]) -> Reply:
    with call.lock:
        customer = call.store.customers.get(call.params["uuid"])
        shown = show(customer) if customer is not None else None
    if shown is None:
        return json_reply(404, CUSTOMER_NOT_FOUND_BODY)
    return json_reply(200, shown)


def retrieve(call: ApiCall) -> Reply:
    return _show_customer(call, lambda customer: customer.render(call.settings.customer_shape))


def attributes(call: ApiCall) -> Reply:
    return _show_customer(call, lambda customer: customer.attributes(call.settings.customer_shape))


# ------------------------------------------------------------------------ writing custom attributes


def _custom_of(body: Any) -> tuple[Any, Reply | None]:
    if not isinstance(body, dict) or "custom" not in body:
        return None, json_reply(400, {"errors": {"custom": "is missing"}})
    return body["custom"], None


def _bad_custom(error: TypeError) -> Reply:
    return json_reply(400, {"errors": {"custom": str(error)}})


def _prepare_typed(call: ApiCall, custom: Any) -> tuple[dict[str, Any], dict[str, str]] | Reply:
    """Values and new definitions of the POST form (call it under the lock), or the 400/422."""
    try:
        return call.store.prepare_typed(custom, call.settings.type_conflict)
    except TypeError as exc:
        return _bad_custom(exc)
    except AttributeValidationError as exc:
        return coded_error(422, exc.message, exc.key)


def _whole_map(customer: StoredCustomer) -> Reply:
    return json_reply(200, {"custom": dict(customer.custom)})


def _post_values(call: ApiCall, customer: StoredCustomer, entries: Any) -> Reply:
    prepared = _prepare_typed(call, entries)
    if isinstance(prepared, Reply):
        return prepared
    values, new_definitions = prepared
    call.store.definitions.update(new_definitions)
    customer.custom.update(values)
    return _whole_map(customer)


def _put_values(call: ApiCall, customer: StoredCustomer, custom: Any) -> Reply:
    try:
        values = call.store.prepare_untyped(custom)
    except TypeError as exc:
        return _bad_custom(exc)
    except AttributeValidationError as exc:
        return json_reply(422, {"error_details": {exc.key or "custom": [exc.message]}})
    customer.custom.update(values)
    return _whole_map(customer)


def _delete_keys(call: ApiCall, customer: StoredCustomer, keys: Any) -> Reply:
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        return json_reply(400, {"errors": {"custom": "must be an array of attribute keys"}})
    for key in keys:
        customer.custom.pop(key, None)
    if call.settings.delete_status == 204:
        return Reply(204, b"", None)
    if call.settings.delete_status == 202:
        return json_reply(202, {"message": f"Custom attributes removed: {', '.join(keys)}"})
    return _whole_map(customer)


def _change_custom(call: ApiCall, change: Callable[[ApiCall, StoredCustomer, Any], Reply]) -> Reply:
    """Under the lock: 404 for an unknown customer, 400 without ``custom``, else ``change``."""
    with call.lock:
        customer = call.store.customers.get(call.params["uuid"])
        if customer is None:
            return json_reply(404, CUSTOMER_NOT_FOUND_BODY)
        custom, missing = _custom_of(call.body)
        return missing if missing is not None else change(call, customer, custom)


def add_custom(call: ApiCall) -> Reply:
    """POST: the seed call; defines new keys account-wide."""
    return _change_custom(call, _post_values)


def update_custom(call: ApiCall) -> Reply:
    """PUT: values of keys already defined; errors in Rails style (``error_details``)."""
    return _change_custom(call, _put_values)


def remove_custom(call: ApiCall) -> Reply:
    """DELETE: keys the customer does not have are skipped; the answer's form is a setting."""
    return _change_custom(call, _delete_keys)


def add_custom_by_email(call: ApiCall) -> Reply:
    """POST by email: every customer with that email (case-insensitively); none is not an error."""
    custom, missing = _custom_of(call.body)
    if missing is not None:
        return missing
    email = call.body.get("email")
    if not isinstance(email, str) or not email.strip():
        return json_reply(400, {"errors": {"email": "is missing"}})
    with call.lock:
        prepared = _prepare_typed(call, custom)
        if isinstance(prepared, Reply):
            return prepared
        values, new_definitions = prepared
        matches = call.store.by_email_exact(email)
        if matches:
            call.store.definitions.update(new_definitions)
        for customer in matches:
            customer.custom.update(values)
        entries = [customer.render(call.settings.customer_shape) for customer in matches]
    return json_reply(200, {"entries": entries})
