"""The customers Asset: its URI, and the events a push records, on Airflow's own outlet-event
accessors (what a task's ``context["outlet_events"]`` is)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_chartmogul.assets import (
    changed_something,
    customers_asset_uri,
    event_extra,
    record_asset_events,
)
from airflow_provider_chartmogul.version_compat import Asset, AssetAlias

try:  # Airflow 3
    from airflow.sdk.execution_time.context import OutletEventAccessors
except ImportError:  # Airflow 2.10+
    from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef,attr-defined]

CUSTOMERS = Asset(uri="chartmogul://api.chartmogul.com/customers")
ALIAS = AssetAlias(name="chartmogul-customers-changed")
REPORT = {
    "total": 3, "succeeded": 2, "failed": 1, "skipped": 0,
    "added": 4, "changed": 1, "unchanged": 2, "cleared": 0,
    "mode": "sync", "dry_run": False, "failures": [{"customer": "x"}],
}  # fmt: skip
UNCHANGED = {**REPORT, "added": 0, "changed": 0, "cleared": 0}
EXTRA = {
    "total": 3, "succeeded": 2, "failed": 1, "skipped": 0,
    "added": 4, "changed": 1, "unchanged": 2, "cleared": 0,
    "mode": "sync", "dry_run": False,
}  # fmt: skip


@pytest.fixture(autouse=True)
def _production_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", json.dumps({"conn_type": "chartmogul", "password": "sk_x_12345"})
    )


def _alias_events(events: OutletEventAccessors, alias: AssetAlias) -> list[tuple[str, dict]]:
    """(asset URI, extra) of the events added to ``alias``: attrs objects on Airflow 3, dicts
    (``dest_dataset_uri``) on Airflow 2."""
    accessor = events[alias]
    added = getattr(accessor, "asset_alias_events", None) or getattr(accessor, "dataset_alias_events", [])
    if added and isinstance(added[0], dict):
        return [(e["dest_dataset_uri"], e["extra"]) for e in added]
    return [(e.dest_asset_key.uri, e.extra) for e in added]


def test_the_asset_uri_is_the_connections_api_host_and_customers() -> None:
    assert customers_asset_uri("chartmogul_default") == CUSTOMERS.uri


def test_an_asset_outlets_event_carries_the_runs_counts() -> None:
    events = OutletEventAccessors()

    record_asset_events([CUSTOMERS], events, REPORT, chartmogul_conn_id="chartmogul_default")

    assert events[CUSTOMERS].extra == EXTRA
    json.dumps(events[CUSTOMERS].extra)  # an event's extra must be JSON


def test_an_alias_outlet_gets_the_customers_asset_event_only_when_the_run_changed_something() -> None:
    changed, unchanged, dry = OutletEventAccessors(), OutletEventAccessors(), OutletEventAccessors()

    record_asset_events([ALIAS], changed, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([ALIAS], unchanged, UNCHANGED, chartmogul_conn_id="chartmogul_default")
    record_asset_events([ALIAS], dry, {**REPORT, "dry_run": True}, chartmogul_conn_id="chartmogul_default")

    assert _alias_events(changed, ALIAS) == [(CUSTOMERS.uri, EXTRA)]
    assert _alias_events(unchanged, ALIAS) == []
    assert _alias_events(dry, ALIAS) == []


def test_a_clear_is_a_change_and_other_outlets_are_left_alone() -> None:
    assert changed_something({**UNCHANGED, "cleared": 1})
    assert not changed_something(UNCHANGED)
    events = OutletEventAccessors()
    other = Asset(uri="s3://bucket/attributes.parquet")

    record_asset_events(["not an asset"], events, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([], events, REPORT, chartmogul_conn_id="chartmogul_default")
    record_asset_events([other], None, REPORT, chartmogul_conn_id="chartmogul_default")  # no task context

    assert len(events) == 0
    assert event_extra({}) == dict.fromkeys(EXTRA, 0) | {"mode": "", "dry_run": False}
