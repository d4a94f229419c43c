"""End-to-end: the ChartMogul connection in Airflow 3's UI, as a person uses it.

Starts ``airflow api-server`` (temporary home, SimpleAuthManager, Test button enabled), signs in
through the login page in headless Chromium, opens Admin -> Connections -> Add Connection, picks
the ChartMogul type and checks what is on screen; then saves two connections pointing at the
project's ChartMogul-compatible server, one with a valid and one with a wrong API key, and presses
Test on each.

Screenshots go to ``.artifacts/browser/``; with ``CHARTMOGUL_UPDATE_DOC_IMAGES=1`` the ones the
README uses are also copied to ``docs/images/``.

Airflow 3.3.x (3.3.2 here) answers the list's Test button with 400 "Bad Request" for any connection
without a port (see ``PORTLESS_TEST_BUG_DETAIL``). When that happens the test checks that it is
exactly that bug, keeps a screenshot of it, and then presses Test again with the request's
``port: 0`` sent as unset, which is what the upstream fix accepts, so that what is tested is our
hook's answer. On an Airflow without the bug the first press must succeed as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_chartmogul.client.settings import build_settings
from airflow_provider_chartmogul.client.settings_schema import CONNECTION_EXTRA_FIELDS, DEFAULT_BASE_URL

from .airflow_ui import (
    BROWSER_API_KEY,
    PORTLESS_TEST_BUG_DETAIL,
    REPO_ROOT,
    TEST_CONNECTION_PATH,
    WRONG_API_KEY,
    click_test,
    connection_row,
    expect,
    input_facts,
    open_add_dialog,
    open_connections,
    open_section,
    toast,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Response, Route

    from airflow_provider_chartmogul.testing.server import ChartMogulServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

TYPE_NAME = "ChartMogul"  # hook-name: what the type picker shows
DOC_IMAGES = REPO_ROOT / "docs" / "images"
# artifact name -> README image name
DOC_IMAGE_NAMES = {
    "01-connection-form.png": "connection-form.png",
    "02-connection-form-extra-fields.png": "connection-form-extra-fields.png",
    "05-test-success.png": "connection-test-success.png",
    "06-test-failure.png": "connection-test-failure.png",
}
STANDARD_FIELDS_SHOWN = {"description", "host", "password"}
STANDARD_FIELDS_HIDDEN = ("login", "port", "schema")


def _default_text(value: Any) -> str:
    """How the UI's input shows a JSON-schema default (30 -> "30", 0.5 -> "0.5", "true" -> "true")."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def _extra_input(dialog: Locator, name: str) -> Locator:
    """The input of an extra field. Airflow 3.3's form labels its number inputs but not its text
    inputs (no ``for``/``id`` pair), so a text field is found as the textbox in its label's group."""
    spec = CONNECTION_EXTRA_FIELDS[name]
    types = spec["schema"]["type"]
    if "string" in (types if isinstance(types, list) else [types]):
        return dialog.get_by_role("group").filter(has_text=spec["label"]).get_by_role("textbox")
    return dialog.get_by_label(spec["label"], exact=True)


def _keep_for_docs(artifacts: Path) -> None:
    if not os.environ.get("CHARTMOGUL_UPDATE_DOC_IMAGES"):
        return
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    for artifact, image in DOC_IMAGE_NAMES.items():
        shutil.copyfile(artifacts / artifact, DOC_IMAGES / image)


def _fill_connection(page: Page, connection_id: str, base_url: str, api_key: str) -> Locator:
    """Add Connection with the ChartMogul type, fill it like a user; returns the open dialog."""
    dialog = open_add_dialog(page, connection_id, TYPE_NAME)
    open_section(dialog, "Standard Fields")
    dialog.get_by_label("API base URL", exact=True).fill(base_url)
    key_input = dialog.get_by_label("API key", exact=True)
    key_input.fill(api_key)
    expect(key_input).to_have_attribute("type", "password")
    open_section(dialog, "Extra Fields")
    # Short timeout and no retries: a failing test answers at once.
    dialog.get_by_label(CONNECTION_EXTRA_FIELDS["timeout"]["label"], exact=True).fill("10")
    dialog.get_by_label(CONNECTION_EXTRA_FIELDS["max_retries"]["label"], exact=True).fill("0")
    return dialog


def _save(page: Page, dialog: Locator, connection_id: str, base_url: str) -> Locator:
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    # The pointer was on Save, right where the notifications appear: hovering one pauses it.
    page.mouse.move(640, 400)
    row = connection_row(page, connection_id)
    expect(row).to_be_visible()
    expect(row.get_by_role("cell", name="chartmogul", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name=base_url, exact=True)).to_be_visible()
    return row


def _screenshot_without_tooltip(page: Page, path: Path) -> None:
    """Screenshot once the Test button's tooltip is gone (cosmetic: waits 3 s at most)."""
    page.mouse.move(640, 500)
    with contextlib.suppress(AssertionError):
        expect(page.get_by_role("tooltip")).to_have_count(0, timeout=3_000)
    page.screenshot(path=str(path))


def _send_unset_port(route: Route) -> None:
    """The upstream fix's behaviour: a ``port`` of 0 from the UI means "no port"."""
    body = route.request.post_data_json
    if isinstance(body, dict) and body.get("port") == 0:
        body["port"] = None
        route.continue_(post_data=json.dumps(body))
    else:
        route.continue_()


def _press_test(page: Page, row: Locator, artifacts: Path) -> Response:
    """Press Test; if Airflow's port bug answers, prove it is that bug, then work around it once."""
    answer = click_test(page, row)
    if answer.status == 400 and PORTLESS_TEST_BUG_DETAIL in answer.text():
        bug_toast = toast(page, "Test Connection Failed")
        expect(bug_toast).to_contain_text("Bad Request")  # all a user of Airflow 3.3.2 gets to see
        page.screenshot(path=str(artifacts / "airflow-portless-test-bug.png"))
        print(
            "Airflow answered the Test button with its port bug (400, fixed upstream in "
            "apache/airflow PR #73298); pressing Test again with port 0 sent as unset"
        )
        expect(bug_toast).to_be_hidden()
        page.route("**" + TEST_CONNECTION_PATH, _send_unset_port)
        answer = click_test(page, row)
    return answer


def test_connection_form_shows_chartmogul_fields(ui_page: Page, artifacts_dir: Path) -> None:
    """The add form for the ChartMogul type: relabelled, masked, with placeholders and defaults."""
    page = ui_page
    page.set_viewport_size({"width": 1280, "height": 1300})  # the whole dialog in one screenshot
    open_connections(page)
    dialog = open_add_dialog(page, "chartmogul_form_check", TYPE_NAME)

    # Standard fields: only description, base URL and key; login/port/schema are hidden.
    open_section(dialog, "Standard Fields")
    host = dialog.get_by_label("API base URL", exact=True)
    key = dialog.get_by_label("API key", exact=True)
    expect(host).to_be_visible()
    expect(key).to_be_visible()
    host_facts, key_facts = input_facts(host), input_facts(key)
    assert host_facts["name"] == "host"
    assert host_facts["placeholder"] == DEFAULT_BASE_URL
    assert host_facts["value"] == ""
    assert key_facts["name"] == "password"
    assert key_facts["type"] == "password", "the API key must be typed into a masked input"
    shown = set(
        dialog.locator("input[name], textarea[name]").evaluate_all(
            "els => els.filter(e => e.offsetParent !== null).map(e => e.name)"
        )
    )
    assert shown == {"connection_id", *STANDARD_FIELDS_SHOWN}, f"unexpected standard fields: {shown}"
    for name in STANDARD_FIELDS_HIDDEN:
        expect(dialog.locator(f'[name="{name}"]')).to_have_count(0)
    for label in ("Login", "Port", "Schema", "Host", "Password"):
        expect(dialog.get_by_text(label, exact=True)).to_have_count(0)
    dialog.screenshot(path=str(artifacts_dir / "01-connection-form.png"))

    # Extra fields: every declared one, with its label, description and default value.
    open_section(dialog, "Extra Fields")
    assert {"timeout", "max_retries", "verify"} <= set(CONNECTION_EXTRA_FIELDS)
    for name, spec in CONNECTION_EXTRA_FIELDS.items():
        field = _extra_input(dialog, name)
        expect(field, f"extra field {name!r} labelled {spec['label']!r}").to_be_visible()
        expect(field).to_have_value(_default_text(spec["schema"]["default"]))
        if spec.get("description"):
            expect(dialog.get_by_text(spec["description"], exact=True)).to_be_visible()
    dialog.screenshot(path=str(artifacts_dir / "02-connection-form-extra-fields.png"))

    # Leaving without saving stores nothing.
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(connection_row(page, "chartmogul_form_check")).to_have_count(0)


def test_saved_connection_test_button(
    ui_page: Page,
    chartmogul_api: ChartMogulServer,
    artifacts_dir: Path,
) -> None:
    """Save a good and a bad connection; Test shows success, then the API's own reason to refuse."""
    page = ui_page
    base_url = chartmogul_api.url
    open_connections(page)

    dialog = _fill_connection(page, "chartmogul_ui", base_url, BROWSER_API_KEY)
    open_section(dialog, "Standard Fields")
    dialog.screenshot(path=str(artifacts_dir / "03-connection-form-filled.png"))
    good_row = _save(page, dialog, "chartmogul_ui", base_url)
    dialog = _fill_connection(page, "chartmogul_bad_key", base_url, WRONG_API_KEY)
    bad_row = _save(page, dialog, "chartmogul_bad_key", base_url)
    expect(page.get_by_text("2 Connections")).to_be_visible()
    assert BROWSER_API_KEY not in page.content(), "the API key is shown in the connection list"
    page.screenshot(path=str(artifacts_dir / "04-connection-list.png"))
    # The "connection created" notifications go first, so that each result below stands alone.
    expect(page.get_by_role("status").filter(has_text="successfully created")).to_have_count(0)

    # Valid key: success, with the hook's message, after a real ping.
    chartmogul_api.clear_requests()
    answer = _press_test(page, good_row, artifacts_dir)
    assert answer.status == 200, f"{answer.status} {answer.text()}"
    result = answer.json()
    assert result["status"] is True, result
    assert "chartmogul" in result["message"].lower()
    success = toast(page, "Test Connection Successful")
    expect(success).to_be_visible()
    expect(success).to_have_attribute("data-type", "success")
    expect(success).to_contain_text(result["message"])
    _screenshot_without_tooltip(page, artifacts_dir / "05-test-success.png")
    pings = [r for r in chartmogul_api.requests if r.path == "/v1/ping"]
    assert [(r.method, r.api_key, r.status) for r in pings] == [("GET", BROWSER_API_KEY, 200)]
    expect(success).to_be_hidden()  # so that the next screenshot shows one result

    # Wrong key: a failure that says why, in ChartMogul's words, without echoing the key.
    chartmogul_api.clear_requests()
    answer = _press_test(page, bad_row, artifacts_dir)
    assert answer.status == 200, f"{answer.status} {answer.text()}"
    result = answer.json()
    assert result["status"] is False, result
    assert "No valid API key provided" in result["message"]
    failure = toast(page, "Test Connection Failed")
    expect(failure).to_be_visible()
    expect(failure).to_have_attribute("data-type", "error")
    expect(failure).to_contain_text("No valid API key provided")
    assert WRONG_API_KEY not in failure.inner_text(), "the failure message echoes the API key"
    _screenshot_without_tooltip(page, artifacts_dir / "06-test-failure.png")
    pings = [r for r in chartmogul_api.requests if r.path == "/v1/ping"]
    assert [(r.method, r.api_key, r.status) for r in pings] == [("GET", WRONG_API_KEY, 401)]

    _keep_for_docs(artifacts_dir)


def _saved_extra(page: Page, dialog: Locator, connection_id: str, base_url: str) -> dict[str, Any]:
    """Save the dialog; the ``extra`` the UI sent for the new connection, as stored."""
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.rstrip("/").endswith("/api/v2/connections")
    ) as sent:
        _save(page, dialog, connection_id, base_url)
    body = sent.value.post_data_json
    assert isinstance(body, dict) and body["connection_id"] == connection_id, body
    extra = json.loads(body["extra"] or "{}")
    assert isinstance(extra, dict), extra
    return extra


def test_verify_field_round_trips_to_the_hooks_settings(
    ui_page: Page, chartmogul_api: ChartMogulServer
) -> None:
    """``verify`` typed into the form (left as is, "false", a CA bundle path) reaches the hook as
    True, False and that path. Runs last: it adds connections to the list the test above counts."""
    page = ui_page
    base_url = chartmogul_api.url
    open_connections(page)
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    for connection_id, typed, expected in (
        ("chartmogul_verify_default", None, True),
        ("chartmogul_verify_off", "false", False),
        ("chartmogul_verify_bundle", bundle, bundle),
    ):
        dialog = _fill_connection(page, connection_id, base_url, BROWSER_API_KEY)
        field = _extra_input(dialog, "verify")
        expect(field).to_have_value("true")
        if typed is not None:
            field.fill(typed)
        extra = _saved_extra(page, dialog, connection_id, base_url)
        assert extra.get("verify", "true") == (typed or "true"), extra
        settings = build_settings(
            SimpleNamespace(
                conn_id=connection_id, host=base_url, port=None, password=BROWSER_API_KEY, extra_dejson=extra
            )
        )
        assert settings.verify == expected, (connection_id, extra)
