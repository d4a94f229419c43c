"""Helpers for the end-to-end UI test: an Airflow ``api-server`` process and Airflow 3 UI steps.

Nothing here is a fixture; ``conftest.py`` wires these into pytest. Kept separate so that the
process handling (the part that must never leak a server) can be read on its own.

The api-server runs with an explicit environment built from scratch for it (every ``AIRFLOW*``
variable of the test process is dropped), a temporary ``AIRFLOW_HOME`` with a migrated SQLite
database, one uvicorn worker, loopback only, and the SimpleAuthManager with one admin user whose
password is written beforehand into the passwords file (so Airflow generates none and the test
knows it). It is started in its own process group so that stopping it also stops its workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Response

try:
    from playwright.sync_api import expect
except ImportError:  # the browser_available fixture skips or fails the tests with a clear reason
    expect = None  # type: ignore[assignment]

# Chromium as the machine probe started it: no sandbox (we are root), no GPU, and none of the
# background connections to Google that a closed network refuses (or lets hang). The resolver
# rule makes any non-loopback host fail at once instead of waiting for DNS.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_USER = "admin"
# Distinctive, so that a leak into the page is easy to find.
BROWSER_API_KEY = "sk_test_browser_5e0c1d7a_SECRET"
WRONG_API_KEY = "sk_test_wrong_key_9b8a_SECRET"
HEALTH_PATH = "/api/v2/monitor/health"
TEST_CONNECTION_PATH = "/api/v2/connections/test"

# Airflow 3.3.x bug (seen here on 3.3.2; fixed upstream by apache/airflow PR #73298, "Fix Test
# connection rejecting a connection that has no port"): the list's Test button posts
# ``port: Number(null)`` = 0 for a connection without a port, the API takes 0 for "another
# destination" and answers 400 with this detail.
# Every ChartMogul connection has no port (the field is hidden), so the button always fails there.
PORTLESS_TEST_BUG_DETAIL = "The host or port to test differs from the stored connection"

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")

# urllib without the environment's proxies: the api-server is on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def airflow_command(*args: str) -> list[str]:
    """``airflow ARGS`` run by this interpreter (the virtualenv that has the provider installed)."""
    return [sys.executable, "-m", "airflow", *args]


def clean_environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The api-server's environment: ours, not whatever the test process or the shell had.

    Drops every ``AIRFLOW*`` variable (``tests/conftest.py`` sets some at import) and the proxy
    variables (all traffic is loopback), then sets what this test needs.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith("AIRFLOW") and key.lower() not in _PROXY_VARIABLES
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


@dataclass
class AirflowApiServer:
    """One ``airflow api-server`` on loopback with its own ``AIRFLOW_HOME``.

    ``prepare()`` migrates the database (Airflow 3.3: about 11 s on 2 cores), ``start()`` launches
    the server and polls its health endpoint (about 20 s), ``stop()`` ends its process group.
    """

    home: Path
    host: str = "127.0.0.1"
    startup_timeout: float = 150.0
    migrate_timeout: float = 180.0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "api-server.log"

    @property
    def migrate_log_path(self) -> Path:
        return self.home / "db-migrate.log"

    def environment(self) -> dict[str, str]:
        """Settings for ``db migrate`` and the api-server (the port is known only at start)."""
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        settings = {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
        }
        if self.port:
            settings["AIRFLOW__API__PORT"] = str(self.port)
            settings["AIRFLOW__API__BASE_URL"] = self.url
        return clean_environment(self.home, settings)

    def prepare(self) -> None:
        """Create the home, the user's password and the metadata database."""
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        # A password already in the file is used as is: Airflow generates (and prints) none.
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        passwords_file.write_text(json.dumps({ADMIN_USER: self.password}) + "\n")
        with self.migrate_log_path.open("wb") as log:
            result = subprocess.run(
                airflow_command("db", "migrate"),
                env=self.environment(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.migrate_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow db migrate exited with {result.returncode}:\n{tail(self.migrate_log_path)}"
            )

    def start(self, attempts: int = 3) -> None:
        """Start on a free port and wait until healthy; retries if the port was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            self.port = free_port(self.host)
            self._spawn()
            try:
                self._wait_healthy()
                return
            except RuntimeError:
                self.stop()
                address_taken = "address already in use" in tail(self.log_path, 4000).lower()
                if attempt == attempts or not address_taken:
                    raise

    def _spawn(self) -> None:
        command = airflow_command(
            "api-server", "--host", self.host, "--port", str(self.port), "--workers", "1"
        )
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches the uvicorn workers
            )

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"airflow api-server exited with {code} before it was healthy:\n{tail(self.log_path)}"
                )
            try:
                with _DIRECT.open(self.url + HEALTH_PATH, timeout=5) as answer:
                    health = json.load(answer)
                if health.get("metadatabase", {}).get("status") == "healthy":
                    return
                last_error = f"health: {health}"
            except (OSError, ValueError) as exc:  # refused while starting, timeouts, bad JSON
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise RuntimeError(
            f"airflow api-server not healthy after {self.startup_timeout:.0f} s ({last_error}):\n"
            f"{tail(self.log_path)}"
        )

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers that outlived the leader are still in the group: make sure none is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, limit: int = 12_000) -> str:
    """The last ``limit`` characters of a log file (or a note that it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


# ----------------------------------------------------------------------------- UI steps


def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through the SimpleAuthManager's login page, as a person would."""
    page.goto(base_url + "/", wait_until="domcontentloaded")
    expect(page.get_by_text("Sign into Airflow")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    expect(page.get_by_role("button", name="Admin")).to_be_visible()


def open_connections(page: Page) -> None:
    """Admin -> Connections from the navigation bar."""
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    page.wait_for_url(re.compile(r"/connections(\?.*)?$"))
    expect(page.get_by_role("button", name="Add Connection")).to_be_visible()


def open_add_dialog(page: Page, connection_id: str, type_name: str) -> Locator:
    """Add Connection, fill the id and pick the type by its display name; returns the dialog."""
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Add Connection")).to_be_visible()
    dialog.get_by_label("Connection ID").fill(connection_id)
    combobox = dialog.get_by_role("combobox", name="Connection Type")
    combobox.fill(type_name)
    page.get_by_role("option", name=type_name, exact=True).click()
    # The type's fields come from /ui/connections/hook_meta: wait until they are rendered.
    expect(dialog.get_by_role("button", name="Standard Fields")).to_be_visible()
    return dialog


def open_section(dialog: Locator, name: str) -> None:
    """Expand one accordion section of the connection dialog (one is open at a time)."""
    trigger = dialog.get_by_role("button", name=name, exact=True)
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    expect(trigger).to_have_attribute("aria-expanded", "true")


def input_facts(locator: Locator) -> dict[str, Any]:
    """What a person sees of one input: its type, placeholder, value and label text."""
    return locator.evaluate(
        """e => ({type: e.type, name: e.name, placeholder: e.placeholder, value: e.value,
                  labels: Array.from(e.labels || []).map(l => l.innerText.trim())})"""
    )


def connection_row(page: Page, connection_id: str) -> Locator:
    """The list row of one connection (matched on its whole id cell)."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=connection_id, exact=True))


def click_test(page: Page, row: Locator) -> Response:
    """Press the row's Test button; returns the API's answer to the test request."""
    with page.expect_response(
        lambda r: r.url.split("?")[0].endswith(TEST_CONNECTION_PATH) and r.request.method == "POST"
    ) as answer:
        row.get_by_role("button", name="Test Connection").click()
    return answer.value


def toast(page: Page, title: str) -> Locator:
    """The notification (Chakra toast, role=status) with this title."""
    return page.get_by_role("status").filter(has_text=title)
