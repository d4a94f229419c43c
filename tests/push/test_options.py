"""PushOptions (``airflow_provider_chartmogul.push.options``): every option checked once, when made."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airflow_provider_chartmogul.push.options import PushOptions


def test_the_defaults_are_an_add_run_that_resumes() -> None:
    options = PushOptions()

    assert (options.mode, options.dry_run, options.clear, options.customer_lookup) == (
        "add",
        False,
        "ignore",
        "auto",
    )
    assert (options.listing_threshold, options.max_failures, options.resume) == (500, 0, True)
    # A SIGKILL loses at most this long's progress (docs/running-every-day.md).
    assert (options.progress_interval, options.checkpoint_interval) == (30.0, 0.5)
    assert not options.needs_state
    assert not options.keeps_nulls


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "upsert"}, "mode must be one of 'add', 'sync', 'mirror', got 'upsert'"),
        ({"clear": "null"}, "clear must be one of 'ignore', 'remove', got 'null'"),
        (
            {"customer_lookup": "guess"},
            "customer_lookup must be one of 'auto', 'per_customer', 'listing', got 'guess'",
        ),
        ({"clear": "remove"}, "clear='remove' needs mode='sync' (add mode never removes attributes)"),
        ({"dry_run": "false"}, "dry_run must be True or False, got 'false' (str)"),
        ({"dry_run": 0}, "dry_run must be True or False, got 0 (int)"),
        ({"resume": None}, "resume must be True or False, got None (NoneType)"),
        ({"source": 7}, "source must be a string or None, got 7"),
        ({"listing_threshold": -1}, "listing_threshold must be a whole number >= 0, got -1"),
        ({"listing_threshold": True}, "listing_threshold must be a whole number >= 0, got True"),
        ({"max_failures": 1.5}, "max_failures must be a whole number >= 0, got 1.5"),
        ({"progress_interval": float("inf")}, "progress_interval must be a finite number of seconds >= 0"),
        ({"checkpoint_interval": -1}, "checkpoint_interval must be a finite number of seconds >= 0"),
        ({"checkpoint_interval": "5"}, "checkpoint_interval must be a finite number of seconds >= 0"),
    ],
)
def test_an_option_out_of_range_is_refused_by_name(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        PushOptions(**fields)

    assert str(caught.value).startswith(message)


def test_a_replaced_option_is_checked_again() -> None:
    """The operator replaces ``source`` with its rendered value at execute time."""
    options = PushOptions(source="airflow:{{ dag.dag_id }}")

    assert dataclasses.replace(options, source="airflow:daily").source == "airflow:daily"
    with pytest.raises(ValueError, match="source must be a string or None"):
        dataclasses.replace(options, source=["airflow"])


@pytest.mark.parametrize(
    ("fields", "needs_state", "keeps_nulls"),
    [
        ({"mode": "add"}, False, False),
        ({"mode": "add", "dry_run": True}, True, False),
        ({"mode": "sync"}, True, False),
        ({"mode": "sync", "clear": "remove"}, True, True),
    ],
)
def test_what_a_run_reads_and_keeps_follows_from_mode_clear_and_dry_run(
    fields: dict[str, Any], needs_state: bool, keeps_nulls: bool
) -> None:
    options = PushOptions(**fields)

    assert (options.needs_state, options.keeps_nulls) == (needs_state, keeps_nulls)


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PushOptions().mode = "sync"  # type: ignore[misc]
