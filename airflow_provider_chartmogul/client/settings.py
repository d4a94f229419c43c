"""How a ``chartmogul`` Airflow connection becomes the client's settings.

Extras set in the UI or as JSON arrive typed; extras from the URI form arrive as strings, so every
value is cast here, with an error naming the connection field when it cannot be.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS, DEFAULT_BASE_URL
from airflow_provider_chartmogul.exceptions import ChartMogulConfigurationError


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
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never keep credentials typed into the URL
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
        return value  # a CA bundle path
    raise ChartMogulConfigurationError(
        f"connection {conn_id!r}: verify must be true, false or a CA bundle path, got {value!r}"
    )


_TYPES: dict[str, type] = {
    "timeout": float,
    "max_retries": int,
    "retry_budget": float,
    "max_requests_per_second": float,
    "max_connections": int,
}


def check_override(name: str, value: Any) -> Any:
    """A hook or operator argument that overrides the connection's extra ``name``, range-checked
    against the same schema as the connection form; ``None`` keeps the connection's value.

    :raises ValueError: naming the argument, when ``value`` is not a number of the right kind or
        lies outside the form's range.
    """
    if value is None:
        return None
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
    values: dict[str, Any] = {}
    for name, kind in _TYPES.items():
        value = (overrides or {}).get(name)
        if value is None:
            value = extra.get(name)
        if value is None or value == "":
            continue
        values[name] = _cast(name, value, kind, conn_id)
    verify = _cast_verify(extra.get("verify", True), conn_id)
    return ClientSettings(
        base_url=normalize_base_url(conn.host, conn.port),
        api_key=api_key,
        verify=verify,
        **values,
    )
