"""Security: the API key stays secret, TLS is verified, URLs cannot be bent, error bodies stay short."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import sqlite3
import ssl
import threading
import time
import uuid as uuid_module
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from airflow_provider_chartmogul.exceptions import (
    ChartMogulAPIError,
    ChartMogulConfigurationError,
    ChartMogulFatalError,
    ChartMogulTLSError,
)
from airflow_provider_chartmogul.hooks.chartmogul import ChartMogulHook
from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import FAULT_KINDS, ChartMogulServer
from tests.conftest import API_KEY, READ_ONLY_KEY, connection_json
from tests.hooks.test_chartmogul import FAKE_KEY
from tests.reliability._support import (
    RecordingTI,
    exception_texts,
    redact,
    run_operator,
    secret_forms,
    typed_record,
)

WRONG_KEY = "sk_wrong_5e4d3c2b1a_SECRET"
SECRETS = [*secret_forms(API_KEY), *secret_forms(READ_ONLY_KEY), *secret_forms(WRONG_KEY)]


def _assert_no_secret(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"a key leaked into {where}"


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Everything at DEBUG: stdlib logging (urllib3, ...) and Airflow 3's structlog task loggers."""
    caplog.set_level(logging.DEBUG)
    try:
        from airflow._shared.logging.structlog import NAME_TO_LEVEL, PER_LOGGER_LEVELS
    except ImportError:  # Airflow 2: stdlib loggers, but "airflow.task" does not propagate to root
        task_logger = logging.getLogger("airflow.task")
        old_level = task_logger.level
        task_logger.setLevel(logging.DEBUG)
        task_logger.addHandler(caplog.handler)
        try:
            yield
        finally:
            task_logger.removeHandler(caplog.handler)
            task_logger.setLevel(old_level)
        return
    saved = dict(PER_LOGGER_LEVELS.items())
    for name in saved:
        PER_LOGGER_LEVELS[name] = NAME_TO_LEVEL["debug"]
    try:
        yield
    finally:
        PER_LOGGER_LEVELS.update(saved)


def test_key_never_emitted_during_a_faulty_debug_run(
    chartmogul_server: ChartMogulServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    debug_logging: None,
    tmp_path: Path,
) -> None:
    server = chartmogul_server
    uuids = [f"cus_sec_{i:03d}" for i in range(60)]
    server.add_customers([{"uuid": uuid} for uuid in uuids])
    server.fail_customer(uuids[1], status=422, body="<html><title>Unprocessable</title>no</html>")
    server.fail_customer(uuids[2], status=500, body={"error": "boom"})
    server.configure(faults={kind: 0.03 for kind in FAULT_KINDS}, slow_seconds=1.5, fault_seed=3)
    db = tmp_path / "dead_letter.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTER", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    texts: dict[str, str] = {}
    errors: list[BaseException] = []
    records: list[Any] = [typed_record(uuid, i) for i, uuid in enumerate(uuids)]
    records += [
        {"customer_uuid": "cus_gone", "custom": [{"type": "String", "key": "plan", "value": "x"}]},
        {"customer_uuid": uuids[3], "custom": [{"type": "Boolean", "key": "pro", "value": "maybe"}]},
        f"customer_uuid={uuids[4]}",
    ]

    def conn(api_key: str, **extra: Any) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_CHARTMOGUL_DEFAULT",
            connection_json(
                server, api_key=api_key, timeout=1, max_retries=1, retry_budget=2, max_connections=5, **extra
            ),
        )

    try:
        # 1. faults, validation errors, 404/422/500, dead letters, a failing task
        conn(API_KEY)
        ti = RecordingTI()
        report, error = run_operator(
            customers=records, context={"ti": ti}, dead_letter_conn_id="dead_letter", dead_letter_table="dl"
        )
        assert error is not None and report["failed"] >= 4
        errors.append(error)
        texts["XCom report"] = ti.xcom["return_value"]
        texts["report"] = json.dumps(report)
        # 2. a read-only key (403) and a wrong key (401) stop runs
        for api_key in (READ_ONLY_KEY, WRONG_KEY):
            conn(api_key)
            ti = RecordingTI()
            report, error = run_operator(customers=records, context={"ti": ti})
            assert error is not None and report["aborted"]
            errors.append(error)
            texts[f"XCom report {api_key[:3]}"] = ti.xcom["return_value"]
        # 3. the hook on its own: timeouts, dropped connections, HTML errors, refusals
        conn(API_KEY)
        hook = ChartMogulHook()
        for fault in ("slow", "drop", "html", "502"):
            server.configure(faults={fault: 1.0})
            with pytest.raises(ChartMogulAPIError) as info:
                hook.add_custom_attributes(uuids[0], [{"type": "String", "key": "plan", "value": "x"}])
            errors.append(info.value)
        server.configure(faults=None)
        conn(WRONG_KEY)
        ok, message = ChartMogulHook().test_connection()
        assert not ok
        texts["test_connection"] = message
        # 4. reprs
        operator = AddCustomAttributesOperator(task_id="push", customers=records)
        texts["reprs"] = " ".join(
            [repr(hook), str(hook), repr(hook.settings), str(hook.settings), repr(operator), repr(hook.stats)]
        )
    finally:
        server.configure(faults=None, slow_seconds=5.0)

    with sqlite3.connect(db) as dead_letter:
        texts["dead letters"] = json.dumps(dead_letter.execute("SELECT * FROM dl").fetchall())
    dead_letter.close()
    for n, exc in enumerate(errors):
        texts[f"exception {n}"] = "\n".join(exception_texts(exc))
    out, err = capfd.readouterr()
    texts["stdout"], texts["stderr"], texts["logging"] = out, err, caplog.text

    # the capture really saw the run, at DEBUG level
    emitted = out + err + caplog.text
    assert "Retrying in" in emitted, "the hook's DEBUG lines were not captured"
    assert '"POST /v1/customers/cus_sec_000/attributes/custom HTTP/1.1"' in emitted
    assert "cus_gone" in texts["dead letters"]
    _assert_no_secret(texts)


def test_redact_masks_the_key_once_the_hook_read_its_connection(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = f"sk_fresh_{uuid_module.uuid4().hex}_SECRET"
    keys = chartmogul_server.config["api_keys"]
    chartmogul_server.configure(api_keys={**keys, fresh: "read-write"})
    try:
        monkeypatch.setenv("AIRFLOW_CONN_FRESH", connection_json(chartmogul_server, api_key=fresh))
        hook = ChartMogulHook("fresh")
        assert redact(f"key={fresh};") == f"key={fresh};", "masked before anything read it"
        assert hook.ping() == "pong!"
        assert redact(f"key={fresh};") == "key=***;"
        assert fresh not in redact(json.dumps({"message": f"Basic auth user {fresh}"}))
    finally:
        chartmogul_server.configure(api_keys=keys)


def test_settings_and_hook_reprs_hide_the_key(chartmogul_conn: ChartMogulServer) -> None:
    hook = ChartMogulHook()
    settings = hook.settings
    shown = {
        "repr(hook)": repr(hook),
        "repr(settings)": repr(settings),
        "fields": repr({f.name: f.repr for f in dataclasses.fields(settings)}),
        "vars(hook) without settings": repr({k: v for k, v in vars(hook).items() if k != "_settings"}),
    }
    _assert_no_secret(shown)


# ---- TLS ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Certificates:
    ca: Path
    leaf: Path  # signed by ca, for 127.0.0.1 and localhost
    leaf_key: Path
    self_signed: Path  # its own issuer, for 127.0.0.1
    self_signed_key: Path
    localhost_only: Path  # signed by ca, for localhost only
    localhost_only_key: Path


def _make_certificates(directory: Path) -> Certificates:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def build(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, sans: list) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if ca:  # Python 3.13's strict verification (VERIFY_X509_STRICT) wants a CA's key usage
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        if issuer_key is not key:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, cert: Any, key: Any = None) -> tuple[Path, Path | None]:
        cert_path = directory / f"{stem}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is None:
            return cert_path, None
        key_path = directory / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("reliability test CA", ca_key, "reliability test CA", ca_key, ca=True, sans=[])
    leaf_key, self_key, local_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca, _ = write("ca", ca_cert)
    leaf, leaf_key_path = write(
        "leaf", build("127.0.0.1", leaf_key, "reliability test CA", ca_key, ca=False, sans=loopback), leaf_key
    )
    self_signed, self_key_path = write(
        "self_signed", build("127.0.0.1", self_key, "127.0.0.1", self_key, ca=True, sans=loopback), self_key
    )
    local, local_key_path = write(
        "localhost_only",
        build(
            "localhost", local_key, "reliability test CA", ca_key, ca=False, sans=[x509.DNSName("localhost")]
        ),
        local_key,
    )
    assert leaf_key_path and self_key_path and local_key_path
    return Certificates(ca, leaf, leaf_key_path, self_signed, self_key_path, local, local_key_path)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return _make_certificates(tmp_path_factory.mktemp("tls"))


class _PingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        body = json.dumps({"data": "pong!"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HandshakeDropper(ThreadingHTTPServer):
    """Accepts TCP connections and does the TLS handshake itself; the first ``drops`` connections
    are closed before any handshake (what a load balancer dropping a handshake looks like)."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, drops: int) -> None:
        super().__init__(("127.0.0.1", 0), _PingHandler)
        self.context = context
        self.drops = drops
        self.dropped = 0

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.dropped < self.drops:
            self.dropped += 1
            sock.close()
            raise OSError("handshake dropped")  # socketserver skips the connection
        return self.context.wrap_socket(sock, server_side=True), address


class HTTPSServer:
    """A ChartMogul ``/v1/ping`` over real TLS on loopback; ``seen`` lists the requests that got through.

    :param drop_handshakes: close this many connections first, before their TLS handshake.
    """

    def __init__(self, cert: Path, key: Path, *, drop_handshakes: int = 0) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._httpd = _HandshakeDropper(context, drop_handshakes)
        self.seen: list[tuple[str, str | None]] = []
        self._httpd.seen = self.seen  # type: ignore[attr-defined]
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> HTTPSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


TLS_SETTINGS = {"timeout": 2, "max_retries": 1, "retry_budget": 2}


def _tls_hook(monkeypatch: pytest.MonkeyPatch, url: str, verify: Any = None) -> ChartMogulHook:
    extra: dict[str, Any] = dict(TLS_SETTINGS)
    if verify is not None:
        extra["verify"] = verify
    monkeypatch.setenv(
        "AIRFLOW_CONN_TLS",
        json.dumps({"conn_type": "chartmogul", "host": url, "password": API_KEY, "extra": extra}),
    )
    return ChartMogulHook("tls")


@pytest.mark.parametrize("which", ["leaf", "self_signed"])
def test_tls_verified_by_default_unknown_certificate_refused(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    cert, key = getattr(certificates, which), getattr(certificates, f"{which}_key")
    with HTTPSServer(cert, key) as server:
        hook = _tls_hook(monkeypatch, server.url)
        assert hook.settings.verify is True
        started = time.monotonic()
        with pytest.raises(ChartMogulAPIError) as info:
            hook.ping()
        elapsed = time.monotonic() - started
    assert "SSLError" in str(info.value)
    assert isinstance(info.value, ChartMogulTLSError), "a refused certificate is final, not retried"
    assert hook.stats.snapshot()["retries"] == 0
    assert elapsed < TLS_SETTINGS["timeout"] + 1
    assert server.seen == [], "a request (and the key) reached a server whose certificate was not verified"
    _assert_no_secret({"error": "\n".join(exception_texts(info.value))})


@pytest.mark.parametrize(("which", "trust"), [("leaf", "ca"), ("self_signed", "self_signed")])
def test_tls_accepted_when_verify_points_at_the_ca_or_certificate(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch, which: str, trust: str
) -> None:
    cert, key = getattr(certificates, which), getattr(certificates, f"{which}_key")
    with HTTPSServer(cert, key) as server:
        hook = _tls_hook(monkeypatch, server.url, verify=str(getattr(certificates, trust)))
        assert hook.ping() == "pong!"
    expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert server.seen == [("/v1/ping", expected)]


def test_tls_certificate_for_another_host_refused_even_with_its_ca(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HTTPSServer(certificates.localhost_only, certificates.localhost_only_key) as server:
        hook = _tls_hook(monkeypatch, server.url, verify=str(certificates.ca))
        with pytest.raises(ChartMogulAPIError, match="SSLError"):
            hook.ping()
    assert server.seen == []


def test_a_dropped_tls_handshake_is_a_connection_error_and_is_retried(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HTTPSServer(certificates.leaf, certificates.leaf_key, drop_handshakes=1) as server:
        hook = _tls_hook(monkeypatch, server.url, verify=str(certificates.ca))
        assert hook.ping() == "pong!"
    stats = hook.stats.snapshot()
    assert stats["connection_errors"] == 1 and stats["retries"] == 1
    assert len(server.seen) == 1


def test_a_dropped_tls_handshake_without_retries_left_is_no_tls_error(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TLS_SETTINGS, "max_retries", 0)
    with HTTPSServer(certificates.leaf, certificates.leaf_key, drop_handshakes=1) as server:
        hook = _tls_hook(monkeypatch, server.url, verify=str(certificates.ca))
        with pytest.raises(ChartMogulAPIError) as info:
            hook.ping()
    assert not isinstance(info.value, ChartMogulFatalError), "a dropped handshake is not fatal"
    assert info.value.retryable and info.value.status is None
    assert "certificate" not in str(info.value)


def test_https_to_a_plain_http_server_says_so(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = chartmogul_server.url.replace("http://", "https://")
    hook = _tls_hook(monkeypatch, url)
    with pytest.raises(ChartMogulTLSError, match="does not speak TLS") as info:
        hook.ping()
    assert hook.stats.snapshot()["retries"] == 0
    _assert_no_secret({"error": "\n".join(exception_texts(info.value))})


def test_a_missing_ca_bundle_is_a_configuration_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _tls_hook(monkeypatch, "https://127.0.0.1:9", verify="/nonexistent/ca-bundle.pem")
    with pytest.raises(ChartMogulConfigurationError, match="does not exist on this worker"):
        hook.ping()
    assert hook.stats.snapshot()["requests"] == 0


@pytest.mark.parametrize(
    ("password", "host", "what"),
    [
        ("sk_tëst_ключ_0000_SECRET", None, "characters an API key cannot have"),
        ("abc", None, "too short"),
        (API_KEY, f"https://{API_KEY}@api.chartmogul.com", "host field holds the API key"),
        (API_KEY, "https://sk_live_other_0000_SECRET:@api.chartmogul.com", "holds credentials"),
        (API_KEY, f"{API_KEY}.chartmogul.com", "host field holds the API key"),
    ],
)
def test_a_key_that_cannot_work_is_a_configuration_error_that_never_shows_it(
    monkeypatch: pytest.MonkeyPatch, password: str, host: str | None, what: str
) -> None:
    conn: dict[str, Any] = {"conn_type": "chartmogul", "password": password}
    if host is not None:
        conn["host"] = host
    monkeypatch.setenv("AIRFLOW_CONN_BADKEY", json.dumps(conn))
    hook = ChartMogulHook("badkey")
    with pytest.raises(ChartMogulConfigurationError, match=what) as info:
        hook.ping()
    for text in exception_texts(info.value):
        assert password not in text and API_KEY not in text and "sk_live_other" not in text
        assert base64.b64encode(f"{password}:".encode()).decode() not in text


# ---- plain http only to loopback -----------------------------------------------------------------
# tests/hooks covers http to a public name and to a private address; these are the tricks.


@pytest.mark.parametrize(
    "host",
    [
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
        "http://127.0.0.1@example.com",
        "http://user:pw@example.com:80@127.0.0.1.example.com",
        "http://example.com#@127.0.0.1",
        "http://example.com?@127.0.0.1",
        "http://0.0.0.0:8080",
        "http://2130706433",
        "HTTP://EXAMPLE.COM",
        "  http://example.com  ",
    ],
)
def test_plain_http_tricks_refused(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "host": host, "password": FAKE_KEY})
    )
    with pytest.raises(ChartMogulConfigurationError, match=r"plain http|holds credentials"):
        ChartMogulHook("cm").settings  # noqa: B018


def test_credentials_typed_into_the_url_are_refused_and_never_shown(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = urlsplit(chartmogul_server.url)
    host = f"http://someone:{WRONG_KEY}@{parts.netloc}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CM", json.dumps({"conn_type": "chartmogul", "host": host, "password": API_KEY})
    )
    hook = ChartMogulHook("cm")
    with pytest.raises(ChartMogulConfigurationError, match="holds credentials") as info:
        hook.ping()
    assert not any(WRONG_KEY in text for text in exception_texts(info.value))
    assert chartmogul_server.requests == []


# ---- URL path segments ---------------------------------------------------------------------------

ODD_UUIDS = ["cus_a;b=c", "cus_a@b:c", "cus_ü+&$,!'()*~", "cus_x.y", "cus_~semi;"]


def test_identifiers_cannot_change_the_path(chartmogul_conn: ChartMogulServer) -> None:
    server = chartmogul_conn
    for uuid in ODD_UUIDS:
        server.add_customer(uuid=uuid)
    odd_external_id = "acct/../../ping?x=1#frag%2F&y"
    odd_email = "o'hara+x?#/%&=@example.com"
    by_external_id = server.add_customer(external_id=odd_external_id)["uuid"]
    by_email = server.add_customer(email=odd_email)["uuid"]
    plan = [{"type": "String", "key": "plan", "value": "odd"}]
    records = [{"customer_uuid": uuid, "custom": plan} for uuid in ODD_UUIDS]
    records += [{"external_id": odd_external_id, "custom": plan}, {"email": odd_email, "custom": plan}]

    report, error = run_operator(customers=records)

    assert error is None and report["succeeded"] == len(records)
    for uuid in [*ODD_UUIDS, by_external_id, by_email]:
        assert server.custom_attributes(uuid) == {"plan": "odd"}, uuid
    posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) == len(records)
    for request in posts:
        segments = request.path.split("/")
        assert len(segments) == 6 and segments[:3] == ["", "v1", "customers"], request.path
        assert segments[4:] == ["attributes", "custom"]
        assert "?" not in request.path and "#" not in request.path and request.query == {}
        assert unquote(segments[3]) in [*ODD_UUIDS, by_external_id, by_email]
        assert request.status == 200
    lookups = [r for r in server.requests if r.method == "GET"]
    assert sorted(r.path for r in lookups) == ["/v1/customers", "/v1/customers/search"]
    queries = {r.path: r.query for r in lookups}
    assert queries["/v1/customers"]["external_id"] == [odd_external_id]
    assert queries["/v1/customers/search"]["email"] == [odd_email]


# ---- error bodies ----------------------------------------------------------------------------------


def _big_html_page() -> str:
    head = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>"
    css = "".join(f".c{i} {{ color: #{i:06x}; }}\n" for i in range(1500))
    body = "</style></head><body><h1>Bad Gateway</h1>" + "<p>The upstream server failed. </p>\n" * 1800
    page = head + css + body + "</body></html>"
    assert len(page) >= 100_000
    return page


BIG_BODIES = {
    "html-page": _big_html_page(),
    "json-message": json.dumps({"code": 422, "message": "too long " * 12_000, "param": "plan"}),
    "plain-text": "upstream error " * 7000,
}


@pytest.mark.parametrize("status", [422, 502])
@pytest.mark.parametrize("kind", list(BIG_BODIES))
def test_huge_error_body_gives_a_short_message(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, kind: str, status: int
) -> None:
    server = chartmogul_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(server, max_retries=1, retry_budget=1)
    )
    uuid = server.add_customer()["uuid"]
    server.fail_customer(uuid, status=status, body=BIG_BODIES[kind])
    record = {"customer_uuid": uuid, "custom": [{"type": "String", "key": "plan", "value": "x"}]}

    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(uuid, record["custom"])
    report, error = run_operator(customers=[record])

    assert len(server.requests[-1].response_body) >= 100_000
    assert f"HTTP {status}" in str(info.value)
    assert len(str(info.value)) < 1000
    assert info.value.body is not None and len(info.value.body) < 1000
    (failure,) = report["failures"]
    assert len(failure["error"]) < 1000
    assert error is not None and len(str(error)) < 1500
    assert len(json.dumps(report)) < 5000
    if kind == "html-page":
        assert "502 Bad Gateway" in failure["error"] and "color" not in failure["error"]


@pytest.mark.parametrize(
    "body",
    ["<html>" + "<" * 100_000, "<html>" + "<script " * 14_000, "<!doctype html>" + "<title " * 15_000],
    ids=["unclosed-brackets", "unclosed-scripts", "unclosed-titles"],
)
def test_malformed_html_error_body_is_read_in_bounded_time(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHARTMOGUL_DEFAULT", connection_json(chartmogul_server, max_retries=0))
    uuid = chartmogul_server.add_customer()["uuid"]
    chartmogul_server.fail_customer(uuid, status=422, body=body)
    started = time.monotonic()
    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(uuid, [{"type": "String", "key": "plan", "value": "x"}])
    assert time.monotonic() - started < 3
    assert len(str(info.value)) < 1000


def test_a_refused_certificate_stops_a_run_at_once(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_chartmogul.exceptions import CustomAttributesPushError

    with HTTPSServer(certificates.self_signed, certificates.self_signed_key) as server:
        _tls_hook(monkeypatch, server.url)
        records = [
            {"customer_uuid": f"cus_{i}", "custom": [{"type": "Integer", "key": "seats", "value": i}]}
            for i in range(300)
        ]
        started = time.monotonic()
        with pytest.raises(CustomAttributesPushError) as info:
            AddCustomAttributesOperator(task_id="push", customers=records, chartmogul_conn_id="tls").execute(
                context={}
            )
    assert time.monotonic() - started < 10
    report = info.value.report
    assert "TLS certificate verification failed" in str(info.value)
    assert report["total"] == report["failed"], "every record read is reported"
    assert report["total"] + report["records_not_read"] == 300, "and the rest counted, none silently dropped"
    assert {f["stage"] for f in report["failures"]} <= {"api", "aborted"}
    assert server.seen == []


# ---- a server or proxy that echoes the key --------------------------------------------------------


def _echo(key: str) -> str:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return f"bad request: key {key} rejected; you sent Authorization: Basic {token} (token {token})"


@pytest.mark.parametrize("shape", ["text", "json", "long"])
def test_an_echoed_key_is_scrubbed_everywhere(
    chartmogul_conn: ChartMogulServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    task_log: Any,
    shape: str,
) -> None:
    server = chartmogul_conn
    echoing, fine, refused = (server.add_customer()["uuid"] for _ in range(3))
    echo = _echo(API_KEY)
    # "long": the key sits across the 500-character cut of the kept body
    body: Any = {"message": echo} if shape == "json" else ("x" * 480 + echo if shape == "long" else echo)
    server.fail_customer(echoing, status=400, body=body)
    db = tmp_path / "dead_letter.db"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_LETTER", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    ti = RecordingTI()
    report, error = run_operator(
        customers=[typed_record(echoing, 0), typed_record(fine, 1)],
        context={"ti": ti},
        dead_letter_conn_id="dead_letter",
        dead_letter_table="dl",
    )
    assert error is not None and report["failed"] == 1
    (failure,) = report["failures"]
    assert failure["status"] == 400 and "***" in failure["error"]

    # a fatal answer that echoes the key: report["aborted"] and the exception
    server.fail_customer(refused, status=401, body=body)
    aborted_ti = RecordingTI()
    aborted, fatal = run_operator(customers=[typed_record(refused, 2)], context={"ti": aborted_ti})
    assert fatal is not None and aborted["aborted"] and "***" in aborted["aborted"]

    with sqlite3.connect(db) as dead_letter:
        rows = dead_letter.execute("SELECT error, record FROM dl").fetchall()
    dead_letter.close()
    assert rows and "***" in rows[0][0]
    texts = {
        "failure": failure["error"],
        "report": json.dumps(report),
        "XCom": ti.xcom["return_value"],
        "aborted report": json.dumps(aborted),
        "aborted XCom": aborted_ti.xcom["return_value"],
        "dead letter": json.dumps(rows),
        "exception": "\n".join(exception_texts(error)),
        "fatal exception": "\n".join(exception_texts(fatal)),
        "task log": task_log(),
    }
    assert f"customer_uuid={echoing}" in texts["task log"], "the failure was not logged"
    _assert_no_secret(texts)


def test_the_hook_scrubs_an_echoed_key_from_its_errors(chartmogul_conn: ChartMogulServer) -> None:
    uuid = chartmogul_conn.add_customer()["uuid"]
    chartmogul_conn.fail_customer(uuid, status=400, body={"error": _echo(API_KEY)})
    with pytest.raises(ChartMogulAPIError) as info:
        ChartMogulHook().add_custom_attributes(uuid, [{"type": "String", "key": "plan", "value": "x"}])
    error = info.value
    texts = {"message": error.api_message, "body": error.body or ""}
    _assert_no_secret({**texts, "exception": "\n".join(exception_texts(error))})
    assert "key *** rejected" in error.api_message


def test_redact_masks_the_basic_token_and_header_too(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = f"sk_fresh_{uuid_module.uuid4().hex}_SECRET"
    token = base64.b64encode(f"{fresh}:".encode()).decode()
    keys = chartmogul_server.config["api_keys"]
    chartmogul_server.configure(api_keys={**keys, fresh: "read-write"})
    try:
        monkeypatch.setenv("AIRFLOW_CONN_FRESH", connection_json(chartmogul_server, api_key=fresh))
        assert token in redact(f"send: Authorization: Basic {token}"), "masked before the hook read it"
        assert ChartMogulHook("fresh").ping() == "pong!"
        for line in (f"send: b'Authorization: Basic {token}\\r\\n'", f"token={token}", f"Basic {token}"):
            masked = redact(line)
            assert token not in masked and fresh not in masked, masked
            assert "***" in masked
    finally:
        chartmogul_server.configure(api_keys=keys)


# ---- fail fast: retrying the task cannot help -------------------------------------------------------


def test_a_refused_certificate_fails_without_airflow_retries(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_chartmogul.exceptions import CustomAttributesPushError
    from airflow_provider_chartmogul.version_compat import AirflowFailException

    records = [{"customer_uuid": "cus_1", "custom": [{"type": "Integer", "key": "seats", "value": 1}]}]
    with HTTPSServer(certificates.self_signed, certificates.self_signed_key) as server:
        hook = _tls_hook(monkeypatch, server.url)
        with pytest.raises(ChartMogulTLSError) as hook_error:
            hook.ping()
        with pytest.raises(CustomAttributesPushError) as task_error:
            AddCustomAttributesOperator(task_id="push", customers=records, chartmogul_conn_id="tls").execute(
                context={}
            )
    assert isinstance(hook_error.value, AirflowFailException)
    assert isinstance(task_error.value, AirflowFailException)
    assert task_error.value.report["aborted"] and task_error.value.report["total"] == 1


def test_a_refused_key_at_the_hook_fails_without_airflow_retries(
    chartmogul_server: ChartMogulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_chartmogul.exceptions import ChartMogulAuthError
    from airflow_provider_chartmogul.version_compat import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_REVOKED", connection_json(chartmogul_server, api_key=WRONG_KEY))
    with pytest.raises(ChartMogulAuthError) as info:
        ChartMogulHook("revoked").ping()
    assert isinstance(info.value, AirflowFailException) and info.value.status == 401
