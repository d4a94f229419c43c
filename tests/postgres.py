"""A real, throw-away PostgreSQL server for the tests that need one.

``CHARTMOGUL_TEST_POSTGRES_DSN`` (``postgresql://user@host:port/db``) points at an existing server;
otherwise a temporary cluster is made with the machine's ``initdb`` (Debian's ``postgresql``
package; ``.ci/run`` installs it) on a free loopback port. Without either the tests are skipped,
unless ``CHARTMOGUL_REQUIRE_POSTGRES`` is set (CI), where they fail instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("CHARTMOGUL_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here (CHARTMOGUL_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(reason)


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    dsn = os.environ.get("CHARTMOGUL_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        _missing("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    root = tempfile.mkdtemp(prefix="chartmogul-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres_user([initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    log = os.path.join(root, "server.log")
    subprocess.run(
        _as_postgres_user(
            [
                pg_ctl,
                "-D",
                data,
                "-l",
                log,
                "-w",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield dsn
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", data, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def airflow_connection_json(dsn: str) -> str:
    """``AIRFLOW_CONN_...`` JSON for a ``postgres`` connection to ``dsn``."""
    import json

    parts = urlsplit(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port,
            "login": parts.username,
            "password": parts.password or "",
            "schema": parts.path.lstrip("/"),
        }
    )
