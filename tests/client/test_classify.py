"""The one classifier of answers: which are retried, which slow the task down, which are final."""

from __future__ import annotations

import pytest

from airflow_provider_chartmogul.client.classify import (
    Verdict,
    classify_no_answer,
    classify_status,
    crowded_threshold,
    is_retried_status,
)
from airflow_provider_chartmogul.exceptions import ChartMogulAPIError


@pytest.mark.parametrize("status", [408, 425, 500, 502, 504, 520, *range(521, 531)])
def test_transient_server_failures_are_retried_under_the_quota(status: int) -> None:
    assert classify_status(status).verdict is Verdict.FAILED
    assert ChartMogulAPIError("x", status=status).retryable


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422, 501, 505, 531])
def test_other_statuses_are_final_and_show_the_server_is_up(status: int) -> None:
    verdict = classify_status(status).verdict
    assert verdict is Verdict.REFUSED and verdict.server_up and not verdict.retried
    assert not ChartMogulAPIError("x", status=status).retryable


def test_a_429_is_throttling() -> None:
    assert classify_status(429).verdict is Verdict.THROTTLED and classify_status(429).cause == "rate_limited"


@pytest.mark.parametrize(
    ("message", "on_wire", "verdict"),
    [
        ("Too many parallel connections: slow down and retry", 1, Verdict.CROWDED),
        ("too many concurrent connections", 0, Verdict.CROWDED),
        ("Service temporarily unavailable", 20, Verdict.FAILED),  # says what it is: not ours
        ("503 Service Temporarily Unavailable: nginx", 20, Verdict.FAILED),
        ("(empty body)", 20, Verdict.CROWDED),  # silent, with many on the wire
        ("(empty body)", 2, Verdict.FAILED),  # silent, with few: cannot be our doing
    ],
)
def test_a_503_is_crowded_only_when_it_was_one(message: str, on_wire: int, verdict: Verdict) -> None:
    assert classify_status(503, message, on_wire=on_wire, crowded_at=crowded_threshold(10)).verdict is verdict


def test_no_answer_is_a_failure_with_its_cause() -> None:
    assert classify_no_answer(timeout=True).cause == "timeout"
    assert classify_no_answer(timeout=False).cause == "connection_error"
    assert classify_no_answer(timeout=False).verdict is Verdict.FAILED
    assert is_retried_status(None)
