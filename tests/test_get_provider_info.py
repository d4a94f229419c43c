"""The provider info is what Airflow reads at start-up: a mistake in it breaks every Airflow command."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
from types import SimpleNamespace

import jsonschema
import pytest

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.get_provider_info import get_provider_info
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook


def _airflow_schema(name: str) -> dict:
    import airflow

    path = pathlib.Path(airflow.__file__).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not shipped with this Airflow version")
    return json.loads(path.read_text())


def test_valid_against_airflow_runtime_schema() -> None:
    jsonschema.validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))


def test_connection_type_valid_against_provider_yaml_schema() -> None:
    schema = _airflow_schema("provider.yaml.schema.json")
    item_schema = schema["properties"]["connection-types"]["items"]
    for item in get_provider_info()["connection-types"]:
        jsonschema.validate(item, {**item_schema, "definitions": schema.get("definitions", {})})


def test_package_name_matches_distribution_and_version() -> None:
    info = get_provider_info()
    dist = importlib.metadata.distribution("airflow-provider-chartmogul")
    assert info["package-name"] == dist.metadata["Name"]
    assert info["versions"] == [__version__] == [dist.version]


def test_entry_point_is_registered() -> None:
    points = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [p for p in points if p.value.startswith("airflow_provider_chartmogul")]
    assert len(ours) == 1
    assert ours[0].load()() == get_provider_info()


def test_hook_class_matches_connection_type() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == ChartMogulHook.conn_type == "chartmogul"
    assert conn_type["hook-name"] == ChartMogulHook.hook_name
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is ChartMogulHook


def test_providers_manager_registers_provider_hook_and_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-chartmogul" in manager.providers
    assert manager.providers["airflow-provider-chartmogul"].version == __version__
    try:  # Airflow 3.3 moved hook discovery for tasks to the Task SDK
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = manager.hooks
    hook_info = hooks["chartmogul"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_chartmogul.hooks.chartmogul.ChartMogulHook"
    assert hook_info.connection_id_attribute_name == "chartmogul_conn_id"
    assert hook_info.hook_name == "ChartMogul"


_HOOK_META_SCRIPT = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["chartmogul"]
print(meta.model_dump_json())
"""


def test_connection_form_metadata_the_ui_receives() -> None:
    """What the Airflow 3 UI's ``hook_meta`` endpoint serves: from the declarative provider info on
    3.2+, from the legacy widget methods (with Airflow's stand-in FAB modules) on 3.0/3.1. Run in a
    fresh process because 3.0/3.1 cache hook metadata loaded without those stand-ins."""
    import subprocess
    import sys

    pytest.importorskip("airflow.api_fastapi.core_api.services.ui.connections")
    done = subprocess.run(
        [sys.executable, "-c", _HOOK_META_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dumped = json.loads(done.stdout.strip().splitlines()[-1])
    standard = dumped["standard_fields"]
    assert standard["password"]["title"] == "API key"
    assert standard["password"]["hidden"] is False
    assert standard["host"]["title"] == "API base URL"
    assert standard["host"]["placeholder"] == "https://api.chartmogul.com"
    for hidden in ("port", "login"):
        assert standard[hidden]["hidden"] is True
    extra = dumped["extra_fields"]
    assert set(extra) == {
        "timeout",
        "max_retries",
        "retry_budget",
        "max_requests_per_second",
        "max_connections",
        "verify",
        "shared_budget_conn_id",
        "account_requests_per_second",
        "account_connections",
        "reserve",
        "shared_budget_name",
    }
    assert extra["verify"]["value"] == "true"
    assert extra["verify"]["schema"]["title"] == "TLS verification"
    assert "string" in extra["verify"]["schema"]["type"], "true/false or a CA bundle path"
    assert extra["max_retries"]["value"] == 5
    assert extra["max_retries"]["schema"]["title"] == "Max retries"


def test_legacy_ui_field_behaviour_matches_declarative_one() -> None:
    info = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    legacy = ChartMogulHook.get_ui_field_behaviour()
    assert legacy["hidden_fields"] == info["hidden-fields"]
    assert legacy["relabeling"] == info["relabeling"]
    assert legacy["placeholders"] == info["placeholders"]


def test_legacy_connection_form_widgets_where_wtforms_exists() -> None:
    pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    widgets = ChartMogulHook.get_connection_form_widgets()
    assert set(widgets) == set(get_provider_info()["connection-types"][0]["conn-fields"])


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("true", True),
        ("false", False),
        ("False", False),
        ("", True),
        (None, True),
        (True, True),
        (False, False),
        ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
    ],
)
def test_verify_form_value_round_trips_to_the_hook(stored: object, expected: object) -> None:
    """What the form stores for ``verify`` (a string from the 3.2+ form or the legacy widget, a
    boolean from a JSON connection, null for a cleared field) is what the hook uses."""
    from airflow_provider_chartmogul.client.settings import build_settings

    schema = get_provider_info()["connection-types"][0]["conn-fields"]["verify"]["schema"]
    if not isinstance(stored, bool):
        jsonschema.validate(stored, schema)
    conn = SimpleNamespace(
        conn_id="c", host=None, port=None, password="sk_test_1234567", extra_dejson={"verify": stored}
    )
    settings = build_settings(conn)
    assert settings.verify == expected


def test_legacy_verify_widget_is_a_text_field_defaulting_to_true() -> None:
    pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    from wtforms import StringField

    field = ChartMogulHook.get_connection_form_widgets()["verify"]
    assert field.field_class is StringField
    assert field.kwargs["default"] == "true"
