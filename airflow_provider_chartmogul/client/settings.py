"""How a ``chartmogul`` Airflow connection becomes the client's settings.

Extras set in the UI or as JSON arrive typed; extras from the URI form arrive as strings, so every
value is cast here, with an error naming the connection field when it cannot be.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS, DEFAULT_BASE_URL
from airflow_provider_chartmogul.exceptions import ChartMogulConfigurationError, shorten


def _default(name: str) -> Any:
    return CONNECTION_EXTRA_FIELDS[name]["schema"]["default"]


@dataclass(frozen=True)
class ClientSettings:
    """Everything the hook needs to talk to ChartMogul. ``repr`` never shows the key."""

    base_url: str
    api_key: str = field(repr=False)
    timeout: float = _default("timeout")
    max_retries: int = _default("max_retries")
    retry_budget: float = _default("retry_budget")
    max_requests_per_second: float = _default("max_requests_per_second")
    max_connections: int = _default("max_connections")
    verify: bool | str = True
    # The account-wide budget (docs/shared-budget.md): off while shared_budget_conn_id is None.
    shared_budget_conn_id: str | None = None
    account_requests_per_second: float = _default("account_requests_per_second")
    account_connections: int = _default("account_connections")
    reserve: float = _default("reserve")
    shared_budget_name: str | None = None


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """``https://api.chartmogul.com`` style base URL (no trailing ``/`` or ``/v1``) from the host field.

    A host without a scheme means https. Plain http is only allowed to loopback addresses, where
    the project's ChartMogul-compatible server runs: anywhere else the API key would travel in clear.
    """
    raw = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    if "@" in parts.netloc:
        # Checked first: every later message quotes the URL, and what is before the @ may be the key.
        raise ChartMogulConfigurationError(
            "the API base URL holds credentials (user@host): put the API key in the connection's "
            "password field, not in its host"
        )
    scheme = parts.scheme.lower()
    hostname = parts.hostname or ""
    if scheme not in ("http", "https") or not hostname:
        raise ChartMogulConfigurationError(
            f"API base URL {raw!r} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL}"
        )
    if scheme == "http" and not _is_loopback(hostname):
        raise ChartMogulConfigurationError(
            f"API base URL {raw!r} uses plain http to a non-loopback host: the API key would travel "
            f"in clear. Use https (e.g. {DEFAULT_BASE_URL}); http is only accepted for 127.0.0.1, "
            "::1 and localhost."
        )
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{scheme}://{netloc}{path}"


def _cast(name: str, value: Any, kind: type, conn_id: str) -> Any:
    label = CONNECTION_EXTRA_FIELDS[name]["label"] if name in CONNECTION_EXTRA_FIELDS else name
    try:
        if isinstance(value, bool):
            raise TypeError
        result = kind(value)
        if kind is int and isinstance(value, float) and value != result:
            raise ValueError
    except (TypeError, ValueError):
        raise ChartMogulConfigurationError(
            f"connection {conn_id!r}: {label} ({name}) must be a {kind.__name__}, got {value!r}"
        ) from None
    schema = CONNECTION_EXTRA_FIELDS.get(name, {}).get("schema", {})
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and result < low) or (high is not None and result > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ChartMogulConfigurationError(
            f"connection {conn_id!r}: {label} ({name}) must be {bounds}, got {value!r}"
        )
    return result


def _cast_verify(value: Any, conn_id: str) -> bool | str:
    if value is None:  # a form field left empty
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", ""):
            return True
        if lowered in ("false", "0", "no"):
            return False
        path = value.strip()
        if not os.path.isfile(path) and not os.path.isdir(path):
            raise ChartMogulConfigurationError(
                f"connection {conn_id!r}: verify names the CA bundle {shorten(path, 200)}, which does not "
                "exist on this worker; give the path of a PEM file (or directory) that does, or true"
            )
        return path
    raise ChartMogulConfigurationError(
        f"connection {conn_id!r}: verify must be true, false or a CA bundle path, got {value!r}"
    )


#: ChartMogul's keys are long random strings (32+ characters); anything this short is a placeholder
#: ("x", "key", "None") or a typo. Kept low so test keys such as "sk_case" stay valid.
MIN_KEY_LENGTH = 6


def _check_key(api_key: str, conn_id: str, host: str | None) -> None:
    """The key must be sendable as HTTP Basic auth and look like a key; no message shows any of it."""
    where = f"connection {conn_id!r}: the API key (password field)"
    if not (api_key.isascii() and api_key.isprintable()) or " " in api_key or ":" in api_key:
        raise ChartMogulConfigurationError(
            f"{where} holds characters an API key cannot have (only printable ASCII without spaces or "
            "colons can be sent): check what was pasted"
        )
    if len(api_key) < MIN_KEY_LENGTH:
        raise ChartMogulConfigurationError(
            f"{where} is {len(api_key)} characters long, too short for a ChartMogul API key "
            f"(at least {MIN_KEY_LENGTH}): check what was pasted"
        )
    if host and api_key in host:
        raise ChartMogulConfigurationError(
            f"connection {conn_id!r}: the host field holds the API key; the host is the API's URL "
            f"(empty for {DEFAULT_BASE_URL}) and the key goes in the password field only"
        )


_TYPES: dict[str, type] = {
    "timeout": float,
    "max_retries": int,
    "retry_budget": float,
    "max_requests_per_second": float,
    "max_connections": int,
    "account_requests_per_second": float,
    "account_connections": int,
    "reserve": float,
}
# Extras that are names: stripped; empty means not set.
_TEXT = ("shared_budget_conn_id", "shared_budget_name")


def _text(name: str, value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ChartMogulConfigurationError(f"{where}{name} must be a string, got {value!r}")
    text = value.strip()
    limit = CONNECTION_EXTRA_FIELDS[name]["schema"]["maxLength"]
    if len(text) > limit or any(not char.isprintable() for char in text):
        raise ChartMogulConfigurationError(
            f"{where}{name} must be at most {limit} printable characters, got {value!r}"
        )
    return text or None


def check_override(name: str, value: Any) -> Any:
    """A hook or operator argument that overrides the connection's extra ``name``, range-checked
    against the same schema as the connection form; ``None`` keeps the connection's value.

    :raises ValueError: naming the argument, when ``value`` is not a number of the right kind or
        lies outside the form's range.
    """
    if value is None:
        return None
    if name in _TEXT:
        try:
            return _text(name, value, "")
        except ChartMogulConfigurationError as exc:
            raise ValueError(str(exc)) from None
    kind = _TYPES[name]
    schema = CONNECTION_EXTRA_FIELDS[name]["schema"]
    low, high = schema.get("minimum"), schema.get("maximum")
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    whole = number and float(value).is_integer()
    in_range = number and (low is None or value >= low) and (high is None or value <= high)
    if not (in_range and (whole or kind is float)):
        what = "a finite number" if kind is float else "a whole number"
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {what} {bounds}, got {value!r}")
    return kind(value)


class ConnectionFields(Protocol):
    """The fields settings are read from, as an Airflow ``Connection`` has them."""

    @property
    def conn_id(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def build_settings(conn: ConnectionFields, *, overrides: dict[str, Any] | None = None) -> ClientSettings:
    """Settings from a connection's fields; ``overrides`` (hook/operator arguments) win over extras."""
    conn_id, password, extra = conn.conn_id, conn.password, conn.extra_dejson
    api_key = (password or extra.get("api_key") or "").strip()
    if not api_key:
        raise ChartMogulConfigurationError(
            f"connection {conn_id!r} has no API key: put the ChartMogul API key in the "
            "connection's password field (labelled 'API key' in the UI)."
        )
    _check_key(api_key, conn_id, conn.host)
    values: dict[str, Any] = {}
    for name, kind in _TYPES.items():
        value = (overrides or {}).get(name)
        if value is None:
            value = extra.get(name)
        if value is None or value == "":
            continue
        values[name] = _cast(name, value, kind, conn_id)
    for name in _TEXT:
        value = (overrides or {}).get(name)
        text = _text(name, extra.get(name) if value is None else value, f"connection {conn_id!r}: ")
        if text is not None:
            values[name] = text
    verify = _cast_verify(extra.get("verify", True), conn_id)
    return ClientSettings(
        base_url=normalize_base_url(conn.host, conn.port),
        api_key=api_key,
        verify=verify,
        **values,
    )
