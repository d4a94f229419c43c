"""The client's tunable settings, declared once: name, label, default and allowed range.

Pure data (no imports): the connection form (``get_provider_info``, the hook's legacy widgets),
``settings.build_settings`` and ``settings.check_override`` all read it.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.chartmogul.com"


def _number_field(
    label: str, description: str, *, kind: str, default: float, minimum: float, maximum: float | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [kind, "null"], "default": default, "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"label": label, "description": description, "schema": schema}


# The connection's extras, as the Airflow 3.2+ UI reads them from the provider info and the hook's
# legacy widget classmethods (Airflow 2.x, 3.0, 3.1) build them.
CONNECTION_EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": _number_field(
        "Request timeout (s)",
        "Seconds to wait for ChartMogul to answer one request.",
        kind="number",
        default=30,
        minimum=1,
    ),
    "max_retries": _number_field(
        "Max retries",
        "Retries of one request on 429, 5xx and connection errors.",
        kind="integer",
        default=5,
        minimum=0,
    ),
    "retry_budget": _number_field(
        "Retry time budget (s)",
        "Longest time one request may spend waiting and retrying, in seconds.",
        kind="number",
        default=120,
        minimum=0,
    ),
    "max_requests_per_second": _number_field(
        "Max requests per second",
        "Client-side rate limit for this connection (ChartMogul allows 40/s per account).",
        kind="number",
        default=39,
        minimum=0.1,
    ),
    "max_connections": _number_field(
        "Max parallel connections",
        "Requests in flight at once (ChartMogul answers 503 above 20 per account).",
        kind="integer",
        default=10,
        minimum=1,
        maximum=20,
    ),
    # A string, not a boolean: besides true/false it may be the path of a CA bundle.
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false, or the path of a CA bundle (PEM) on the workers.",
        "schema": {"type": ["string", "null"], "default": "true", "maxLength": 4096},
    },
    # The account-wide budget every task on this account shares (docs/shared-budget.md).
    "shared_budget_conn_id": {
        "label": "Shared budget: Redis connection",
        "description": (
            "A redis connection: every task on this ChartMogul account then takes its requests "
            "from one account-wide budget there. Empty: each task limits only itself."
        ),
        "schema": {"type": ["string", "null"], "default": "", "maxLength": 250},
    },
    "account_requests_per_second": _number_field(
        "Shared budget: requests per second",
        "With a shared budget: the most requests per second of all tasks on this account together.",
        kind="number",
        default=39,
        minimum=0.1,
    ),
    "account_connections": _number_field(
        "Shared budget: parallel connections",
        "With a shared budget: the most requests in flight of all tasks on this account together.",
        kind="integer",
        default=18,
        minimum=1,
        maximum=20,
    ),
    "reserve": _number_field(
        "Shared budget: reserve",
        "With a shared budget: the share (0 to 0.9) of both limits kept free for other integrations.",
        kind="number",
        default=0,
        minimum=0,
        maximum=0.9,
    ),
    "shared_budget_name": {
        "label": "Shared budget: name",
        "description": (
            "Tasks with the same name share one budget. Empty: the API host and a one-way digest of the key."
        ),
        "schema": {"type": ["string", "null"], "default": "", "maxLength": 200},
    },
}
