"""Benchmark helpers around the project's ChartMogul-compatible server in its own process
(:mod:`airflow_provider_chartmogul.testing.process`): seed files, status counts, child environments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_chartmogul.testing.process import ServerError, ServerProcess

__all__ = ["ServerError", "ServerProcess", "child_environment", "status_count", "write_seed_file"]


def write_seed_file(path: Path, customers: Sequence[Mapping[str, Any]]) -> Path:
    """Write a ``--seed`` file (a JSON list of ``add_customer`` keyword objects)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(list(customers), handle, separators=(",", ":"))
    return path


def status_count(stats: Mapping[str, Any], status: int) -> int:
    """How many answers of ``status`` the server's statistics count (JSON keys are strings)."""
    by_status = stats.get("by_status") or {}
    return int(by_status.get(str(status), by_status.get(status, 0)) or 0)


def child_environment(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child process: ``base`` (default: ours) plus ``extra``."""
    env = dict(os.environ if base is None else base)
    env.update(extra)
    return env
