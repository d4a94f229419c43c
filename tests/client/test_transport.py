"""The hook's transport: public requests API only, exactly what the session sends, a hard deadline."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from airflow_provider_chartmogul.client.transport import Answer
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import API_KEY, connection_json

CUSTOM = [{"type": "String", "key": "channel", "value": "Facebook", "source": "integration"}]


@pytest.fixture
def customer(chartmogul_conn: ChartMogulServer) -> str:
    return chartmogul_conn.add_customer(external_id="ext-1")["uuid"]


def test_a_request_is_exactly_what_the_session_would_send(
    chartmogul_conn: ChartMogulServer, customer: str
) -> None:
    with ChartMogulHook() as hook:
        hook.add_custom_attributes(customer, CUSTOM)
        ours = chartmogul_conn.requests[-1]
        path = f"/v1/customers/{customer}/attributes/custom"
        hook.get_conn().post(f"{hook.settings.base_url}{path}", json={"custom": CUSTOM}, timeout=5)
        theirs = chartmogul_conn.requests[-1]
    assert (ours.method, ours.path, ours.query) == (theirs.method, theirs.path, theirs.query)
    assert ours.headers == theirs.headers
    assert ours.raw_body == theirs.raw_body


def test_query_strings_are_encoded_as_requests_encodes_them(
    chartmogul_conn: ChartMogulServer, customer: str
) -> None:
    params = {"email": "a+b@example.com", "external_id": "x y/z&1=é", "per_page": 200}
    with ChartMogulHook() as hook:
        assert hook.request("GET", "/v1/customers", params=params)["entries"] == []
        ours = chartmogul_conn.requests[-1]
        hook.get_conn().get(f"{hook.settings.base_url}/v1/customers", params=params, timeout=5)
        theirs = chartmogul_conn.requests[-1]
    assert ours.query == theirs.query
    assert ours.query == {"email": ["a+b@example.com"], "external_id": ["x y/z&1=é"], "per_page": ["200"]}


def test_a_closed_session_is_reopened_on_the_next_request(
    chartmogul_conn: ChartMogulServer, customer: str
) -> None:
    with ChartMogulHook() as hook:
        hook.ping()
        hook.get_conn().close()  # closes the adapter's pools, the one the hook sends through included
        assert hook.add_custom_attributes(customer, CUSTOM) == {"channel": "Facebook"}


def test_other_urls_through_get_conn_leave_the_api_pool_alone(
    chartmogul_conn: ChartMogulServer, customer: str
) -> None:
    with ChartMogulServer(api_keys={}) as other, ChartMogulHook() as hook:
        hook.ping()
        api_adapter = hook.get_conn().get_adapter(hook.settings.base_url)
        assert hook.get_conn().get_adapter(other.url) is not api_adapter
        hook.get_conn().get(f"{other.url}/v1/ping", timeout=5)
        assert hook.add_custom_attributes(customer, CUSTOM) == {"channel": "Facebook"}
    assert len(chartmogul_conn.requests) == 2


# ---- through an HTTP proxy from the environment ---------------------------------------------------


class _ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP proxy: takes absolute-URL requests and forwards them."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = _forward


@pytest.fixture
def proxy() -> Iterator[str]:
    _ForwardingProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_environments_proxy(
    chartmogul_server: ChartMogulServer, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = chartmogul_server.add_customer()["uuid"]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server))
    with ChartMogulHook() as hook:
        assert hook.add_custom_attributes(customer, CUSTOM) == {"channel": "Facebook"}
    path = f"/v1/customers/{customer}/attributes/custom"
    assert _ForwardingProxy.seen == [f"POST {chartmogul_server.url}{path}"]
    assert chartmogul_server.requests[-1].path == path


def test_no_answer_names_the_failure_but_not_the_url(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exception's own text would hold the URL (and, through a proxy, possibly more)."""
    with ChartMogulServer(api_keys={}) as gone:
        dead_url = gone.url  # nothing listens there any more
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_server, max_retries=0).replace(chartmogul_server.url, dead_url),
    )
    with ChartMogulHook() as hook, pytest.raises(ChartMogulAPIError) as info:
        hook.ping()
    assert info.value.status is None
    assert "no answer (ConnectionRefusedError)" in str(info.value)
    assert dead_url not in str(info.value)


# ---- answers ----------------------------------------------------------------------------------------


def test_answer_text_uses_the_charset_the_answer_names() -> None:
    body = "Überschreitung".encode("latin-1")
    assert Answer(500, {"Content-Type": "text/plain; charset=ISO-8859-1"}, body).text == "Überschreitung"
    assert Answer(500, {"Content-Type": 'text/plain; charset="latin-1"'}, body).text == "Überschreitung"


def test_answer_text_falls_back_to_utf8_and_never_raises() -> None:
    assert Answer(500, {}, "café".encode()).text == "café"
    assert Answer(500, {"Content-Type": "text/plain; charset=no-such"}, b"ok").text == "ok"
    assert Answer(500, {}, b"\xff bad").text == "\ufffd bad"


# ---- a hard deadline per attempt -------------------------------------------------------------------


class _Trickle(BaseHTTPRequestHandler):
    """Answers 200 with a 40-byte JSON body, one byte every 0.25 s (10 s in all): every socket
    read gets a byte well within any read timeout, so only a deadline on the whole answer ends it."""

    protocol_version = "HTTP/1.1"
    finished = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"data": "' + b"p" * 28 + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass  # the client hung up: what the deadline should make it do
        finally:
            type(self).finished.set()


@pytest.fixture
def trickle_url() -> Iterator[str]:
    _Trickle.finished = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answer_that_trickles_in_ends_at_the_timeout(
    trickle_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps(
            {
                "conn_type": "chartmogul",
                "host": trickle_url,
                "password": API_KEY,
                "extra": {"timeout": 1, "max_retries": 0},
            }
        ),
    )
    started = time.monotonic()
    with ChartMogulHook() as hook, pytest.raises(ChartMogulAPIError) as info:
        hook.ping()
    # The whole answer takes 10 s; the deadline is 1 s. A generous bound, far from either.
    assert time.monotonic() - started < 5
    assert info.value.status is None
    assert "no whole answer within the 1 s timeout" in str(info.value)
    # And the connection was closed then, not when the answer was complete: the server's next
    # writes fail (it writes every 0.25 s; the whole answer would take another 9 s).
    assert _Trickle.finished.wait(4)
    assert time.monotonic() - started < 6


# ---- the mocking tools users test their DAGs with ---------------------------------------------------


@pytest.fixture
def mocked_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection to an address nothing listens on: only a mock can answer."""
    base = "https://api.chartmogul.example"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        json.dumps(
            {"conn_type": "chartmogul", "host": base, "password": API_KEY, "extra": {"max_retries": 1}}
        ),
    )
    return base


def test_responses_sees_and_shapes_every_call(mocked_conn: str) -> None:
    responses = pytest.importorskip("responses")
    uuid = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
    url = f"{mocked_conn}/v1/customers/{uuid}/attributes/custom"
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, url, status=503, json={"code": 503, "message": "busy"})
        mock.add(responses.POST, url, json={"custom": {"channel": "Facebook"}})
        with ChartMogulHook() as hook:
            assert hook.add_custom_attributes(uuid, CUSTOM) == {"channel": "Facebook"}
        assert [call.response.status_code for call in mock.calls] == [503, 200]
        sent = json.loads(mock.calls[-1].request.body)
    assert sent == {"custom": CUSTOM}


def test_requests_mock_sees_and_shapes_every_call(mocked_conn: str) -> None:
    requests_mock = pytest.importorskip("requests_mock")
    with requests_mock.Mocker() as mock:
        mock.get(f"{mocked_conn}/v1/ping", json={"data": "pong!"})
        with ChartMogulHook() as hook:
            assert hook.ping() == "pong!"
        assert mock.call_count == 1
        assert mock.last_request.headers["Authorization"].startswith("Basic ")


def test_an_adapter_mounted_on_get_conn_takes_the_hooks_calls(mocked_conn: str) -> None:
    requests_mock = pytest.importorskip("requests_mock")
    adapter = requests_mock.Adapter()
    adapter.register_uri("GET", f"{mocked_conn}/v1/ping", json={"data": "from the adapter"})
    with ChartMogulHook() as hook:
        hook.get_conn().mount(mocked_conn, adapter)
        assert hook.ping() == "from the adapter"
    assert adapter.call_count == 1


# ---- deadlines from the first byte ------------------------------------------------------------------


def test_a_trickling_status_line_ends_at_the_deadline_and_frees_the_connection_slot(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The status line and headers come a byte every 0.5 s: over a minute for the head alone, and
    # the 1 s per-read timeout never fires. The deadline (1 s) must end it, and the socket with it.
    chartmogul_server.configure(trickle_seconds=0.5)
    uuid = chartmogul_server.add_customer()["uuid"]
    chartmogul_server.fault_customer(uuid, "trickle_head", times=1)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
        connection_json(chartmogul_server, timeout=1, max_retries=0, max_connections=1),
    )
    with ChartMogulHook() as hook:
        with pytest.raises(ChartMogulAPIError, match="no whole answer within the 1 s timeout") as info:
            hook.get_custom_attributes(uuid)
        assert info.value.status is None
        # The server saw the client hang up long before its head was out.
        deadline = time.monotonic() + 60  # a generous gate, not a measured bound
        while not chartmogul_server.stats()["trickles"] and time.monotonic() < deadline:
            time.sleep(0.05)
        (trickle,) = chartmogul_server.stats()["trickles"]
        assert trickle["hung_up"]
        # The only connection slot comes back once the abandoned exchange's thread has ended (the
        # socket is shut, so it ends at once; the server may see the hang-up a moment earlier).
        while hook.engine.concurrency.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hook.engine.concurrency.in_flight == 0
        assert hook.get_custom_attributes(uuid) == {}


_EXIT_SCRIPT = """
import sys
from airflow_provider_chartmogul.client.engine import RequestEngine, RequestStats
from airflow_provider_chartmogul.client.settings import ClientSettings
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError

settings = ClientSettings(base_url=sys.argv[1], api_key=sys.argv[2], timeout=1, max_retries=0)
engine = RequestEngine(settings, RequestStats())
try:
    engine.request("GET", "/v1/ping")
except ChartMogulAPIError as exc:
    print("gave up:", exc, flush=True)
"""


def test_a_process_that_gave_up_on_a_trickling_answer_exits_while_the_server_still_trickles(
    chartmogul_server: ChartMogulServer, tmp_path: Path
) -> None:
    import subprocess
    import sys

    # A byte every 0.5 s (within the 1 s per-read timeout): the head alone would take over a minute.
    chartmogul_server.configure(trickle_seconds=0.5)
    chartmogul_server.queue_faults(["trickle_head"])
    script = tmp_path / "give_up.py"
    script.write_text(_EXIT_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), chartmogul_server.url, API_KEY],
        capture_output=True,
        text=True,
        timeout=240,  # a gate only: the server's trickle says whether the exit came first
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "gave up:" in done.stdout and "no whole answer" in done.stdout
    # The process is gone, and the server had not finished: the client hung up, mid-head.
    deadline = time.monotonic() + 30
    while not chartmogul_server.stats()["trickles"] and time.monotonic() < deadline:
        time.sleep(0.05)
    (trickle,) = chartmogul_server.stats()["trickles"]
    assert trickle["hung_up"] and trickle["bytes_sent"] == 0


class _HugeErrorPage(BaseHTTPRequestHandler):
    """A 500 announcing a 150 MB body, written until the client hangs up."""

    protocol_version = "HTTP/1.1"
    written = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        size = 150 * 1024 * 1024
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"<html><title>Internal error</title>" + b"x" * (64 * 1024 - 35)
        type(self).written = 0
        try:
            while type(self).written < size:
                self.wfile.write(chunk)
                type(self).written += len(chunk)
        except OSError:
            pass


def test_a_150_mb_error_page_is_read_only_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HugeErrorPage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
            json.dumps(
                {
                    "conn_type": "chartmogul",
                    "host": f"http://127.0.0.1:{server.server_address[1]}",
                    "password": API_KEY,
                    "extra": {"timeout": 30, "max_retries": 0},
                }
            ),
        )
        with ChartMogulHook() as hook, pytest.raises(ChartMogulAPIError) as info:
            hook.ping()
        assert info.value.status == 500 and "Internal error" in str(info.value)
        assert len(info.value.body or "") <= 600
    finally:
        server.shutdown()
        server.server_close()
    # What the server got out before the client hung up: the bound plus the sockets' buffers,
    # far from the 150 MB announced.
    assert _HugeErrorPage.written < 40 * 1024 * 1024
