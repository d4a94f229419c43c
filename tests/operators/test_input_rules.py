"""The operator's input rules: records are data (not Jinja), argument types, None values, an input
that breaks mid-way, failing without Airflow retries, and email matching; over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
from airflow_provider_chartmogul.operators.custom_attributes import (
    AddCustomAttributesOperator,
)
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.version_compat import AirflowFailException
from tests.conftest import connection_json

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[no-redef]


@pytest.fixture
def server(chartmogul_conn: ChartMogulServer) -> ChartMogulServer:
    return chartmogul_conn


def _plan(value: Any) -> list[dict[str, Any]]:
    return [{"type": "String", "key": "plan", "value": value}]


def _rendered(customers: Any, *, native: bool, context: dict[str, Any] | None = None) -> Any:
    with DAG(
        f"render_{native}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1),
        render_template_as_native_obj=native,
    ) as dag:
        op = AddCustomAttributesOperator(task_id="push", customers=customers)
    op.render_template_fields(context=context or {}, jinja_env=dag.get_template_env())
    return op


# ---- records are data ----------------------------------------------------------------------------

JINJA_LOOKING = ["Promo {{ 7*7 }}", "50% {% off", "{# not a comment #}", "{{ ds }}"]


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("form", ["list", "dict", "json string", "python string", "report"])
def test_literal_records_are_never_rendered(server: ChartMogulServer, native: bool, form: str) -> None:
    uuids = [server.add_customer()["uuid"] for _ in JINJA_LOOKING]
    records = [{"customer_uuid": u, "custom": _plan(v)} for u, v in zip(uuids, JINJA_LOOKING, strict=True)]
    customers: Any = {
        "list": records,
        "dict": records[0],
        "json string": json.dumps(records),
        "python string": repr(records),
        "report": {"total": 4, "failures": [{"record": r} for r in records]},
    }[form]
    op = _rendered(customers, native=native, context={"ds": "2026-11-29"})
    report = op.execute(context={})
    expected = JINJA_LOOKING[:1] if form == "dict" else JINJA_LOOKING
    assert report["succeeded"] == len(expected), report["failures"]
    for uuid, value in zip(uuids, expected, strict=False):
        assert server.custom_attributes(uuid) == {"plan": value}


@pytest.mark.parametrize("native", [True, False])
def test_a_template_for_the_whole_field_is_still_rendered(server: ChartMogulServer, native: bool) -> None:
    uuid = server.add_customer()["uuid"]
    records = [{"customer_uuid": uuid, "custom": _plan("{{ not rendered }}")}]
    for template in ("{{ params.records }}", "{{ params.records | tojson }}"):
        op = _rendered(template, native=native, context={"params": {"records": records}})
        report = op.execute(context={})
        assert report["succeeded"] == 1
        assert server.custom_attributes(uuid) == {"plan": "{{ not rendered }}"}


def test_literal_records_execute_without_rendering(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]
    records = [{"customer_uuid": uuid, "custom": _plan("x")}]
    op = AddCustomAttributesOperator(task_id="push", customers=records)
    assert op.execute(context={})["succeeded"] == 1


# ---- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dry_run": "false"}, "dry_run must be True or False, got 'false'"),
        ({"dry_run": 0}, "dry_run must be True or False, got 0"),
        ({"max_requests_per_second": float("inf")}, "max_requests_per_second must be a finite number"),
        ({"max_requests_per_second": float("nan")}, "max_requests_per_second must be a finite number"),
        ({"max_requests_per_second": "10"}, "max_requests_per_second must be a finite number"),
        ({"max_requests_per_second": True}, "max_requests_per_second must be a finite number"),
        ({"max_requests_per_second": 0.05}, "max_requests_per_second must be a finite number >= 0.1"),
        ({"max_connections": 21}, "max_connections must be a whole number between 1 and 20, got 21"),
        ({"max_connections": 2.5}, "max_connections must be a whole number between 1 and 20, got 2.5"),
        ({"fetch_size": 0}, "fetch_size must be a whole number >= 1, got 0"),
        ({"listing_threshold": True}, "listing_threshold must be a whole number >= 0, got True"),
    ],
)
def test_bad_argument_types_fail_at_dag_parse_time(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        AddCustomAttributesOperator(task_id="push", customers=[], **kwargs)


# ---- None in a record is a SQL NULL --------------------------------------------------------------


def test_none_leaves_an_attribute_alone_as_a_sql_null_does(server: ChartMogulServer) -> None:
    only_none, mixed = (server.add_customer()["uuid"] for _ in range(2))
    records = [
        {"customer_uuid": only_none, "custom": _plan(None)},
        {"customer_uuid": mixed, "custom": [*_plan(None), {"type": "Integer", "key": "seats", "value": 3}]},
    ]
    report = AddCustomAttributesOperator(task_id="push", customers=records).execute(context={})
    assert (report["total"], report["skipped"], report["succeeded"], report["failed"]) == (2, 1, 1, 0)
    assert server.custom_attributes(only_none) == {}
    assert server.custom_attributes(mixed) == {"seats": 3}


def test_none_clears_in_sync_mode_with_clear_remove(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]
    AddCustomAttributesOperator(
        task_id="seed", customers=[{"customer_uuid": uuid, "custom": _plan("pro")}]
    ).execute(context={})
    records = [{"customer_uuid": uuid, "custom": _plan(None)}]
    kept = AddCustomAttributesOperator(task_id="keep", customers=records, mode="sync").execute(context={})
    assert server.custom_attributes(uuid) == {"plan": "pro"} and kept["failed"] == 0
    cleared = AddCustomAttributesOperator(
        task_id="clear", customers=records, mode="sync", clear="remove"
    ).execute(context={})
    assert cleared["cleared"] == 1 and server.custom_attributes(uuid) == {}


# ---- an input that breaks mid-way ----------------------------------------------------------------


def test_an_upstream_generator_that_raises_still_gives_a_full_report(server: ChartMogulServer) -> None:
    uuids = [server.add_customer()["uuid"] for _ in range(3)]

    def records() -> Iterator[dict[str, Any]]:
        for uuid in uuids:
            yield {"customer_uuid": uuid, "custom": _plan("x")}
        raise ConnectionResetError("XCom backend went away")

    op = AddCustomAttributesOperator(task_id="push", customers=records())
    with pytest.raises(CustomAttributesPushError) as info:
        op.execute(context={})
    report = info.value.report
    assert (report["total"], report["succeeded"], report["failed"]) == (4, 3, 1)
    (failure,) = report["failures"]
    assert failure["customer"] == "record #3"
    assert "ConnectionResetError: XCom backend went away" in failure["error"]
    assert "records #0 to #2 were read" in failure["error"]
    assert failure["stage"] == "input"
    for uuid in uuids:
        assert server.custom_attributes(uuid) == {"plan": "x"}
    json.dumps(report)


def test_a_broken_input_fails_the_task_whatever_max_failures_allows(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]

    def records() -> Iterator[dict[str, Any]]:
        yield {"customer_uuid": uuid, "custom": _plan("x")}
        raise ConnectionResetError("XCom backend went away")

    op = AddCustomAttributesOperator(task_id="push", customers=records(), max_failures=100)
    with pytest.raises(CustomAttributesPushError, match="The input broke"):
        op.execute(context={})
    assert server.custom_attributes(uuid) == {"plan": "x"}


# ---- fail fast -----------------------------------------------------------------------------------


def test_a_refused_key_fails_without_airflow_retries(
    server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(server, api_key="revoked"))
    records = [{"customer_uuid": server.add_customer()["uuid"], "custom": _plan("x")} for _ in range(5)]
    with pytest.raises(CustomAttributesPushError) as info:
        AddCustomAttributesOperator(task_id="push", customers=records).execute(context={})
    assert isinstance(info.value, AirflowFailException)
    assert info.value.report["aborted"] and info.value.report["total"] == 5


def test_failed_customers_still_let_airflow_retry(server: ChartMogulServer) -> None:
    uuid = server.add_customer()["uuid"]
    server.fail_customer(uuid, status=500)
    with pytest.raises(CustomAttributesPushError) as info:
        AddCustomAttributesOperator(
            task_id="push", customers=[{"customer_uuid": uuid, "custom": _plan("x")}]
        ).execute(context={})
    assert not isinstance(info.value, AirflowFailException)


# ---- email matching ------------------------------------------------------------------------------


@pytest.mark.parametrize("lookup", ["per_customer", "listing"])
def test_emails_match_case_insensitively_in_both_lookups(server: ChartMogulServer, lookup: str) -> None:
    uuid = server.add_customer(email="ada@example.com")["uuid"]
    records = [{"email": "Ada@Example.COM", "custom": _plan("x")}]
    report = AddCustomAttributesOperator(task_id="push", customers=records, customer_lookup=lookup).execute(
        context={}
    )
    assert report["succeeded"] == 1, report["failures"]
    assert server.custom_attributes(uuid) == {"plan": "x"}


class _CaseSensitiveSearch(BaseHTTPRequestHandler):
    """A ChartMogul double whose email search matches exactly (as some do)."""

    emails = {"ada@example.com": "cus_ada"}
    written: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        email = parse_qs(split.query).get("email", [""])[0]
        uuid = self.emails.get(email)
        if split.path != "/v1/customers/search" or uuid is None:
            self._answer(404, {"code": 404, "message": "No customers found", "param": "email"})
            return
        entry = {"uuid": uuid, "email": email, "external_ids": [], "data_source_uuids": []}
        self._answer(200, {"entries": [entry], "has_more": False, "cursor": None})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.written.append(self.path)
        self._answer(200, {"custom": {a["key"]: a["value"] for a in body["custom"]}})


def test_per_customer_email_lookup_on_a_case_sensitive_search(monkeypatch: pytest.MonkeyPatch) -> None:
    double = ThreadingHTTPServer(("127.0.0.1", 0), _CaseSensitiveSearch)
    threading.Thread(target=double.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{double.server_address[1]}"
        conn = {"conn_type": "chartmogul", "host": url, "password": "sk_case", "extra": {"max_retries": 0}}
        monkeypatch.setenv("AIRFLOW_CONN_CASE", json.dumps(conn))
        _CaseSensitiveSearch.written = []
        report = AddCustomAttributesOperator(
            task_id="push",
            customers=[{"email": "ADA@example.com", "custom": _plan("x")}],
            chartmogul_conn_id="case",
            customer_lookup="per_customer",
        ).execute(context={})
    finally:
        double.shutdown()
        double.server_close()
    assert report["succeeded"] == 1, report["failures"]
    assert _CaseSensitiveSearch.written == ["/v1/customers/cus_ada/attributes/custom"]
