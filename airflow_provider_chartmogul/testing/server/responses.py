"""The API endpoints: each turns one routed request into an Answer, reading or changing the account."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_chartmogul.testing.server.answers import (
    CUSTOMER_NOT_FOUND_BODY,
    Answer,
    coded_error,
    json_answer,
)
from airflow_provider_chartmogul.testing.server.attribute_rules import AttributeValidationError
from airflow_provider_chartmogul.testing.server.customers import StoredCustomer
from airflow_provider_chartmogul.testing.server.http import query_value
from airflow_provider_chartmogul.testing.server.settings import Settings
from airflow_provider_chartmogul.testing.server.state import AccountStore, decode_cursor

DEFAULT_PER_PAGE = 50
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


def ping(call: ApiCall) -> Answer:
    return json_answer(200, {"data": "pong!"})


# ------------------------------------------------------------------------------ reading customers


def _page_params(query: dict[str, list[str]]) -> tuple[int, int] | Answer:
    raw_per_page = query_value(query, "per_page")
    per_page = DEFAULT_PER_PAGE
    if raw_per_page not in (None, ""):
        try:
            per_page = int(raw_per_page)
        except ValueError:
            per_page = -1
        if not 1 <= per_page <= MAX_PER_PAGE:
            return json_answer(
                400, {"errors": {"per_page": f"must be an integer between 1 and {MAX_PER_PAGE}"}}
            )
    start = 0
    cursor = query_value(query, "cursor")
    if cursor:
        try:
            start = decode_cursor(cursor)
        except ValueError:
            return json_answer(400, {"errors": {"cursor": "is invalid"}})
    return start, per_page


def _listing(call: ApiCall, email: str | None) -> Answer:
    page_params = _page_params(call.query)
    if isinstance(page_params, Answer):
        return page_params
    start, per_page = page_params
    with call.lock:
        page = call.store.page(
            start=start,
            per_page=per_page,
            external_id=query_value(call.query, "external_id") or None,
            data_source_uuid=query_value(call.query, "data_source_uuid") or None,
            email=email,
        )
        entries = [customer.render() for customer in page.customers]
    return json_answer(200, {"entries": entries, "cursor": page.cursor, "has_more": page.has_more})


def list_customers(call: ApiCall) -> Answer:
    return _listing(call, query_value(call.query, "email") or None)


def search(call: ApiCall) -> Answer:
    email = query_value(call.query, "email")
    if not email:
        return json_answer(400, {"errors": {"email": "is missing"}})
    with call.lock:
        found = bool(call.store.by_email.get(email.lower()))
    if not found:
        return coded_error(404, f"No customers found with email {email!r}", "email")
    return _listing(call, email)


def _show_customer(call: ApiCall, show: Callable[[StoredCustomer], dict[str, Any]]) -> Answer:
    with call.lock:
        customer = call.store.customers.get(call.params["uuid"])
        shown = show(customer) if customer is not None else None
    if shown is None:
        return json_answer(404, CUSTOMER_NOT_FOUND_BODY)
    return json_answer(200, shown)


def retrieve(call: ApiCall) -> Answer:
    return _show_customer(call, StoredCustomer.render)


def attributes(call: ApiCall) -> Answer:
    return _show_customer(call, StoredCustomer.attributes)


# ------------------------------------------------------------------------ writing custom attributes


def _custom_of(body: Any) -> tuple[Any, Answer | None]:
    if not isinstance(body, dict) or "custom" not in body:
        return None, json_answer(400, {"errors": {"custom": "is missing"}})
    return body["custom"], None


def _bad_custom(error: TypeError) -> Answer:
    return json_answer(400, {"errors": {"custom": str(error)}})


def _prepare_typed(call: ApiCall, custom: Any) -> tuple[dict[str, Any], dict[str, str]] | Answer:
    """Values and new definitions of the POST form (call it under the lock), or the 400/422."""
    try:
        return call.store.prepare_typed(custom, call.settings.type_conflict)
    except TypeError as exc:
        return _bad_custom(exc)
    except AttributeValidationError as exc:
        return coded_error(422, exc.message, exc.key)


def _whole_map(customer: StoredCustomer) -> Answer:
    return json_answer(200, {"custom": dict(customer.custom)})


def _post_values(call: ApiCall, customer: StoredCustomer, entries: Any) -> Answer:
    prepared = _prepare_typed(call, entries)
    if isinstance(prepared, Answer):
        return prepared
    values, new_definitions = prepared
    call.store.definitions.update(new_definitions)
    customer.custom.update(values)
    return _whole_map(customer)


def _put_values(call: ApiCall, customer: StoredCustomer, custom: Any) -> Answer:
    try:
        values = call.store.prepare_untyped(custom)
    except TypeError as exc:
        return _bad_custom(exc)
    except AttributeValidationError as exc:
        return json_answer(422, {"error_details": {exc.key or "custom": [exc.message]}})
    customer.custom.update(values)
    return _whole_map(customer)


def _delete_keys(call: ApiCall, customer: StoredCustomer, keys: Any) -> Answer:
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        return json_answer(400, {"errors": {"custom": "must be an array of attribute keys"}})
    for key in keys:
        customer.custom.pop(key, None)
    if call.settings.delete_status == 204:
        return Answer(204, b"", None)
    if call.settings.delete_status == 202:
        return json_answer(202, {"message": f"Custom attributes removed: {', '.join(keys)}"})
    return _whole_map(customer)


def _change_custom(call: ApiCall, change: Callable[[ApiCall, StoredCustomer, Any], Answer]) -> Answer:
    """Under the lock: 404 for an unknown customer, 400 without ``custom``, else ``change``."""
    with call.lock:
        customer = call.store.customers.get(call.params["uuid"])
        if customer is None:
            return json_answer(404, CUSTOMER_NOT_FOUND_BODY)
        custom, missing = _custom_of(call.body)
        return missing if missing is not None else change(call, customer, custom)


def add_custom(call: ApiCall) -> Answer:
    """POST: the seed call; defines new keys account-wide."""
    return _change_custom(call, _post_values)


def update_custom(call: ApiCall) -> Answer:
    """PUT: values of keys already defined; errors in Rails style (``error_details``)."""
    return _change_custom(call, _put_values)


def remove_custom(call: ApiCall) -> Answer:
    """DELETE: keys the customer does not have are skipped; the answer's form is a setting."""
    return _change_custom(call, _delete_keys)


def add_custom_by_email(call: ApiCall) -> Answer:
    """POST by email: every customer with that email (case-insensitively); none is not an error."""
    custom, missing = _custom_of(call.body)
    if missing is not None:
        return missing
    email = call.body.get("email")
    if not isinstance(email, str) or not email.strip():
        return json_answer(400, {"errors": {"email": "is missing"}})
    with call.lock:
        prepared = _prepare_typed(call, custom)
        if isinstance(prepared, Answer):
            return prepared
        values, new_definitions = prepared
        matches = call.store.by_email_exact(email)
        if matches:
            call.store.definitions.update(new_definitions)
        for customer in matches:
            customer.custom.update(values)
        entries = [customer.render() for customer in matches]
    return json_answer(200, {"entries": entries})
