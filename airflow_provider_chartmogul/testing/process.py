"""The project's ChartMogul-compatible server, run in a process of its own through its command line.

For benchmarks and tests that measure on either side: the server's clock and CPU are then not
shared with the measured process (its threads, its garbage collections). The admin endpoints
(``/_testing/...``) seed customers, configure the server, and read statistics and the request log.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

SERVER_MODULE = "airflow_provider_chartmogul.testing.server"
_BANNER = "listening on "


class ServerError(RuntimeError):
    """The server could not be started, or an admin request failed."""


class ServerProcess:
    """One ``python -m airflow_provider_chartmogul.testing.server`` process.

    :param api_key: the read-write API key the server accepts.
    :param latency: seconds the server adds to every API answer (``--latency``).
    :param rate_limit: requests per second of the account, or None for no limit (``--rate-limit``).
    :param max_parallel: requests in flight before 503, or None for no limit (``--max-parallel``).
    :param slow_seconds: how long the "slow" fault holds an answer (``--slow-seconds``).
    :param record_requests: keep the request log (``--no-record`` when False).
    :param seed_file: a JSON list of ``add_customer`` keyword objects loaded at start (``--seed``).
    :param synthetic_customers: how many synthetic customers to load at start (``--seed-synthetic``;
        identifiers and values as docs/test-server.md, "Synthetic customers", states them).
    :param synthetic_custom_share: the share of them that hold custom attributes
        (``--synthetic-custom-share``).
    :param log_path: where the server's stderr goes.
    """

    def __init__(
        self,
        *,
        api_key: str,
        python: str = sys.executable,
        latency: float = 0.0,
        rate_limit: float | None = None,
        max_parallel: int | None = None,
        slow_seconds: float | None = None,
        record_requests: bool = True,
        seed_file: Path | None = None,
        synthetic_customers: int = 0,
        synthetic_custom_share: float = 1.0,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.python = python
        self.latency = latency
        self.rate_limit = rate_limit
        self.max_parallel = max_parallel
        self.slow_seconds = slow_seconds
        self.record_requests = record_requests
        self.seed_file = seed_file
        self.synthetic_customers = synthetic_customers
        self.synthetic_custom_share = synthetic_custom_share
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        # The admin endpoints answer loopback clients only: never route them through a proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [self.python, "-m", SERVER_MODULE, "--port", "0", "--api-key", self.api_key]
        command.append("--quiet")
        command += ["--latency", str(self.latency)]
        if self.rate_limit is not None:
            command += ["--rate-limit", str(self.rate_limit)]
        if self.max_parallel is not None:
            command += ["--max-parallel", str(self.max_parallel)]
        if self.slow_seconds is not None:
            command += ["--slow-seconds", str(self.slow_seconds)]
        if not self.record_requests:
            command.append("--no-record")
        if self.seed_file is not None:
            command += ["--seed", str(self.seed_file)]
        if self.synthetic_customers:
            command += ["--seed-synthetic", str(self.synthetic_customers)]
            command += ["--synthetic-custom-share", str(self.synthetic_custom_share)]
        return command

    def describe(self) -> str:
        """The server's settings in a few words."""
        parts = [f"latency {self.latency * 1000:.0f} ms"]
        parts.append(f"rate limit {self.rate_limit:g}/s" if self.rate_limit else "no rate limit")
        parts.append(f"max {self.max_parallel} parallel" if self.max_parallel else "no parallel limit")
        parts.append("request log on" if self.record_requests else "request log off (--no-record)")
        return ", ".join(parts)

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> str:
        """Start the process and wait for its one line naming the URL; the URL."""
        self._log = open(self.log_path, "w", encoding="utf-8") if self.log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self._process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self._process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = ""
        while not line:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._process.poll() is not None:
                self.stop()
                raise ServerError(
                    f"the server did not start ({' '.join(self.command())}); see {self.log_path}"
                )
            if selector.select(timeout=min(remaining, 1.0)):
                line = self._process.stdout.readline()
        selector.close()
        if _BANNER not in line:
            self.stop()
            raise ServerError(f"unexpected first line from the server: {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        return self.url

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 15 s; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def peak_rss_mb(self) -> float | None:
        """The server process's peak resident memory (``VmHWM``, Linux only), in MiB."""
        if self.pid is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    # ---- admin endpoints -----------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 300.0) -> Any:
        """One ``/_testing`` request; the parsed JSON answer."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}/_testing/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                return json.load(answer)
        except OSError as exc:
            raise ServerError(f"{method} /_testing/{path} failed: {exc}") from exc

    def seed(self, customers: Iterable[Mapping[str, Any]], batch: int = 20_000) -> int:
        """Add customers through ``POST /_testing/customers`` in batches; how many were added."""
        added = 0
        chunk: list[Mapping[str, Any]] = []
        for customer in customers:
            chunk.append(customer)
            if len(chunk) >= batch:
                added += self.admin("POST", "customers", chunk)["count"]
                chunk = []
        if chunk:
            added += self.admin("POST", "customers", chunk)["count"]
        return added

    def seed_synthetic(self, count: int, *, start: int = 0, custom_share: float = 1.0) -> int:
        """Add synthetic customers ``start`` .. ``start + count - 1`` (``POST /_testing/synthetic``)."""
        body = {"count": count, "start": start, "custom_share": custom_share}
        return int(self.admin("POST", "synthetic", body)["count"])

    def add_customers(self, customers: Sequence[Mapping[str, Any]]) -> list[str]:
        """Add customers (``add_customer`` keyword objects); their uuids."""
        return list(self.admin("POST", "customers", list(customers))["uuids"])

    def configure(self, **settings: Any) -> None:
        """Change settings (the in-process server's ``configure`` arguments)."""
        self.admin("POST", "config", settings)

    def custom_attributes(self) -> dict[str, dict[str, Any]]:
        """uuid -> custom map, for every customer."""
        return {c["uuid"]: c["attributes"]["custom"] for c in self.admin("GET", "customers")}

    def definitions(self) -> dict[str, str]:
        """The account's attribute definitions: key -> type."""
        return dict(self.admin("GET", "definitions"))

    def reset(self) -> None:
        """Forget customers, the log, the rate window and the statistics (settings are kept)."""
        self.admin("POST", "reset")

    def stats(self) -> dict[str, Any]:
        """``GET /_testing/stats``: totals by status, 429/503 counts, most requests in flight."""
        return self.admin("GET", "stats")

    def request_log(self) -> list[dict[str, Any]]:
        """Every logged API request (needs the log on)."""
        return self.admin("GET", "requests")

    def clear_request_log(self) -> None:
        self.admin("DELETE", "requests")
