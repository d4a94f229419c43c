"""The shared budget of one hook, from its settings and a ``redis`` Airflow connection.

The client is built with redis-py's public constructor from the connection's fields, read as
``apache-airflow-providers-redis``'s ``RedisHook`` reads them (host, port, login, password, extras
``db`` and ``ssl*``), and not through ``RedisHook`` itself: the budget needs short socket timeouts
and one quick retry, so that a Redis that hangs or goes away costs seconds, not a stalled push;
``RedisHook`` leaves them at redis-py's defaults and has no way to set them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from airflow_provider_chartmogul.client.budget_store import RedisBudgetStore, Timings
from airflow_provider_chartmogul.client.settings import ClientSettings
from airflow_provider_chartmogul.client.shared_budget import BudgetLimits, SharedBudget, budget_name

# A Redis that does not answer within this long is treated as down (the push goes on without it).
SOCKET_TIMEOUT = 2.0
_SSL_EXTRAS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")


class RedisConnectionFields(Protocol):
    """The fields of an Airflow ``Connection`` of type ``redis`` that the client is built from."""

    @property
    def conn_id(self) -> str: ...
    @property
    def conn_type(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def login(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def extra_dejson(self) -> dict[str, Any]: ...


class BudgetUnavailable(Exception):
    """The shared budget could not be set up (no redis package, no such connection, ...)."""


class UnavailableStore:
    """A store that fails every call with why the budget could not be set up, so the task falls
    back to its in-process control and says why, as it does when Redis goes away."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        self.timings = Timings()

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise BudgetUnavailable(self.reason)

    acquire = renew = release = leave = _fail


def redis_client(conn: RedisConnectionFields) -> Any:
    """A ``redis.Redis`` for the connection, with the budget's timeouts.

    :raises BudgetUnavailable: redis-py is not installed, or the connection is not a ``redis`` one.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise BudgetUnavailable(
            "the redis package is not installed (pip install 'airflow-provider-chartmogul[redis]')"
        ) from None
    if (conn.conn_type or "redis") != "redis":
        raise BudgetUnavailable(f"connection {conn.conn_id!r} is of type {conn.conn_type!r}, not 'redis'")
    extra = conn.extra_dejson
    password = conn.password if str(conn.password).lower() not in ("none", "false", "") else None
    return redis.Redis(
        host=conn.host or "localhost",
        port=int(conn.port or 6379),
        username=conn.login or None,
        password=password,
        db=int(extra.get("db") or 0),
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 1),  # once: a pooled connection the server has closed
        client_name="airflow-provider-chartmogul",
        **{name: extra[name] for name in _SSL_EXTRAS if name in extra},
    )


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the budget's store failed."""
    try:
        from redis import RedisError
    except ImportError:
        return (BudgetUnavailable, OSError)
    return (BudgetUnavailable, RedisError, OSError)


def open_shared_budget(
    settings: ClientSettings,
    get_connection: Callable[[str], RedisConnectionFields],
    *,
    logger: Any = None,
) -> SharedBudget | None:
    """The hook's budget, or ``None`` when the settings name no Redis connection. Never raises:
    a budget that cannot be set up falls back on its first use, with the reason in the log."""
    conn_id = settings.shared_budget_conn_id
    if conn_id is None:
        return None
    name = settings.shared_budget_name or budget_name(settings.base_url, settings.api_key)
    limits = BudgetLimits(
        settings.account_requests_per_second, settings.account_connections, settings.reserve
    )
    store: Any
    try:
        store = RedisBudgetStore(redis_client(get_connection(conn_id)), name)
    except Exception as exc:  # any failure to set it up: the push goes on without it, and says why
        reason = str(exc) if isinstance(exc, BudgetUnavailable) else f"{type(exc).__name__}: {exc}"
        store = UnavailableStore(name, reason)
    return SharedBudget(
        store, limits, errors=store_errors(), where=f"Redis connection {conn_id!r}", logger=logger
    )
