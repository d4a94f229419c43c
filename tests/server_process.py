"""The project's ChartMogul-compatible server in a child process, driven through its admin endpoints.

For tests that measure timing on the server's side: in a process of its own, the server's clock
is not held up by the test process's threads or garbage collections.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerProcess:
    """The project's ChartMogul-compatible server run as ``python -m ...testing.server`` in a child
    process, so it has a CPU core of its own while the test process pushes; driven through the
    server's ``/_testing/`` admin endpoints."""

    def __init__(self, api_key: str, *, slow_seconds: float | None = None) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "airflow_provider_chartmogul.testing.server",
            "--port",
            "0",
            "--api-key",
            api_key,
            "--quiet",
        ]
        if slow_seconds is not None:
            self._argv += ["--slow-seconds", str(slow_seconds)]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], 30)
        line = self._process.stdout.readline() if ready else ""
        if "listening on" not in line:
            self.__exit__()
            raise RuntimeError(f"the test server did not start: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_testing/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with _NO_PROXY.open(request, timeout=60) as answer:
            return json.load(answer)

    def add_customers(self, customers: list[Mapping[str, Any]]) -> list[str]:
        """Add customers; their uuids."""
        return list(self.admin("POST", "customers", list(customers))["uuids"])

    def reset(self) -> None:
        """Forget customers, the request log, the rate window and the statistics."""
        self.admin("POST", "reset")

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def configure(self, **settings: Any) -> None:
        self.admin("POST", "config", settings)

    def requests(self) -> list[dict[str, Any]]:
        return self.admin("GET", "requests")

    def custom_attributes(self) -> dict[str, dict[str, Any]]:
        """uuid -> custom map, for every customer."""
        return {c["uuid"]: c["attributes"]["custom"] for c in self.admin("GET", "customers")}

    def definitions(self) -> dict[str, str]:
        return self.admin("GET", "definitions")
