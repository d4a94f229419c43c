"""One measured case, run in a fresh process by ``run.py``: ``python _cases.py CASE SPEC.json OUT.json``.

Each process measures only itself: wall time and CPU time (``time.process_time``: user + system
time of every thread of this process) of the timed part, and the process's peak RSS
(``ru_maxrss``). Imports, the warm-up and building the input records are not timed.

Cases:

``probe``
    Import Airflow, this provider and the official client; report versions and import time.
``official``
    The official ``chartmogul`` client in a sequential loop, as users write it today.
``official_sync``
    The official client's read-then-write loop (read each customer, write what differs).
``provider``
    ``AddCustomAttributesOperator(...).execute(context={})`` with records from a list
    (``source`` ``"uuid"`` or ``"external_id"``) or from SQL (``source`` ``"sql"``).
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import API_KEY, records_by_external_id, records_by_uuid, source_fingerprint


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _measure(action: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run ``action``; its result and the wall s, CPU s and peak RSS around it."""
    gc.collect()
    rss_before = _peak_rss_mb()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = action()
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    return result, {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _provider_fingerprint() -> str:
    import airflow_provider_chartmogul

    return source_fingerprint(Path(airflow_provider_chartmogul.__file__).parent)


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Versions and import times (the first run in a fresh bytecode cache also fills it)."""
    started = time.perf_counter()
    import airflow

    from airflow_provider_chartmogul import __version__ as provider_version
    from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

    airflow_seconds = time.perf_counter() - started
    started = time.perf_counter()
    import chartmogul

    chartmogul_seconds = time.perf_counter() - started
    assert AddCustomAttributesOperator is not None
    return {
        "python": sys.version.split()[0],
        "airflow": airflow.__version__,
        "provider": provider_version,
        "chartmogul": getattr(chartmogul, "__version__", "?"),
        "provider_path": str(Path(sys.modules["airflow_provider_chartmogul"].__file__ or "").parent),
        "fingerprint": _provider_fingerprint(),
        "airflow_import_seconds": airflow_seconds,
        "chartmogul_import_seconds": chartmogul_seconds,
    }


def _official_loop(spec: dict[str, Any], step: Callable[[Any, Any, dict[str, Any]], None]) -> dict[str, Any]:
    """The official client's loop over ``spec['count']`` records by uuid, timed: ``step(chartmogul,
    config, record)`` for each, as users write it (one record after another, default retries)."""
    started = time.perf_counter()
    import chartmogul

    import_seconds = time.perf_counter() - started
    config = chartmogul.Config(API_KEY)  # defaults: 20 retries, backoff factor 2, no timeout
    config.uri = f"{spec['url']}/v1"  # the client builds every URL as config.uri + path
    records = records_by_uuid(spec["count"])
    failures: list[str] = []

    def loop() -> int:
        succeeded = 0
        for record in records:
            try:
                step(chartmogul, config, record)
                succeeded += 1
            except Exception as exc:  # a user's loop would stop here; the benchmark counts it
                failures.append(f"{record['customer_uuid']}: {exc!r}"[:300])
        return succeeded

    succeeded, measured = _measure(loop)
    return {
        **measured,
        "import_seconds": import_seconds,
        "customers": len(records),
        "succeeded": succeeded,
        "failed": len(failures),
        "failures": failures[:3],
    }


def official(spec: dict[str, Any]) -> dict[str, Any]:
    """The official client, one ``CustomAttributes.add`` after another."""

    def add(chartmogul: Any, config: Any, record: dict[str, Any]) -> None:
        chartmogul.CustomAttributes.add(
            config, uuid=record["customer_uuid"], data={"custom": record["custom"]}
        ).get()

    return _official_loop(spec, add)


def official_sync(spec: dict[str, Any]) -> dict[str, Any]:
    """The official client's read-then-write loop: read each customer's attributes, write the
    ones that differ (the seed call with the changed entries only)."""
    counts = {"reads": 0, "writes": 0}

    def sync(chartmogul: Any, config: Any, record: dict[str, Any]) -> None:
        uuid = record["customer_uuid"]
        held = chartmogul.Attributes.retrieve(config, uuid=uuid).get().custom
        counts["reads"] += 1
        changed = [e for e in record["custom"] if held.get(e["key"]) != e["value"]]
        if changed:
            chartmogul.CustomAttributes.add(config, uuid=uuid, data={"custom": changed}).get()
            counts["writes"] += 1

    result = _official_loop(spec, sync)
    return {**result, **counts}


def _wait_for_go(spec: dict[str, Any]) -> None:
    """Several processes that must start at once: say ready, then wait for the go file."""
    if not spec.get("go_file"):
        return
    Path(spec["ready_file"]).touch()
    go = Path(spec["go_file"])
    while not go.exists():
        time.sleep(0.005)


def provider(spec: dict[str, Any]) -> dict[str, Any]:
    """The operator at the settings in ``spec['operator']`` (the defaults when it is empty)."""
    started = time.perf_counter()
    from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
    from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
    from airflow_provider_chartmogul.operators.custom_attributes import (
        AddCustomAttributesOperator,
    )

    import_seconds = time.perf_counter() - started
    fingerprint = _provider_fingerprint()
    started = time.perf_counter()
    # Warm-up, not timed: a task runner has Airflow's connection machinery loaded before a task
    # executes; the first lookup in a fresh process imports it (secrets backends, masker, ...).
    settings = ChartMogulHook().settings
    source = spec["source"]
    if source == "sql":
        ChartMogulHook.get_connection(spec["sql_conn_id"]).get_hook()
    warmup_seconds = time.perf_counter() - started

    kwargs: dict[str, Any] = dict(spec.get("operator") or {})
    if source == "sql":
        kwargs.update(sql=spec["sql"], sql_conn_id=spec["sql_conn_id"])
    elif source == "external_id":
        kwargs["customers"] = records_by_external_id(spec["count"])
    else:
        start = int(spec.get("start") or 0)
        kwargs["customers"] = records_by_uuid(start + spec["count"])[start:]
    raised: list[str] = []

    def push() -> dict[str, Any]:
        try:
            return AddCustomAttributesOperator(task_id="benchmark", **kwargs).execute(context={})
        except CustomAttributesPushError as exc:  # too many failures: the report is still whole
            raised.append(str(exc)[:300])
            return exc.report

    _wait_for_go(spec)
    report, measured = _measure(push)
    return {
        **measured,
        "import_seconds": import_seconds,
        "warmup_seconds": warmup_seconds,
        "fingerprint": fingerprint,
        "customers": report["total"],
        "succeeded": report["succeeded"],
        "failed": report["failed"],
        "skipped": report["skipped"],
        "failures": [f"{f['customer']}: {f['error']}"[:300] for f in report["failures"][:3]],
        "failed_uuids": [
            f.get("customer_uuid") or (f.get("record") or {}).get("customer_uuid") or f["customer"]
            for f in report["failures"]
        ],
        "raised": raised[0] if raised else None,
        "aborted": report.get("aborted"),
        "input_complete": report.get("input_complete", True),
        "records_not_read": report.get("records_not_read"),
        "requests": report.get("requests"),
        "customer_lookup": report.get("customer_lookup"),
        "duration_seconds": report.get("duration_seconds"),
        "connection_settings": {
            "max_requests_per_second": settings.max_requests_per_second,
            "max_connections": settings.max_connections,
            "max_retries": settings.max_retries,
            "timeout": settings.timeout,
            "retry_budget": settings.retry_budget,
        },
    }


CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "probe": probe,
    "official": official,
    "official_sync": official_sync,
    "provider": provider,
}


def main(argv: list[str]) -> int:
    """``CASE SPEC.json OUT.json``: run the case, write its figures as JSON."""
    case, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = CASES[case](spec)
    Path(out_path).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
