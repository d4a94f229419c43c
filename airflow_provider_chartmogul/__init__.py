"""Apache Airflow provider for ChartMogul: push custom attributes onto ChartMogul customers."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
