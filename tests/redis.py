"""A real, throw-away Redis server for the tests that need one.

Debian's ``redis-server`` (``.ci/run`` installs it) on a free loopback port, with no persistence
(``--save "" --appendonly no``). Without it, or without the ``redis`` package, the tests are
skipped, unless ``CHARTMOGUL_REQUIRE_REDIS`` is set (CI), where they fail instead.

:class:`RedisServer` also runs on its own, for tests that stop a server mid-run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.airflow_deployment import free_port

__all__ = ["RedisServer", "redis_available", "redis_client", "redis_server"]


def redis_available() -> str | None:
    """Why no Redis can be started here, or ``None`` when one can."""
    if shutil.which("redis-server") is None:
        return "no redis-server on this machine (Debian's redis-server package)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (make install)"
    return None


def require_redis() -> None:
    """Skip (or, with ``CHARTMOGUL_REQUIRE_REDIS``, fail) when no Redis can be started."""
    reason = redis_available()
    if reason is None:
        return
    if os.environ.get("CHARTMOGUL_REQUIRE_REDIS"):
        pytest.fail(f"Redis is required here (CHARTMOGUL_REQUIRE_REDIS) but {reason}")
    pytest.skip(reason)


class RedisServer:
    """``redis-server`` on ``127.0.0.1`` and a free port; :meth:`stop` and :meth:`start` again on
    the same port (a Redis that goes away mid-run and comes back)."""

    def __init__(self, *, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="chartmogul-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 (the process keeps it)
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:  # not up yet
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self._process.returncode}: "
                        f"{(self.root / 'redis.log').read_text(errors='replace')[-2000:]}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def connection(self, conn_id: str = "budget_redis") -> dict[str, Any]:
        """The fields of an Airflow ``redis`` connection to this server."""
        fields: dict[str, Any] = {"conn_id": conn_id, "conn_type": "redis", "host": "127.0.0.1"}
        fields["port"] = self.port
        if self.password:
            fields["password"] = self.password
        return fields

    def cli(self, *args: str) -> str:
        """``redis-cli`` against this server; its output (``--no-auth-warning``, raw)."""
        command = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", "--raw"]
        if self.password:
            command += ["-a", self.password]
        done = subprocess.run([*command, *args], capture_output=True, check=True, timeout=60)
        return done.stdout.decode("utf-8", errors="replace")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server per test session (per xdist worker)."""
    require_redis()
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    """A client of the session's Redis, emptied before each test."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()
