"""The send control: one object told about each send and each answer, with its parts passed in;
a gate can veto or delay a send, and every slot and lease is given back on every path."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_chartmogul.client import classify
from airflow_provider_chartmogul.client.classify import Classified
from airflow_provider_chartmogul.client.engine import RequestEngine, RequestStats
from airflow_provider_chartmogul.client.flow import ConcurrencyLimit
from airflow_provider_chartmogul.client.ratelimit import RateLimiter
from airflow_provider_chartmogul.client.send_control import SendCancelled, SendControl, Ticket
from airflow_provider_chartmogul.client.settings import ClientSettings
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError, ChartMogulCancelledError
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import API_KEY


class _Lease:
    def __init__(self, gate: RecordingGate) -> None:
        self.gate = gate

    def release(self) -> None:
        self.gate.released += 1


class RecordingGate:
    """A gate that grants, refuses (``grant=False``) or blocks until cancelled (``block=True``)."""

    def __init__(self, *, grant: bool = True, block: bool = False) -> None:
        self.grant = grant
        self.block = block
        self.acquired = 0
        self.released = 0
        self.answers: list[Classified] = []
        self.timeouts: list[float | None] = []
        self._cancelled = threading.Event()
        self.waiting = threading.Event()

    def acquire(self, *, priority: bool, timeout: float | None) -> _Lease | None:
        self.timeouts.append(timeout)
        if self.block:
            self.waiting.set()
            self._cancelled.wait()
        if self._cancelled.is_set():
            raise SendCancelled
        if not self.grant:
            return None
        self.acquired += 1
        return _Lease(self)

    def on_answer(self, ticket: Ticket, outcome: Classified, now: float) -> None:
        self.answers.append(outcome)

    def cancel(self) -> None:
        self._cancelled.set()


def _control(gate: RecordingGate, *, connections: int = 2, now: list[float] | None = None) -> SendControl:
    clock = (lambda: now[0]) if now is not None else (lambda: 0.0)
    return SendControl(
        concurrency=ConcurrencyLimit(connections),
        rate=RateLimiter(1000, clock=clock),
        gates=[gate],
        clock=clock,
    )


def test_a_ticket_holds_a_slot_and_a_lease_until_released_once() -> None:
    gate = RecordingGate()
    control = _control(gate)
    ticket = control.on_sending_request(timeout=1)
    assert ticket is not None
    assert control.concurrency.in_flight == 1 and gate.acquired == 1
    ticket.release()
    ticket.release()  # a second release changes nothing
    assert control.concurrency.in_flight == 0 and gate.released == 1


def test_a_gate_that_refuses_vetoes_the_send_and_everything_taken_is_given_back() -> None:
    gate = RecordingGate(grant=False)
    control = _control(gate, connections=1)
    assert control.on_sending_request(timeout=0.5) is None
    assert control.concurrency.in_flight == 0
    assert gate.timeouts and gate.timeouts[0] is not None and gate.timeouts[0] <= 0.5


def test_cancel_wakes_a_send_blocked_in_a_gate_and_gives_its_slot_back() -> None:
    gate = RecordingGate(block=True)
    control = _control(gate, connections=1)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            control.on_sending_request()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert gate.waiting.wait(10)
    control.cancel()
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], SendCancelled)
    assert control.concurrency.in_flight == 0
    with pytest.raises(SendCancelled):
        control.on_sending_request()


@pytest.mark.parametrize(
    ("outcome", "rate_cut", "cap_cut"),
    [
        (classify.THROTTLED, True, False),
        (classify.CROWDED, False, True),
        (classify.SERVER_ERROR, False, False),
        (classify.OK, False, False),
    ],
)
def test_each_answer_moves_only_its_own_control_and_every_gate_hears_it(
    outcome: Classified, rate_cut: bool, cap_cut: bool
) -> None:
    gate = RecordingGate()
    now = [10.0]
    control = _control(gate, connections=8, now=now)
    ticket = control.on_sending_request()
    assert ticket is not None
    now[0] += 0.1
    control.on_receiving_response(ticket, outcome)
    ticket.release()
    assert (control.rate.control.cuts == 1) is rate_cut
    assert (control.concurrency.cuts == 1) is cap_cut
    assert gate.answers == [outcome]


def test_the_engine_tells_its_gates_about_every_attempt_and_releases_every_lease(
    chartmogul_server: ChartMogulServer,
) -> None:
    gate = RecordingGate()
    chartmogul_server.queue_faults(["500", "429"])
    settings = ClientSettings(base_url=chartmogul_server.url, api_key=API_KEY, max_retries=3, retry_budget=30)
    engine = RequestEngine(settings, RequestStats(), gates=[gate])
    engine._sleep = lambda seconds: None  # type: ignore[method-assign]
    try:
        assert engine.request("GET", "/v1/ping") == {"data": "pong!"}
        with pytest.raises(ValueError):  # NaN: refused before any slot or lease is taken
            engine.request("POST", "/v1/ping", json_body={"value": float("nan")})
    finally:
        engine.close()
    assert [a.verdict.value for a in gate.answers] == ["failed", "throttled", "ok"]
    assert gate.acquired == gate.released == 3
    assert engine.concurrency.in_flight == 0


def test_a_cancelled_gate_stops_the_engine_cleanly(chartmogul_server: ChartMogulServer) -> None:
    gate = RecordingGate()
    settings = ClientSettings(base_url=chartmogul_server.url, api_key=API_KEY)
    engine = RequestEngine(settings, RequestStats(), gates=[gate])
    try:
        engine.cancel("the task was stopped")
        with pytest.raises(ChartMogulCancelledError):
            engine.request("GET", "/v1/ping")
    finally:
        engine.close()
    assert gate.acquired == 0 and engine.concurrency.in_flight == 0
    assert isinstance(ChartMogulCancelledError("x"), ChartMogulAPIError)
