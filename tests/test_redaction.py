"""Tests of keeping the API key out of texts (``airflow_provider_chartmogul.redaction``): each key is
known as itself, as its Basic auth token ``base64(key + ":")`` and as the ``Basic <token>`` header
value, and :func:`scrub` / :func:`scrub_value` replace all three with ``***``.

The registered secrets are process-global, so every test here starts from an empty registry of its
own (restored afterwards) and Airflow's secrets masker is replaced by a recorder: nothing registered
here leaks into later tests of the worker.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from airflow_provider_chartmogul import redaction
from airflow_provider_chartmogul.redaction import register_secret, scrub, scrub_value, secret_forms
from tests.conftest import API_KEY

# A second distinctive key, and one that contains API_KEY (as a longer key may contain a shorter).
OTHER_KEY = "sk_live_2e8d4f6a0b1c3e5d_OTHER_SECRET"
LONGER_KEY = f"{API_KEY}_EXTENDED_9d7c"


def _token(key: str) -> str:
    """The Basic auth token of ``key`` (user ``key``, empty password), computed here independently."""
    return base64.b64encode(f"{key}:".encode()).decode("ascii")


@pytest.fixture(autouse=True)
def masked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """An empty registry for this test; what was handed to Airflow's secrets masker."""
    handed: list[str] = []
    monkeypatch.setattr(redaction, "_secrets", set())
    monkeypatch.setattr(redaction, "_pattern", None)
    monkeypatch.setattr(redaction, "mask_secret", handed.append)
    yield handed


# ---------------------------------------------------------------------------------------------
# Nothing registered
# ---------------------------------------------------------------------------------------------


def test_nothing_registered_leaves_text_unchanged() -> None:
    text = f"key {API_KEY}, Authorization: Basic {_token(API_KEY)}"

    assert scrub(text) == text


def test_nothing_registered_leaves_nested_values_unchanged() -> None:
    value = {"error": f"bad key {API_KEY}", "tries": [1, (API_KEY,)]}

    assert scrub_value(value) == {"error": f"bad key {API_KEY}", "tries": [1, (API_KEY,)]}


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_key_registers_nothing(empty: str | None, masked: list[str]) -> None:
    register_secret(empty)

    assert masked == []
    assert scrub(f"text with {API_KEY} and *** in it") == f"text with {API_KEY} and *** in it"


# ---------------------------------------------------------------------------------------------
# The three forms
# ---------------------------------------------------------------------------------------------


def test_the_forms_of_a_key_are_the_key_its_basic_token_and_the_header_value() -> None:
    token = _token(API_KEY)

    assert secret_forms(API_KEY) == [API_KEY, token, f"Basic {token}"]


def test_the_raw_key_is_scrubbed_wherever_it_appears() -> None:
    register_secret(API_KEY)

    assert scrub(f"No valid API key provided: {API_KEY}.") == "No valid API key provided: ***."
    assert scrub(f"{API_KEY}{API_KEY}") == "******"


def test_the_basic_auth_token_is_scrubbed() -> None:
    register_secret(API_KEY)

    assert scrub(f"token={_token(API_KEY)};") == "token=***;"


def test_the_authorization_header_value_is_replaced_whole() -> None:
    register_secret(API_KEY)

    # Not "Authorization: Basic ***": the header value is one secret.
    assert scrub(f"send: Authorization: Basic {_token(API_KEY)}\r\n") == "send: Authorization: ***\r\n"


def test_text_without_a_secret_is_left_alone() -> None:
    register_secret(API_KEY)

    text = "ChartMogul answered 500: Internal Server Error (Basic auth, 3 attempts)"
    assert scrub(text) == text
    assert scrub("") == ""


def test_all_three_forms_are_handed_to_airflows_secrets_masker(masked: list[str]) -> None:
    register_secret(API_KEY)

    token = _token(API_KEY)
    assert sorted(masked) == sorted([API_KEY, token, f"Basic {token}"])


def test_registering_a_key_again_changes_nothing() -> None:
    register_secret(API_KEY)
    register_secret(API_KEY)

    assert scrub(f"a {API_KEY} b {_token(API_KEY)} c") == "a *** b *** c"


def test_a_key_with_regex_characters_is_matched_literally() -> None:
    key = "sk_test.4f+9(c)*[a]|b$_SECRET"
    register_secret(key)

    assert scrub(f"key {key} end") == "key *** end"
    # "." and "*" must not act as wildcards.
    lookalike = "sk_testX4f+9(c)*[a]|b$_SECRET"
    assert scrub(f"key {lookalike} end") == f"key {lookalike} end"


# ---------------------------------------------------------------------------------------------
# Several secrets
# ---------------------------------------------------------------------------------------------


def test_every_registered_key_is_scrubbed() -> None:
    register_secret(API_KEY)
    register_secret(OTHER_KEY)

    text = f"first {API_KEY}, second {OTHER_KEY}, token {_token(API_KEY)}, Basic {_token(OTHER_KEY)}"
    assert scrub(text) == "first ***, second ***, token ***, ***"


def test_a_key_that_contains_another_is_replaced_whole() -> None:
    register_secret(API_KEY)
    register_secret(LONGER_KEY)

    # Not "***_EXTENDED_9d7c": the longer secret wins where both match.
    assert scrub(f"key={LONGER_KEY};") == "key=***;"
    assert scrub(f"key={API_KEY};") == "key=***;"


def test_the_longer_key_is_replaced_whole_whichever_was_registered_first() -> None:
    register_secret(LONGER_KEY)
    register_secret(API_KEY)

    assert scrub(f"key={LONGER_KEY}; other={API_KEY}") == "key=***; other=***"


def test_each_of_many_nested_keys_is_replaced_whole() -> None:
    # Each key extends the one before it; however they are registered, each is replaced whole.
    keys = [API_KEY + "".join(f"_{i}" for i in range(n)) for n in range(12)]
    for key in reversed(keys):
        register_secret(key)

    for key in keys:
        assert scrub(f"<{key}>") == "<***>", key
        assert scrub(f"<Basic {_token(key)}>") == "<***>", key


# ---------------------------------------------------------------------------------------------
# scrub_value
# ---------------------------------------------------------------------------------------------


def test_scrub_value_walks_dicts_lists_and_tuples() -> None:
    register_secret(API_KEY)
    value = {
        "error": f"401 for {API_KEY}",
        "attempts": [{"header": f"Basic {_token(API_KEY)}"}, (f"x{API_KEY}x", 3)],
        API_KEY: "a key that is a secret",
    }

    assert scrub_value(value) == {
        "error": "401 for ***",
        "attempts": [{"header": "***"}, ("x***x", 3)],
        "***": "a key that is a secret",
    }


def test_scrub_value_keeps_tuples_tuples_and_leaves_other_values_alone() -> None:
    register_secret(API_KEY)

    scrubbed = scrub_value((API_KEY, 7, 2.5, None, True))

    assert isinstance(scrubbed, tuple)
    assert scrubbed == ("***", 7, 2.5, None, True)


def test_scrub_value_scrubs_a_plain_string() -> None:
    register_secret(API_KEY)

    assert scrub_value(f"[{API_KEY}]") == "[***]"
