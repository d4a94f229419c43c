"""ChartMogulHook over real HTTP against the project's ChartMogul-compatible server."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import itertools
import json
import logging
import time
from typing import Any

import pytest

from airflow_provider_chartmogul import __version__
from airflow_provider_chartmogul.attributes import normalize_attribute, normalize_custom
from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulAuthError,
    ChartMogulConfigurationError,
    ChartMogulFatalError,
    ChartMogulForbiddenError,
    ChartMogulValidationError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import API_KEY, READ_ONLY_KEY, connection_json

# Long enough that Airflow 2's masker does not mask it in every other test's output.
FAKE_KEY = "sk_test_not_a_real_key"
SEED_UUID = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
# The seed page's request, as its Python example sends it.
SEED_CUSTOM = [
    {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
    {"type": "Integer", "key": "age", "value": 8},
]


def _writes(server: ChartMogulServer) -> list:
    return [r for r in server.requests if r.method in ("POST", "PUT", "DELETE")]


@pytest.fixture
def hook(chartmogul_conn: ChartMogulServer) -> ChartMogulHook:
    chartmogul_conn.add_customer(uuid=SEED_UUID, external_id="ext-seed", email="seed@example.com")
    with ChartMogulHook() as h:
        yield h


# ---- the seed call -------------------------------------------------------------------------------


def test_seed_example_returns_the_customers_whole_custom_map(hook: ChartMogulHook) -> None:
    assert hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM) == {"channel": "Facebook", "age": 8}


def test_seed_example_sends_what_the_official_python_client_sends(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    import chartmogul

    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    ours = chartmogul_conn.requests[-1]

    config = chartmogul.Config(API_KEY, max_retries=0)
    config.uri = f"{chartmogul_conn.url}/v1"
    chartmogul.CustomAttributes.add(config, uuid=SEED_UUID, data={"custom": SEED_CUSTOM}).get()
    theirs = chartmogul_conn.requests[-1]

    assert (
        (ours.method, ours.path)
        == (theirs.method, theirs.path)
        == (
            "POST",
            f"/v1/customers/{SEED_UUID}/attributes/custom",
        )
    )
    expected_auth = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert ours.headers["authorization"] == theirs.headers["authorization"] == expected_auth
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert ours.body == theirs.body == {"custom": SEED_CUSTOM}
    # Byte for byte, key order included.
    assert ours.raw_body == theirs.raw_body
    assert ours.headers["user-agent"].startswith(f"airflow-provider-chartmogul/{__version__}")


def test_source_applies_to_attributes_without_one(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM, source="airflow:my_dag")
    sent = chartmogul_conn.requests[-1].body["custom"]
    assert [a.get("source") for a in sent] == ["integration", "airflow:my_dag"]


@pytest.mark.parametrize(
    ("attribute", "stored"),
    [
        ({"type": "String", "key": "plan", "value": "x" * 255}, "x" * 255),
        ({"type": "Integer", "key": "seats", "value": "12"}, 12),
        ({"type": "Decimal", "key": "cac", "value": 213.5}, 213.5),
        ({"type": "Boolean", "key": "pro", "value": "f"}, False),
        ({"type": "Boolean", "key": "pro", "value": True}, True),
        ({"type": "Timestamp", "key": "since", "value": "2022-09-08T00:00:00Z"}, "2022-09-08T00:00:00.000Z"),
        (
            {
                "type": "Timestamp",
                "key": "since",
                "value": dt.datetime(2022, 9, 8, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            },
            "2022-09-08T00:00:00.000Z",
        ),
    ],
)
def test_each_type_accepted_and_stored(hook: ChartMogulHook, attribute: dict, stored: object) -> None:
    assert hook.add_custom_attributes(SEED_UUID, [attribute])[attribute["key"]] == stored


@pytest.mark.parametrize(
    ("attribute", "words"),
    [
        ({"type": "String", "key": "plan", "value": "x" * 256}, "255"),
        ({"type": "Integer", "key": "seats", "value": "twelve"}, "Integer"),
        ({"type": "Integer", "key": "seats", "value": True}, "Integer"),
        ({"type": "Decimal", "key": "cac", "value": float("nan")}, "Decimal"),
        ({"type": "Boolean", "key": "pro", "value": "yes"}, "Boolean"),
        ({"type": "Timestamp", "key": "since", "value": "2022-13-45"}, "Timestamp"),
        ({"type": "Float", "key": "cac", "value": 1.0}, "type"),
        ({"type": "String", "key": "bad key", "value": "x"}, "key"),
    ],
)
def test_bad_values_rejected_before_any_request(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, attribute: dict, words: str
) -> None:
    with pytest.raises(ChartMogulValidationError) as info:
        hook.add_custom_attributes(SEED_UUID, [SEED_CUSTOM[0], attribute])
    message = str(info.value)
    assert SEED_UUID in message
    assert words in message
    assert chartmogul_conn.requests == []


@pytest.mark.parametrize("uuid", [None, "", "   ", "cus_1/../ping", "..", "a b"])
def test_missing_or_unsafe_uuid_never_reaches_the_api(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, uuid: object
) -> None:
    # The official client posts to the by-email endpoint when uuid is None; we must not.
    with pytest.raises(ChartMogulValidationError, match="customer_uuid"):
        hook.add_custom_attributes(uuid, SEED_CUSTOM)  # type: ignore[arg-type]
    assert chartmogul_conn.requests == []


@pytest.mark.parametrize(
    "call",
    [
        lambda hook, uuid: hook.add_custom_attributes(uuid, SEED_CUSTOM),
        lambda hook, uuid: hook.update_custom_attributes(uuid, {"age": 9}),
        lambda hook, uuid: hook.remove_custom_attributes(uuid, ["age"]),
        lambda hook, uuid: hook.get_custom_attributes(uuid),
    ],
    ids=["add", "update", "remove", "get"],
)
def test_every_public_call_checks_the_uuid_it_is_given(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, call: Any
) -> None:
    with pytest.raises(
        ChartMogulValidationError, match=r"customer_uuid='cus_1/\.\./ping'.*safe in a URL path"
    ):
        call(hook, "cus_1/../ping")
    assert chartmogul_conn.requests == []


def test_an_attribute_built_by_hand_is_checked_by_the_public_call(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    checked = normalize_attribute({"type": "Integer", "key": "age", "value": 8})
    with pytest.raises(ChartMogulValidationError) as info:
        hook.add_custom_attributes(SEED_UUID, [checked, dataclasses.replace(checked, key="seats", value="x")])
    assert str(info.value).startswith(f"customer_uuid={SEED_UUID}: attribute 'seats'")
    assert "not a valid Integer" in str(info.value)
    assert chartmogul_conn.requests == []


def test_the_sending_methods_send_checked_values_as_they_are(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    # What a run sends (push/send.py): its records were checked when they entered the run.
    attributes = normalize_custom(SEED_CUSTOM, default_source="airflow")
    assert hook._send_add(SEED_UUID, attributes) == {"channel": "Facebook", "age": 8}
    assert hook._send_update(SEED_UUID, {"age": 9}) == {"channel": "Facebook", "age": 9}
    assert hook._send_remove(SEED_UUID, ["age"]) is None
    assert hook._read_custom(SEED_UUID) == {"channel": "Facebook"}
    sent = [(r.method, r.body) for r in chartmogul_conn.requests]
    assert sent[:3] == [
        ("POST", {"custom": [a.as_payload() for a in attributes]}),
        ("PUT", {"custom": {"age": 9}}),
        ("DELETE", {"custom": ["age"]}),
    ]


def test_uuid_is_encoded_as_one_path_segment(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    with pytest.raises(ChartMogulAPIError) as info:
        hook.add_custom_attributes("cus_ü", SEED_CUSTOM)
    assert info.value.status == 404
    assert chartmogul_conn.requests[-1].path in (
        "/v1/customers/cus_%C3%BC/attributes/custom",
        "/v1/customers/cus_ü/attributes/custom",
    )


# ---- the other calls -------------------------------------------------------------------------------


def test_update_get_and_remove(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert hook.update_custom_attributes(
        SEED_UUID, {"age": 9, "channel": {"value": "Ads", "source": "x"}}
    ) == {
        "channel": "Ads",
        "age": 9,
    }
    assert hook.get_custom_attributes(SEED_UUID) == {"channel": "Ads", "age": 9}
    # The recorded answer to a DELETE is 204 with no body: there is no map to return.
    assert hook.remove_custom_attributes(SEED_UUID, ["age"]) is None
    assert chartmogul_conn.custom_attributes(SEED_UUID) == {"channel": "Ads"}


@pytest.mark.parametrize("status", [200, 202, 204])
def test_remove_accepts_every_documented_answer(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, status: int
) -> None:
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    chartmogul_conn.configure(delete_status=status)
    result = hook.remove_custom_attributes(SEED_UUID, ["age", "channel"])
    assert result == ({} if status == 200 else None)
    assert chartmogul_conn.custom_attributes(SEED_UUID) == {}


def test_add_by_email_returns_every_matched_customer(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    twin = chartmogul_conn.add_customer(email="seed@example.com")
    matched = hook.add_custom_attributes_by_email("seed@example.com", SEED_CUSTOM)
    assert sorted(c["uuid"] for c in matched) == sorted([SEED_UUID, twin["uuid"]])
    assert hook.add_custom_attributes_by_email("nobody@example.com", SEED_CUSTOM) == []


def test_iter_customers_follows_the_cursor(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    chartmogul_conn.add_customers([{"external_id": f"e{i}"} for i in range(450)])
    chartmogul_conn.clear_requests()
    pages = []
    uuids = [c["uuid"] for c in hook.iter_customers(on_page=lambda: pages.append(1))]
    assert len(uuids) == len(set(uuids)) == 451
    assert len(pages) == len(chartmogul_conn.requests) == 3
    assert all(r.query.get("per_page") in ("200", ["200"]) for r in chartmogul_conn.requests)


def test_iter_customers_filters(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    other = chartmogul_conn.add_customer(external_id="ext-seed", data_source_uuid="ds_other")
    assert {c["uuid"] for c in hook.iter_customers(external_id="ext-seed")} == {SEED_UUID, other["uuid"]}
    assert [c["uuid"] for c in hook.iter_customers(external_id="ext-seed", data_source_uuid="ds_other")] == [
        other["uuid"]
    ]
    assert [c["uuid"] for c in hook.iter_customers(email="seed@example.com")] == [SEED_UUID]


def test_email_search_that_answers_404_yields_nothing(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    assert list(hook.iter_customers(email="nobody@example.com")) == []
    assert chartmogul_conn.requests[-1].status == 404


def test_test_connection(hook: ChartMogulHook) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "pong" in message


# ---- errors and retries ------------------------------------------------------------------------------

ERROR_BODIES = [
    ({"code": 422, "message": "Value is too long", "param": "channel"}, "Value is too long (param: channel)"),
    ({"error": "Customer not found"}, "Customer not found"),
    ({"errors": {"custom": "is invalid"}}, "custom: is invalid"),
    ({"error_details": {"message": "Rails says no"}, "code": None}, "Rails says no"),
    ("Something broke in plain text", "Something broke in plain text"),
    (
        "<html><head><title>422 Unprocessable</title><style>p {}</style></head>"
        "<body><h1>Bad thing</h1></body></html>",
        "422 Unprocessable: Bad thing",
    ),
]


@pytest.mark.parametrize(("body", "message"), ERROR_BODIES)
def test_every_error_body_shape_gives_the_apis_message(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, body: object, message: str
) -> None:
    chartmogul_conn.fail_customer(SEED_UUID, status=422, body=body)
    with pytest.raises(ChartMogulAPIError) as info:
        hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert info.value.status == 422
    assert message in str(info.value)
    assert "HTTP 422" in str(info.value)
    assert len(chartmogul_conn.requests) == 1, "a 422 is not retried"


def test_unknown_customer_is_a_404_with_the_apis_message(hook: ChartMogulHook) -> None:
    with pytest.raises(ChartMogulAPIError) as info:
        hook.add_custom_attributes("cus_missing", SEED_CUSTOM)
    assert info.value.status == 404
    assert not info.value.retryable


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "504", "drop", "bad_json"])
def test_transient_faults_are_retried(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, fault: str
) -> None:
    chartmogul_conn.queue_faults([fault, fault])
    assert hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM) == {"channel": "Facebook", "age": 8}
    assert len(chartmogul_conn.requests) == 3
    assert hook.stats.snapshot()["retries"] == 2


def test_retry_after_is_honoured(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    chartmogul_conn.configure(rate_limit_retry_after=1)
    chartmogul_conn.queue_faults(["429"])
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    first, second = chartmogul_conn.requests
    assert first.status == 429
    assert second.started - first.started >= 1.0


def test_backoff_without_retry_after_is_short_and_grows(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    chartmogul_conn.queue_faults(["503", "503", "503"])
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    starts = [r.started for r in chartmogul_conn.requests]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    # full-jitter backoff between half and all of 0.5 s, 1 s, 2 s
    assert 0.2 <= gaps[0] <= 0.8
    assert 0.45 <= gaps[1] <= 1.3
    assert 0.95 <= gaps[2] <= 2.3


def test_retry_budget_bounds_the_time_spent(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_conn, max_retries=1000, retry_budget=3, timeout=2),
    )
    chartmogul_conn.configure(faults={"503": 1.0})
    chartmogul_conn.add_customer(uuid=SEED_UUID)
    started = time.monotonic()
    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 2, "the budget plus one request timeout bounds a call"
    assert info.value.status == 503
    assert info.value.attempts >= 3
    assert f"after {info.value.attempts} attempts" in str(info.value)


def test_retry_count_bounds_the_attempts(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, max_retries=2))
    chartmogul_conn.configure(faults={"500": 1.0})
    chartmogul_conn.add_customer(uuid=SEED_UUID)
    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert len(chartmogul_conn.requests) == 3
    assert info.value.attempts == 3


def test_timeout_gives_a_clear_error(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, timeout=1, max_retries=0)
    )
    chartmogul_conn.configure(faults={"slow": 1.0}, slow_seconds=3)
    chartmogul_conn.add_customer(uuid=SEED_UUID)
    started = time.monotonic()
    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert time.monotonic() - started < 2.5
    assert info.value.status is None
    assert "Timeout" in str(info.value)


def test_401_is_clear_and_not_retried(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, api_key="wrong_key")
    )
    with pytest.raises(ChartMogulAuthError) as info:
        ChartMogulHook().add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert info.value.status == 401
    assert "No valid API key provided" in str(info.value)
    assert "password field" in str(info.value)
    assert len(chartmogul_conn.requests) == 1
    ok, message = ChartMogulHook().test_connection()
    assert not ok
    assert "No valid API key provided" in message


def test_403_read_only_key_is_clear(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, api_key=READ_ONLY_KEY)
    )
    chartmogul_conn.add_customer(uuid=SEED_UUID)
    with pytest.raises(ChartMogulAuthError) as info:
        ChartMogulHook().add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert info.value.status == 403
    assert "read-write key" in str(info.value)
    assert len(chartmogul_conn.requests) == 1


# ---- the connection ------------------------------------------------------------------------------------


def test_uri_form_extras_are_cast(chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import quote

    uri = (
        f"chartmogul://:{API_KEY}@{quote(chartmogul_conn.url, safe='')}"
        "?timeout=7&max_retries=2&retry_budget=30&max_requests_per_second=12.5&max_connections=4"
    )
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_URI", uri)
    settings = ChartMogulHook("chartmogul_uri").settings
    assert settings.base_url == chartmogul_conn.url
    assert (settings.timeout, settings.max_retries, settings.retry_budget) == (7.0, 2, 30.0)
    assert (settings.max_requests_per_second, settings.max_connections) == (12.5, 4)
    assert ChartMogulHook("chartmogul_uri").ping() == "pong!"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "password": API_KEY}))
    settings = ChartMogulHook("cm").settings
    assert settings.base_url == "https://api.chartmogul.com"
    assert (settings.timeout, settings.max_retries, settings.retry_budget) == (30, 5, 120)
    assert (settings.max_requests_per_second, settings.max_connections, settings.verify) == (39, 10, True)


def test_hook_arguments_override_the_connection(chartmogul_conn: ChartMogulServer) -> None:
    settings = ChartMogulHook(max_requests_per_second=5, max_connections=2, timeout=3).settings
    assert (settings.max_requests_per_second, settings.max_connections, settings.timeout) == (5, 2, 3)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.chartmogul.com", "https://api.chartmogul.com"),
        ("https://api.chartmogul.com/v1/", "https://api.chartmogul.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_base_url_forms(monkeypatch: pytest.MonkeyPatch, host: str, expected: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "host": host, "password": FAKE_KEY})
    )
    assert ChartMogulHook("cm").settings.base_url == expected


@pytest.mark.parametrize("host", ["http://api.chartmogul.com", "http://10.0.0.5:8080", "ftp://x"])
def test_plain_http_refused_except_to_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "host": host, "password": FAKE_KEY})
    )
    with pytest.raises(ChartMogulConfigurationError, match="http"):
        ChartMogulHook("cm").settings  # noqa: B018


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_connections": 50}, "between"),
    ],
)
def test_bad_extras_are_named(monkeypatch: pytest.MonkeyPatch, extra: dict, words: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "password": FAKE_KEY, "extra": extra})
    )
    with pytest.raises(ChartMogulConfigurationError, match=words):
        ChartMogulHook("cm").settings  # noqa: B018


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul"}))
    with pytest.raises(ChartMogulConfigurationError, match="password field"):
        ChartMogulHook("cm").settings  # noqa: B018


# ---- secrets --------------------------------------------------------------------------------------------


def _redact(text: str) -> str:
    try:
        from airflow.sdk.log import redact
    except ImportError:
        from airflow.utils.log.secrets_masker import redact  # type: ignore[no-redef]
    return str(redact(text))


def test_key_never_leaves_the_hook(
    chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    chartmogul_conn.add_customer(uuid=SEED_UUID)
    hook = ChartMogulHook()
    caplog.set_level(logging.DEBUG)
    chartmogul_conn.queue_faults(["429", "drop", "html"])
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    errors = []
    for uuid in ("cus_missing", SEED_UUID):
        try:
            hook.update_custom_attributes(uuid, {"nope": 1})
        except ChartMogulAPIError as exc:
            errors.append(exc)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_conn, api_key=API_KEY + "x")
    )
    try:
        ChartMogulHook().ping()
    except ChartMogulAuthError as exc:
        errors.append(exc)
    assert errors
    for text in [repr(hook), str(hook.settings), repr(hook.settings), caplog.text] + [
        f"{e!s} {e!r} {e.body}" for e in errors
    ]:
        assert API_KEY not in text
    assert _redact(f"key={API_KEY}") == "key=***"


# ---- 403 per request, answers checked, nothing leaks --------------------------------------------------


def test_a_403_after_writes_succeeded_fails_that_request_not_the_key(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer
) -> None:
    other = chartmogul_conn.add_customer()["uuid"]
    hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    chartmogul_conn.fail_customer(other, 403, body="<html><title>403 Forbidden</title>blocked</html>")
    with pytest.raises(ChartMogulForbiddenError) as info:
        hook.add_custom_attributes(other, SEED_CUSTOM)
    assert not isinstance(info.value, ChartMogulFatalError)
    assert info.value.status == 403 and not info.value.retryable
    assert "others like it succeeded" in str(info.value)
    assert hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)  # the run can go on


def test_a_403_on_the_first_write_is_the_key(hook: ChartMogulHook, chartmogul_conn: ChartMogulServer) -> None:
    hook.ping()  # a read succeeded: that says nothing about writes
    chartmogul_conn.fail_customer(SEED_UUID, 403)
    with pytest.raises(ChartMogulAuthError, match="read-only"):
        hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)


def test_a_403_to_the_first_read_is_the_key(chartmogul_conn: ChartMogulServer) -> None:
    # The server's own ping never answers 403: a customer read that does stands in for it (a GET
    # with nothing succeeded before it, as the operator's ping is).
    chartmogul_conn.fail_customer("cus_ping", 403, body={"code": 403, "message": "Forbidden", "param": None})
    with ChartMogulHook() as hook, pytest.raises(ChartMogulAuthError, match="may not read"):
        hook.request("GET", "/v1/customers/cus_ping")


@pytest.mark.parametrize(
    "answer",
    [{"custom": None}, {"entries": []}, [], {"custom": ["a"]}],
)
def test_a_write_whose_answer_has_no_custom_map_is_an_error(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, answer: object
) -> None:
    chartmogul_conn.fail_customer(SEED_UUID, 200, body=answer)
    with pytest.raises(ChartMogulAPIError, match="a JSON object with a 'custom' map was expected") as info:
        hook.add_custom_attributes(SEED_UUID, SEED_CUSTOM)
    assert info.value.method == "POST" and info.value.path and SEED_UUID in info.value.path


def test_a_listing_cursor_that_does_not_advance_ends_with_an_error(
    hook: ChartMogulHook, chartmogul_conn: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = iter([{"entries": [{"uuid": "a"}], "has_more": True, "cursor": "c1"}] * 3)
    monkeypatch.setattr(hook, "request", lambda *args, **kwargs: next(pages))
    seen = []
    with pytest.raises(ChartMogulAPIError, match="the listing did not advance"):
        for customer in hook.iter_customers():
            seen.append(customer["uuid"])
    assert seen == ["a", "a"]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("x" * 300, "255"),
        ("bad \ud800 text", "surrogate"),
        (2**70, "64-bit"),
        ([1, 2], "string, number, boolean or timestamp"),
    ],
)
def test_update_checks_values_like_the_seed_and_leaks_no_slot(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, value: object, rule: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server, max_connections=1)
    )
    uuid = chartmogul_server.add_customer(custom={"age": 1})["uuid"]
    with ChartMogulHook() as hook:
        for _ in range(3):  # with one connection, a leaked slot would hang the next call
            with pytest.raises(ChartMogulValidationError, match=rule):
                hook.update_custom_attributes(uuid, {"age": value})
        assert hook.engine.concurrency.in_flight == 0
        assert hook.update_custom_attributes(uuid, {"age": 2}) == {"age": 2}
    assert [r.method for r in chartmogul_server.requests] == ["PUT"]


def test_a_body_that_cannot_be_json_takes_no_slot(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server, max_connections=1)
    )
    with ChartMogulHook() as hook:
        for _ in range(3):
            with pytest.raises(ValueError):
                hook.request("POST", "/v1/customers/x/attributes/custom", json_body={"v": float("nan")})
        assert hook.engine.concurrency.in_flight == 0
        assert hook.ping() == "pong!"
