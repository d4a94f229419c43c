"""Test helpers for the ChartMogul provider: a ChartMogul-compatible server (``testing.server``)."""

from __future__ import annotations

from airflow_provider_chartmogul.testing.server import ChartMogulServer, RequestRecord

__all__ = ["ChartMogulServer", "RequestRecord"]
