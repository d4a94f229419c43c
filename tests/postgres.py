"""A real, throw-away PostgreSQL server for the tests that need one.

``CHARTMOGUL_TEST_POSTGRES_DSN`` (``postgresql://user@host:port/db``) points at an existing server;
otherwise a temporary cluster is made with the machine's ``initdb`` (Debian's ``postgresql``
package; ``.ci/run`` installs it) on a free loopback port. Without either the tests are skipped,
unless ``CHARTMOGUL_REQUIRE_POSTGRES`` is set (CI), where they fail instead.

The cluster and :func:`airflow_connection_json` live in ``tests/deployment/airflow_deployment.py``,
which has no pytest dependency (the Celery deployment script uses them in a virtualenv without it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployment.airflow_deployment import PostgresCluster, airflow_connection_json, postgres_bin

__all__ = ["airflow_connection_json", "postgres_dsn"]


def _missing(reason: str) -> None:
    if os.environ.get("CHARTMOGUL_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here (CHARTMOGUL_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    dsn = os.environ.get("CHARTMOGUL_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    if not postgres_bin("initdb") or not postgres_bin("pg_ctl"):
        _missing("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    root = Path(tempfile.mkdtemp(prefix="chartmogul-pg-"))
    cluster = PostgresCluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
