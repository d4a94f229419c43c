"""A ChartMogul-compatible HTTP server for tests, the demo and the benchmarks (see docs/test-server.md).

Run it with ``python -m airflow_provider_chartmogul.testing.server --help``. Standard library only.
"""

from __future__ import annotations

from airflow_provider_chartmogul.testing.server.attribute_rules import ATTRIBUTE_TYPES
from airflow_provider_chartmogul.testing.server.customers import DEFAULT_DATA_SOURCE_UUID
from airflow_provider_chartmogul.testing.server.faults import FAULT_KINDS
from airflow_provider_chartmogul.testing.server.request_log import RequestRecord
from airflow_provider_chartmogul.testing.server.server import ChartMogulServer

__all__ = [
    "ATTRIBUTE_TYPES",
    "DEFAULT_DATA_SOURCE_UUID",
    "FAULT_KINDS",
    "ChartMogulServer",
    "RequestRecord",
]
