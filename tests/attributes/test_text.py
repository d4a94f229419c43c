"""Tests of text that cannot be sent (``airflow_provider_chartmogul.attributes.text``): a lone
surrogate has no UTF-8 form, so :func:`surrogate_problem` names it; any other text is fine."""

from __future__ import annotations

import json

import pytest

from airflow_provider_chartmogul.attributes.text import surrogate_problem


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ascii",
        "café, Ünïcödé and ключ",
        "emoji outside the BMP: \U0001f600",
        "\ufffd the replacement character is valid text",
        json.loads('"\\ud83d\\ude00"'),  # a JSON surrogate pair decodes to one valid character
    ],
)
def test_text_that_encodes_as_utf8_has_no_problem(text: str) -> None:
    assert surrogate_problem(text) is None


def test_a_lone_surrogate_is_named_with_its_code_point_and_position() -> None:
    assert surrogate_problem("ab\ud800cd") == (
        "contains a lone surrogate U+D800 at position 2, "
        "which is not valid Unicode text and cannot be sent as UTF-8"
    )


@pytest.mark.parametrize(
    ("text", "code_point"),
    [
        (json.loads('"\\ud800"'), "U+D800"),  # a high surrogate with no low one after it
        (json.loads('"\\udfff"'), "U+DFFF"),  # a low surrogate on its own
        (b"\xff".decode("utf-8", "surrogateescape"), "U+DCFF"),  # an undecodable byte kept
    ],
)
def test_lone_surrogates_from_json_and_surrogateescape_are_found(text: str, code_point: str) -> None:
    problem = surrogate_problem(text)

    assert problem is not None
    assert problem.startswith(f"contains a lone surrogate {code_point} at position 0,")


def test_the_first_of_several_surrogates_is_the_one_named() -> None:
    problem = surrogate_problem("ok \udc80 then \ud801")

    assert problem is not None
    assert "U+DC80 at position 3" in problem
    assert "U+D801" not in problem


def test_the_position_counts_characters_not_utf8_bytes() -> None:
    # "é" and "€" take 2 and 3 bytes in UTF-8; the surrogate is the third character.
    problem = surrogate_problem("é€\udc00")

    assert problem is not None
    assert "at position 2," in problem
