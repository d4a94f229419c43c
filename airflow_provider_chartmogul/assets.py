"""The ChartMogul customers as an Asset: its URI, and the events a push records on it
(docs/lineage.md). The same identity as the OpenLineage output, ``chartmogul://<API host>`` /
``customers``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_chartmogul.client.settings import normalize_base_url
from airflow_provider_chartmogul.version_compat import Asset, AssetAlias, BaseHook

CUSTOMERS = "customers"
# The report's counts an Asset event carries in its ``extra``.
EVENT_COUNTS = ("total", "succeeded", "failed", "skipped", "added", "changed", "unchanged", "cleared")


def customers_namespace(chartmogul_conn_id: str) -> str:
    """``chartmogul://api.chartmogul.com``: the connection's API host (and path, behind a proxy)."""
    conn = BaseHook.get_connection(chartmogul_conn_id)
    parts = urlsplit(normalize_base_url(conn.host, conn.port))
    return f"chartmogul://{parts.netloc}{parts.path}"


def customers_asset_uri(chartmogul_conn_id: str) -> str:
    """``chartmogul://api.chartmogul.com/customers``, the URI to schedule a consumer DAG on."""
    return f"{customers_namespace(chartmogul_conn_id)}/{CUSTOMERS}"


def event_extra(report: Mapping[str, Any]) -> dict[str, Any]:
    """What an Asset event of the run says: its counts, mode and whether it was a dry run."""
    extra: dict[str, Any] = {key: int(report.get(key, 0)) for key in EVENT_COUNTS}
    extra["mode"] = str(report.get("mode", ""))
    extra["dry_run"] = bool(report.get("dry_run", False))
    return extra


def changed_something(report: Mapping[str, Any]) -> bool:
    """Whether the run changed any customer in ChartMogul (a dry run changes none)."""
    if report.get("dry_run"):
        return False
    return any(int(report.get(key, 0)) > 0 for key in ("added", "changed", "cleared"))


def record_asset_events(
    outlets: list[Any], outlet_events: Any, report: Mapping[str, Any], *, chartmogul_conn_id: str
) -> None:
    """Put the run's counts on the events of the task's outlets.

    * an ``Asset`` outlet: Airflow records its event after every successful run; its ``extra``
      gets the counts;
    * an ``AssetAlias`` outlet: an event for the customers Asset (:func:`customers_asset_uri`) is
      added to the alias only when the run changed something, so a run that changed nothing
      triggers no consumer.
    """
    if outlet_events is None or not outlets:
        return
    extra = event_extra(report)
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            if changed_something(report):
                outlet_events[outlet].add(Asset(uri=customers_asset_uri(chartmogul_conn_id)), extra=extra)
        elif isinstance(outlet, Asset):
            outlet_events[outlet].extra.update(extra)
