"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Airflow's providers manager calls :func:`get_provider_info` while its configuration loads, so a
mistake here breaks every Airflow command: ``tests/test_get_provider_info.py`` validates it against
Airflow's own schemas.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS, DEFAULT_BASE_URL

CONNECTION_TYPE = "chartmogul"

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "extra"],
    "relabeling": {"password": "API key", "host": "API base URL"},
    "placeholders": {"host": DEFAULT_BASE_URL, "password": "Your ChartMogul API key"},
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-chartmogul",
        "name": "ChartMogul",
        "description": "Push custom attributes onto ChartMogul customers from Airflow DAGs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "ChartMogul",
                "external-doc-url": "https://dev.chartmogul.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "ChartMogul",
                "python-modules": ["airflow_provider_chartmogul.hooks.chartmogul"],
            }
        ],
        "operators": [
            {
                "integration-name": "ChartMogul",
                "python-modules": ["airflow_provider_chartmogul.operators.custom_attributes"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": "airflow_provider_chartmogul.hooks.chartmogul.ChartMogulHook",
                "hook-name": "ChartMogul",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONNECTION_EXTRA_FIELDS,
            }
        ],
    }
