"""Test helpers for the ChartMogul provider: a ChartMogul-compatible server (``testing.server``)."""

from __future__ import annotations

from typing import Any

__all__ = ["ChartMogulServer", "RequestRecord"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``python -m airflow_provider_chartmogul.testing.server`` does not
    # find the module already imported by its package (runpy would warn about that).
    if name in __all__:
        from airflow_provider_chartmogul.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
