"""Unit tests of error-body reading (``airflow_provider_chartmogul.client.error_body``): the API's own
message out of every body shape ChartMogul and proxies answer with, short, and without the key."""

from __future__ import annotations

import json

import pytest

from airflow_provider_chartmogul.client.error_body import error_message
from airflow_provider_chartmogul.redaction import register_secret, secret_forms
from tests.conftest import API_KEY

# ---------------------------------------------------------------------------------------------
# JSON bodies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # The most common shape, as a bad key gets it.
        ('{"code":401,"message":"No valid API key provided","param":null}', "No valid API key provided"),
        ('{"code": 422, "message": "Invalid value", "param": "seats"}', "Invalid value (param: seats)"),
        # The param is not repeated when the message names it already.
        ('{"code": 400, "message": "seats is missing", "param": "seats"}', "seats is missing"),
        ('{"error": "Customer not found"}', "Customer not found"),
        ('{"errors": {"email": "is invalid"}}', "email: is invalid"),
        (
            '{"errors": {"email": "is invalid", "name": "can\'t be blank"}}',
            "email: is invalid; name: can't be blank",
        ),
        ('{"errors": ["first problem", "second problem"]}', "first problem; second problem"),
        (
            '{"errors": {"custom": [{"key": "is too long"}, "bad type"]}}',
            "custom: key: is too long; bad type",
        ),
        ('{"errors": {"seats": 3, "pro": true}}', "seats: 3; pro: true"),
        ('{"error_details": {"base": ["Request failed"]}}', "base: Request failed"),
        ('{"error_message": "Too many parallel connections"}', "Too many parallel connections"),
        ('{"detail": "Method not allowed"}', "Method not allowed"),
        (
            '"Your request rate has exceeded our rate limit."',
            "Your request rate has exceeded our rate limit.",
        ),
    ],
)
def test_the_api_message_is_read_from_every_json_shape(body: str, message: str) -> None:
    assert error_message(body, "application/json") == message


def test_message_wins_over_the_other_fields() -> None:
    body = json.dumps({"errors": {"a": "b"}, "error": "generic", "message": "specific"})

    assert error_message(body) == "specific"


def test_an_empty_field_gives_way_to_the_next() -> None:
    assert error_message('{"message": "", "error": "the real one"}') == "the real one"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"code": 500, "status": "boom"}', '{"code": 500, "status": "boom"}'),
        ("[1, 2, 3]", "[1, 2, 3]"),
        ('{\n  "unexpected":\n    "shape"\n}', '{ "unexpected": "shape" }'),
    ],
)
def test_json_without_a_message_field_is_shown_as_sent(body: str, message: str) -> None:
    assert error_message(body, "application/json") == message


def test_a_json_message_with_the_key_in_it_is_scrubbed() -> None:
    register_secret(API_KEY)
    body = json.dumps({"message": f"Invalid key {API_KEY}", "param": "api_key"})

    assert error_message(body) == "Invalid key *** (param: api_key)"


# ---------------------------------------------------------------------------------------------
# Text and HTML bodies
# ---------------------------------------------------------------------------------------------


def test_plain_text_is_kept_with_its_whitespace_collapsed() -> None:
    assert error_message("  upstream\n connect error   or\tdisconnect \n", "text/plain") == (
        "upstream connect error or disconnect"
    )


def test_an_html_error_page_gives_its_title_and_text() -> None:
    body = (
        "<html><head><title>502 Bad Gateway</title><style>h1 {color: red}</style></head>"
        "<body><center><h1>Bad&nbsp;Gateway</h1></center><hr><center>nginx</center>"
        "<script>var secret = 1;</script></body></html>"
    )

    assert error_message(body, "text/html; charset=utf-8") == "502 Bad Gateway: Bad Gateway nginx"


def test_an_html_title_already_leading_the_text_is_not_repeated() -> None:
    body = (
        "<html><head><title>503 Service Unavailable</title></head>"
        "<body><h1>503 Service Unavailable</h1></body></html>"
    )

    assert error_message(body, "text/html") == "503 Service Unavailable"


def test_html_is_recognised_by_its_start_without_a_content_type() -> None:
    body = "<!DOCTYPE html>\n<html><body><p>Gateway &amp; proxy   timeout</p></body></html>"

    assert error_message(body) == "Gateway & proxy timeout"


def test_markup_in_a_plain_text_body_is_left_alone() -> None:
    assert error_message("value <b> is wrong", "text/plain") == "value <b> is wrong"


def test_an_html_page_without_text_falls_back_to_its_source() -> None:
    assert error_message("<html><body></body></html>", "text/html") == "<html><body></body></html>"


def test_an_unclosed_script_is_dropped_to_the_end() -> None:
    body = "<html><body><p>Oops</p><script>var x = '<p>not a message</p>';"

    assert error_message(body, "text/html") == "Oops"


@pytest.mark.parametrize("body", ["", "   ", "\n\t\n"])
def test_an_empty_body_is_said_to_be_empty(body: str) -> None:
    assert error_message(body) == "(empty body)"


def test_a_body_holding_only_the_key_is_not_empty_but_scrubbed() -> None:
    register_secret(API_KEY)

    assert error_message(f"  {API_KEY}  ") == "***"


# ---------------------------------------------------------------------------------------------
# Size
# ---------------------------------------------------------------------------------------------


def test_a_long_json_message_is_cut_and_says_how_long_it_was() -> None:
    text = "x" * 1_000 + "END"

    message = error_message(json.dumps({"message": text}))

    assert message.startswith("x" * 450)
    assert message.endswith("(1003 chars)")
    assert "END" not in message
    assert len(message) < 520


def test_a_huge_text_body_is_cut_to_a_few_hundred_characters() -> None:
    body = "word " * 200_000

    message = error_message(body, "text/plain")

    assert message.startswith("word word ")
    assert len(message) < 600
    assert message.endswith(" chars)")


def test_a_huge_malformed_html_body_still_gives_its_title_and_a_short_message() -> None:
    # Unclosed tags and blocks (how long reading them takes is checked end to end, with a
    # generous bound, in tests/reliability/test_security.py).
    body = "<html><title>Error" + "<div <p <script " * 100_000 + "<style" * 50_000

    message = error_message(body, "text/html")

    assert message.startswith("Error")
    assert len(message) < 600


def test_a_message_that_fits_is_not_marked_as_cut() -> None:
    assert error_message(json.dumps({"message": "y" * 500})) == "y" * 500


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/html"])
def test_every_form_of_the_key_is_scrubbed_from_any_body(content_type: str) -> None:
    register_secret(API_KEY)
    token = secret_forms(API_KEY)[1]
    echoed = f"key={API_KEY} header=Authorization: Basic {token} token={token}"
    bodies = {
        "application/json": json.dumps({"error": echoed}),
        "text/plain": echoed,
        "text/html": f"<html><title>Unauthorized</title><body><pre>{echoed}</pre></body></html>",
    }

    message = error_message(bodies[content_type], content_type)

    for secret in secret_forms(API_KEY):
        assert secret not in message
    assert "key=*** header=Authorization: *** token=***" in message


def test_a_key_at_the_cut_leaves_no_part_of_itself() -> None:
    register_secret(API_KEY)
    # The key spans the place where the message is cut.
    body = "e" * 480 + API_KEY + " and more text after it" * 10

    message = error_message(body, "text/plain")

    assert message.startswith("e" * 480)
    for length in range(4, len(API_KEY) + 1):
        assert API_KEY[:length] not in message
