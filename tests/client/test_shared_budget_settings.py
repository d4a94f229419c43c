"""The shared budget's connection extras, its operator/hook argument, and the Redis client built
from a ``redis`` connection."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_chartmogul.client.redis_connection import (
    SOCKET_TIMEOUT,
    BudgetUnavailable,
    open_shared_budget,
    redis_client,
)
from airflow_provider_chartmogul.client.settings import build_settings, check_override
from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS
from airflow_provider_chartmogul.exceptions import ChartMogulConfigurationError
from tests.conftest import API_KEY


def chartmogul(**extra: Any) -> SimpleNamespace:
    return SimpleNamespace(
        conn_id="cm", host="http://127.0.0.1:9", port=None, password=API_KEY, extra_dejson=extra
    )


def redis_conn(**fields: Any) -> SimpleNamespace:
    values: dict[str, Any] = {"conn_id": "r", "conn_type": "redis", "host": "127.0.0.1", "port": 6390}
    values.update(login=None, password=None, extra_dejson={})
    values.update(fields)
    return SimpleNamespace(**values)


def test_the_budget_is_off_by_default_with_chartmogul_limits_less_a_margin() -> None:
    settings = build_settings(chartmogul())
    assert settings.shared_budget_conn_id is None and settings.shared_budget_name is None
    assert (settings.account_requests_per_second, settings.account_connections, settings.reserve) == (
        39,
        18,
        0,
    )
    assert open_shared_budget(settings, lambda conn_id: redis_conn()) is None


def test_the_extras_are_read_as_the_uri_form_gives_them() -> None:
    settings = build_settings(
        chartmogul(
            shared_budget_conn_id=" budget_redis ",
            account_requests_per_second="30",
            account_connections="12",
            reserve="0.25",
            shared_budget_name="",
        )
    )
    assert settings.shared_budget_conn_id == "budget_redis"
    assert (settings.account_requests_per_second, settings.account_connections) == (30.0, 12)
    assert settings.reserve == 0.25 and settings.shared_budget_name is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"reserve": 0.95}, "reserve (reserve) must be between 0 and 0.9"),
        ({"account_connections": 21}, "account_connections) must be between 1 and 20"),
        ({"account_requests_per_second": "fast"}, "must be a float, got 'fast'"),
        ({"shared_budget_conn_id": 7}, "shared_budget_conn_id must be a string, got 7"),
        ({"shared_budget_name": "a\nb"}, "shared_budget_name must be at most 200 printable characters"),
    ],
)
def test_a_bad_extra_is_named(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ChartMogulConfigurationError, match="connection 'cm'") as caught:
        build_settings(chartmogul(**extra))
    assert message in str(caught.value)


def test_the_argument_overrides_the_extra_and_is_checked() -> None:
    settings = build_settings(
        chartmogul(shared_budget_conn_id="from_connection"),
        overrides={"shared_budget_conn_id": check_override("shared_budget_conn_id", "from_argument")},
    )
    assert settings.shared_budget_conn_id == "from_argument"
    with pytest.raises(ValueError, match="shared_budget_conn_id must be a string, got 3"):
        check_override("shared_budget_conn_id", 3)


def test_the_connection_form_shows_the_budget_extras() -> None:
    for name in ("shared_budget_conn_id", "account_requests_per_second", "account_connections", "reserve"):
        assert CONNECTION_EXTRA_FIELDS[name]["label"].startswith("Shared budget")
    assert CONNECTION_EXTRA_FIELDS["account_requests_per_second"]["schema"]["default"] == 39
    assert CONNECTION_EXTRA_FIELDS["account_connections"]["schema"]["default"] == 18


def test_the_redis_client_is_built_from_the_connection_with_short_timeouts() -> None:
    client = redis_client(
        redis_conn(login="user", password="pw", extra_dejson={"db": "3", "ssl": False, "other": 1})
    )
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "pw")
    assert kwargs["socket_timeout"] == SOCKET_TIMEOUT == kwargs["socket_connect_timeout"]
    assert "other" not in kwargs
    assert redis_client(redis_conn(password="None")).connection_pool.connection_kwargs["password"] is None


def test_a_connection_of_another_type_is_no_budget() -> None:
    with pytest.raises(BudgetUnavailable, match="of type 'postgres', not 'redis'"):
        redis_client(redis_conn(conn_type="postgres"))


def test_a_budget_that_cannot_be_set_up_falls_back_on_first_use() -> None:
    def missing(conn_id: str) -> Any:
        raise LookupError(f"The conn_id `{conn_id}` isn't defined")

    settings = build_settings(chartmogul(shared_budget_conn_id="nowhere"))
    budget = open_shared_budget(settings, missing)
    assert budget is not None and budget.acquire() is not None
    status = budget.status()
    assert status["state"] == "in-process"
    assert "LookupError: The conn_id `nowhere` isn't defined" in status["fallback"]["reason"]
    assert API_KEY not in str(status)


def test_the_operator_checks_its_argument_and_hands_it_to_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps({"conn_type": "chartmogul", "host": "http://127.0.0.1:9", "password": API_KEY}),
    )
    with pytest.raises(ValueError, match="shared_budget_conn_id must be a string"):
        AddCustomAttributesOperator(task_id="push", customers=[], shared_budget_conn_id=5)
    operator = AddCustomAttributesOperator(task_id="push", customers=[], shared_budget_conn_id="budget")
    assert operator.hook.settings.shared_budget_conn_id == "budget"
    plain = AddCustomAttributesOperator(task_id="push", customers=[])
    assert plain.hook.settings.shared_budget_conn_id is None and plain.hook.shared_budget is None
