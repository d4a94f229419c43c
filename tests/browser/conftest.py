"""Fixtures of the end-to-end UI test: Chromium, an Airflow api-server and a ChartMogul server.

Everything here is only set up by tests that ask for it, so ``pytest -m "not browser"`` never
starts a browser or a server, and a machine without Chromium or Playwright can still collect the
whole suite.

Missing Chromium or Playwright: the tests are skipped with the reason, unless the environment
variable ``CHARTMOGUL_REQUIRE_BROWSER`` is set (to anything but ``""``/``0``/``false``/``no``), as
CI does: then they fail. ``CHARTMOGUL_CHROMIUM`` names another Chromium binary.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .airflow_ui import (
    ADMIN_USER,
    BROWSER_API_KEY,
    CHROMIUM_ARGS,
    REPO_ROOT,
    AirflowApiServer,
    log_in,
    tail,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page
    from playwright.sync_api import Request as PlaywrightRequest

    from airflow_provider_chartmogul.testing.server import ChartMogulServer

DEFAULT_CHROMIUM = "/usr/bin/chromium"
MIN_AIRFLOW = (3, 2)  # declarative connection fields (conn-fields) are read by the UI from 3.2 on

_failed_phases: pytest.StashKey[dict[str, bool]] = pytest.StashKey()


def browser_required() -> bool:
    """True when the environment says the browser test must run (CI)."""
    value = os.environ.get("CHARTMOGUL_REQUIRE_BROWSER", "").strip().lower()
    return value not in ("", "0", "false", "no")


def _missing(reason: str) -> None:
    if browser_required():
        pytest.fail(f"{reason} (CHARTMOGUL_REQUIRE_BROWSER is set, so this is a failure)", pytrace=False)
    pytest.skip(f"{reason}; set CHARTMOGUL_REQUIRE_BROWSER=1 to make this a failure")


def find_chromium() -> str | None:
    """The Chromium binary to drive: ``CHARTMOGUL_CHROMIUM``, Debian's, or one on PATH."""
    configured = os.environ.get("CHARTMOGUL_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _airflow_version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return major, minor


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Checks what the browser test needs; skips or fails (see the module docstring)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _missing(f"Playwright for Python is not installed ({exc}); install the 'playwright' package")
    chromium = find_chromium()
    if chromium is None:
        _missing(
            f"Chromium not found (looked at $CHARTMOGUL_CHROMIUM, {DEFAULT_CHROMIUM} and PATH); "
            "run scripts/install-browser.sh"
        )
    if _airflow_version() < MIN_AIRFLOW:
        pytest.skip("the connection-form test targets the Airflow >= 3.2 UI (declarative conn-fields)")
    providers = {ep.value for ep in importlib.metadata.entry_points(group="apache_airflow_provider")}
    if not any(value.startswith("airflow_provider_chartmogul.") for value in providers):
        pytest.fail(
            "airflow-provider-chartmogul is not installed in this environment (no apache_airflow_provider "
            "entry point): run `uv pip install -e .` first",
            pytrace=False,
        )
    assert chromium is not None
    return chromium


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``.artifacts/browser/`` at the repository root (gitignored), or ``$CHARTMOGUL_BROWSER_ARTIFACTS``."""
    path = Path(os.environ.get("CHARTMOGUL_BROWSER_ARTIFACTS") or REPO_ROOT / ".artifacts" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def airflow_api_server(
    chromium_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowApiServer]:
    """A migrated, healthy ``airflow api-server`` on a free loopback port; always stopped after."""
    server = AirflowApiServer(home=tmp_path_factory.mktemp("airflow-ui-home"))
    try:
        server.prepare()
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"could not start the Airflow api-server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chartmogul_api() -> Iterator[ChartMogulServer]:
    """The project's ChartMogul-compatible server, knowing one (read-write) key."""
    from airflow_provider_chartmogul.testing.server import ChartMogulServer

    with ChartMogulServer(api_keys={BROWSER_API_KEY: "read-write"}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (Playwright's own browsers cannot be fetched)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=60_000,
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def ui_context(
    browser: Browser, airflow_api_server: AirflowApiServer, artifacts_dir: Path
) -> Iterator[BrowserContext]:
    """One browser context for the module, signed in once as the admin user through the login page.

    Its tracing runs all along; each test records a chunk of it (see ``ui_page``).
    """
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        locale="en-US",
        timezone_id="UTC",
        color_scheme="light",
    )
    context.set_default_timeout(30_000)
    context.set_default_navigation_timeout(60_000)
    context.tracing.start(screenshots=True, snapshots=True)
    outside: list[str] = []

    def note_outside(request: PlaywrightRequest) -> None:
        url = request.url
        if url.startswith(("http:", "https:", "ws:", "wss:")) and not url.startswith(airflow_api_server.url):
            outside.append(url)

    context.on("request", note_outside)
    try:
        page = context.new_page()
        try:
            log_in(page, airflow_api_server.url, ADMIN_USER, airflow_api_server.password)
        except Exception as exc:
            page.screenshot(path=str(artifacts_dir / "FAILED-login.png"), full_page=True)
            context.tracing.stop(path=str(artifacts_dir / "FAILED-login-trace.zip"))
            pytest.fail(
                f"signing in to Airflow failed ({exc}); screenshot and trace in {artifacts_dir}\n"
                f"api-server log:\n{tail(airflow_api_server.log_path)}",
                pytrace=False,
            )
        page.close()
        yield context
        context.tracing.stop()
    finally:
        context.close()
        if outside:
            print(f"requests to hosts other than the api-server (refused here): {sorted(set(outside))}")


@pytest.fixture
def ui_page(
    request: pytest.FixtureRequest,
    ui_context: BrowserContext,
    airflow_api_server: AirflowApiServer,
    artifacts_dir: Path,
) -> Iterator[Page]:
    """A new tab of the signed-in context, on Airflow's home page.

    On failure: a screenshot and this test's Playwright trace (``playwright show-trace FILE``)
    are kept in the artifacts folder; the api-server log is added to the report by the hook below.
    """
    ui_context.tracing.start_chunk(title=request.node.name)
    page = ui_context.new_page()
    ready = False
    try:
        page.goto(airflow_api_server.url + "/", wait_until="domcontentloaded")
        page.get_by_role("button", name="Admin").wait_for(state="visible")
        ready = True
        yield page
    finally:
        failed = not ready or request.node.stash.get(_failed_phases, {}).get("call", False)
        name = request.node.name
        try:
            if failed:
                page.screenshot(path=str(artifacts_dir / f"FAILED-{name}.png"), full_page=True)
                ui_context.tracing.stop_chunk(path=str(artifacts_dir / f"FAILED-{name}-trace.zip"))
                print(f"failure screenshot and trace kept in {artifacts_dir}")
            else:
                ui_context.tracing.stop_chunk()
        finally:
            page.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Remember failures for the fixtures' teardown; attach the api-server log to a failure."""
    report = yield
    if report.failed:
        item.stash.setdefault(_failed_phases, {})[report.when] = True
        server = getattr(item, "funcargs", {}).get("airflow_api_server")
        if isinstance(server, AirflowApiServer):
            report.sections.append((f"airflow api-server log ({server.log_path})", tail(server.log_path)))
    return report
