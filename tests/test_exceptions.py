"""The one text shortener behind every error, label and report, and what an error carries."""

from __future__ import annotations

import pickle

from airflow_provider_chartmogul.exceptions import ChartMogulAPIError, ChartMogulValidationError, shorten
from airflow_provider_chartmogul.redaction import register_secret
from tests.conftest import API_KEY


def test_a_long_text_keeps_its_first_characters_and_says_how_long_it_was() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(300))

    shortened = shorten(text, 100, quote=False)

    assert shortened == text[:100] + "...(300 chars)"
    assert shorten(text[:100], 100, quote=False) == text[:100]


def test_a_quoted_value_counts_the_strings_own_length_not_its_repr() -> None:
    assert shorten("x" * 300, 20) == repr("x" * 300)[:20] + "...(300 chars)"
    assert shorten(12345, 3) == "123...(5 chars)"
    assert shorten("short") == "'short'"


def test_secrets_are_scrubbed_before_the_cut() -> None:
    register_secret(API_KEY)

    assert shorten("abc" + API_KEY + "def", 10, quote=False) == "abc***def"
    cut = shorten("e" * 8 + API_KEY, 12, quote=False)
    assert cut == "e" * 8 + "***"
    for length in range(4, len(API_KEY) + 1):
        assert API_KEY[:length] not in shorten("e" * 30 + API_KEY, 40)


def test_a_validation_error_names_the_customer_the_attribute_and_the_value() -> None:
    error = ChartMogulValidationError(
        "must be at most 255 characters",
        customer="customer_uuid=cus_1",
        key="plan",
        value="x" * 300,
        has_value=True,
    )

    assert str(error) == (
        f"customer_uuid=cus_1: attribute 'plan': value {repr('x' * 300)[:60]}...(300 chars): "
        "must be at most 255 characters"
    )


def test_an_api_error_survives_pickling_with_every_field() -> None:
    error = ChartMogulAPIError(
        "Too Many Requests", status=429, method="POST", path="/v1/x", body="{}", attempts=3
    )

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is ChartMogulAPIError and str(copy) == str(error)
    assert (copy.status, copy.attempts, copy.retryable, copy.body) == (429, 3, True, "{}")


def test_with_note_builds_a_new_error_and_leaves_the_first_as_it_was() -> None:
    error = ChartMogulAPIError("boom", status=500, method="PUT", path="/v1/x", attempts=2)
    noted = error.with_note("1 of 2 requests went through")
    assert str(error) == "ChartMogul PUT /v1/x failed (HTTP 500 after 2 attempts): boom"
    assert (
        str(noted)
        == "ChartMogul PUT /v1/x failed (HTTP 500 after 2 attempts): boom (1 of 2 requests went through)"
    )
    assert type(noted) is type(error) and noted.retryable == error.retryable


def test_push_errors_unpickle_with_their_report() -> None:
    from airflow_provider_chartmogul.exceptions import CustomAttributesFatalError, CustomAttributesPushError

    for cls in (CustomAttributesPushError, CustomAttributesFatalError):
        error = cls("3 customers failed", {"failed": 3})
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls and str(copy) == "3 customers failed" and copy.report == {"failed": 3}
