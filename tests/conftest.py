"""Shared fixtures: a temporary Airflow home, the ChartMogul-compatible server, connections."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator

# Before anything imports Airflow: a throw-away home, no example DAGs, our example DAGs folder.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(pathlib.Path(__file__).parents[1] / "example_dags")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

import pytest

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.postgres import postgres_dsn  # noqa: F401 (a fixture)

# Distinctive, so a leak is easy to find in logs, errors and reprs.
API_KEY = "sk_test_7f3c9e1d5b2a4c68_SECRET"
READ_ONLY_KEY = "ro_test_0a1b2c3d4e5f_SECRET"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the metadata database of the temporary AIRFLOW_HOME once per session."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"airflow db migrate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )


@pytest.fixture(scope="session")
def _server_session() -> Iterator[ChartMogulServer]:
    with ChartMogulServer(api_keys={API_KEY: "read-write", READ_ONLY_KEY: "read-only"}) as server:
        yield server


@pytest.fixture
def chartmogul_server(_server_session: ChartMogulServer) -> Iterator[ChartMogulServer]:
    """The project's ChartMogul-compatible server, emptied and reset to defaults for each test."""
    server = _server_session
    server.reset()
    server.configure(
        latency=0.0,
        rate_limit=None,
        rate_limit_retry_after=None,
        max_parallel=None,
        faults=None,
        type_conflict="error",
        delete_status=204,  # as recorded (2023): DELETE answers 204 with an empty body
    )
    yield server
    server.reset()


def connection_json(server: ChartMogulServer, *, api_key: str = API_KEY, **extra: object) -> str:
    """``AIRFLOW_CONN_...`` JSON for a connection to ``server``; retries kept quick for tests."""
    defaults: dict[str, object] = {"timeout": 5, "max_retries": 3, "retry_budget": 10}
    defaults.update(extra)
    return json.dumps({"conn_type": "chartmogul", "host": server.url, "password": api_key, "extra": defaults})


@pytest.fixture
def chartmogul_conn(chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> ChartMogulServer:
    """``chartmogul_default`` pointing at the test server with the read-write key."""
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server))
    return chartmogul_server


@pytest.fixture
def task_log(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]):
    """What a task logged so far: Airflow 3 task loggers write through structlog to stdout, Airflow 2
    through logging; either way it ends up here."""
    import logging

    caplog.set_level(logging.INFO)
    seen: list[str] = []

    def read() -> str:
        seen.append(capsys.readouterr().out)
        return caplog.text + "".join(seen)

    return read
