"""The checkpoint (``airflow_provider_chartmogul.push.checkpoint``): the progress format and its
rules on a dict-backed store, then the real thing: Airflow 3.3's task state store kept across an
Airflow retry under ``dag.test()``."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_chartmogul.push.checkpoint import (
    DEFAULT_INTERVAL,
    FORMAT,
    HEAD,
    KEY,
    MAX_RANGES,
    Checkpoint,
    Progress,
    input_digest,
)
from airflow_provider_chartmogul.push.options import PushOptions


class DictStore:
    """The task state store's interface over a dict (the real store is tested at the end)."""

    def __init__(self, values: dict[str, Any] | None = None, *, failing: bool = False) -> None:
        self.values = dict(values or {})
        self.writes: list[Any] = []
        self.failing = failing

    def get(self, key: str, default: Any = None) -> Any:
        if self.failing:
            raise RuntimeError("the API server is away")
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any) -> None:
        if self.failing:
            raise RuntimeError("the API server is away")
        self.values[key] = json.loads(json.dumps(value))  # JSON only, as the real store
        self.writes.append(self.values[key])

    def delete(self, key: str) -> None:
        if self.failing:
            raise RuntimeError("the API server is away")
        self.values.pop(key, None)


def records(n: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"customer_uuid": f"cus_{i}", "custom": [{"type": "Integer", "key": "seats", "value": i}]}
        for i in range(start, start + n)
    ]


def first_try(store: DictStore, items: list[Any], answered: list[int], *, try_number: int = 1) -> Checkpoint:
    checkpoint = Checkpoint(store, try_number=try_number)
    list(checkpoint.watch(items))
    for index in answered:
        checkpoint.mark_done(index)
    assert checkpoint.flush(0.0, force=True)
    return checkpoint


# ---- Progress ------------------------------------------------------------------------------------


def test_records_answered_out_of_order_close_into_one_range() -> None:
    progress = Progress()

    for index in [2, 0, 5, 1, 4, 3]:
        progress.mark(index)

    assert progress.ranges() == [[0, 6]]
    assert progress.watermark == 6
    assert progress.answered == 6


def test_a_gap_keeps_the_watermark_and_the_records_beyond_it_are_kept_too() -> None:
    progress = Progress()
    for index in [0, 1, 2, 4, 5, 9]:
        progress.mark(index)

    assert progress.ranges() == [[0, 3], [4, 6], [9, 10]]
    assert progress.watermark == 3
    assert [i for i in range(12) if progress.is_done(i)] == [0, 1, 2, 4, 5, 9]


def test_marking_twice_changes_nothing() -> None:
    progress = Progress([[0, 3]])

    progress.mark(1)
    progress.mark(2)

    assert progress.ranges() == [[0, 3]]


def test_a_record_filling_the_gap_between_two_ranges_merges_them() -> None:
    progress = Progress([[0, 3], [4, 8]])

    progress.mark(3)

    assert progress.ranges() == [[0, 8]]


def test_no_watermark_until_the_first_record_is_answered() -> None:
    progress = Progress([[1, 50]])

    assert progress.watermark == 0
    assert not progress.is_done(0)
    assert progress.is_done(49)
    assert not progress.is_done(50)


def test_ranges_read_back_are_sorted_and_merged() -> None:
    assert Progress([[10, 12], [0, 5], [3, 8]]).ranges() == [[0, 8], [10, 12]]


@pytest.mark.parametrize(
    "ranges",
    [[[0]], [[3, 3]], [[-1, 4]], [[0, "5"]], [[0, True]], [[0, 1.5]], ["ab"]],
)
def test_ranges_that_are_not_record_positions_are_refused(ranges: Any) -> None:
    with pytest.raises(ValueError, match="not ranges of record positions"):
        Progress(ranges)


def test_with_many_gaps_only_the_first_ranges_are_kept_so_the_value_stays_small() -> None:
    progress = Progress()
    base = 123_456_789  # positions of a large input: the widest numbers
    for index in range(0, 6 * MAX_RANGES, 2):  # every other record failed: a gap each
        progress.mark(base + index)

    kept = progress.ranges()

    assert len(kept) == MAX_RANGES
    assert kept[0] == [base, base + 1]
    assert kept == sorted(kept)
    assert progress.is_done(base + 2 * (MAX_RANGES - 1))
    checkpoint = Checkpoint(DictStore())
    checkpoint.progress = progress
    assert len(json.dumps(checkpoint.value())) < 30_000


# ---- the digest ----------------------------------------------------------------------------------


def test_the_digest_tells_inputs_apart_by_their_first_records() -> None:
    assert input_digest(records(3)) == input_digest(records(3))
    assert input_digest(records(3)) != input_digest(records(3, start=1))
    assert input_digest(records(3)) != input_digest(records(2))
    # key order inside a record does not matter; values that are not JSON are digested by repr
    assert input_digest([{"a": 1, "b": 2}]) == input_digest([{"b": 2, "a": 1}])
    assert input_digest([{"t": dt.date(2026, 1, 1)}]) != input_digest([{"t": dt.date(2026, 1, 2)}])


# ---- without a store -----------------------------------------------------------------------------


def test_without_a_store_a_checkpoint_does_nothing() -> None:
    items = records(5)
    checkpoint = Checkpoint(None)

    assert checkpoint.watch(items) is items
    checkpoint.mark_done(0)
    assert not checkpoint.should_skip(0)
    assert not checkpoint.flush(100.0, force=True)
    checkpoint.finish()
    assert checkpoint.summary() is None


@pytest.mark.parametrize(
    ("context", "active"),
    [({}, False), (None, False), ({"task_state_store": DictStore()}, True)],
)
def test_from_context_uses_the_store_when_airflow_gives_one(context: Any, active: bool) -> None:
    assert Checkpoint.from_context(context).active is active


def test_from_context_does_nothing_when_resume_is_off() -> None:
    assert not Checkpoint.from_context({"task_state_store": DictStore()}, enabled=False).active


def test_from_context_writes_the_try_number() -> None:
    class TI:
        try_number = 3

    store = DictStore()
    checkpoint = Checkpoint.from_context({"task_state_store": store, "ti": TI()})
    checkpoint.watch(records(2))
    checkpoint.mark_done(0)
    checkpoint.flush(0.0)

    assert store.values[KEY]["try"] == 3


# ---- the first try -------------------------------------------------------------------------------


def test_a_first_try_writes_small_progress_with_the_input_it_was_for() -> None:
    store = DictStore()
    items = records(250)

    first_try(store, items, answered=[*range(120), 130, 131, 140])

    assert store.values[KEY] == {
        "format": FORMAT,
        "try": 1,
        "digest": input_digest(items[:HEAD]),
        "head": HEAD,
        "count": 250,
        "watermark": 120,
        "done": [[0, 120], [130, 132], [140, 141]],
    }


def test_writes_come_at_most_once_per_interval_and_only_after_a_change() -> None:
    store = DictStore()
    checkpoint = Checkpoint(store, interval=5.0)
    checkpoint.watch(records(10))

    assert not checkpoint.flush(0.0), "nothing answered yet"
    checkpoint.mark_done(0)
    assert checkpoint.flush(0.0)
    checkpoint.mark_done(1)
    assert not checkpoint.flush(4.9)
    assert checkpoint.flush(5.0)
    assert not checkpoint.flush(20.0), "nothing new"
    checkpoint.mark_done(2)
    assert checkpoint.flush(20.1, force=True)
    assert [w["done"] for w in store.writes] == [[[0, 1]], [[0, 2]], [[0, 3]]]


def test_by_default_the_progress_is_written_every_half_second() -> None:
    """What a SIGKILL can lose: the answers since the last write (the deployment test counts them)."""
    store = DictStore()
    checkpoint = Checkpoint(store)
    checkpoint.watch(records(10))

    checkpoint.mark_done(0)
    assert checkpoint.flush(100.0)
    checkpoint.mark_done(1)
    assert not checkpoint.flush(100.49)
    assert checkpoint.flush(100.5)
    assert checkpoint.interval == DEFAULT_INTERVAL == PushOptions().checkpoint_interval == 0.5


def test_finish_forgets_the_progress() -> None:
    store = DictStore()
    checkpoint = first_try(store, records(3), answered=[0, 1, 2])

    checkpoint.finish()

    assert KEY not in store.values
    fresh = Checkpoint(store)
    fresh.watch(records(3))
    assert fresh.summary() is None
    assert not fresh.should_skip(0)


# ---- a retry -------------------------------------------------------------------------------------


def test_a_retry_skips_exactly_the_records_answered_before() -> None:
    store = DictStore()
    items = records(300)
    answered = [*range(150), 160, 170]
    first_try(store, items, answered)

    retry = Checkpoint(store, try_number=2)
    watched = retry.watch(items)
    skipped = [i for i, _ in enumerate(watched) if retry.should_skip(i)]

    assert skipped == answered
    assert retry.summary() == {"from_try": 1, "watermark": 150, "done_earlier": 152}


def test_a_retry_keeps_the_earlier_progress_and_adds_its_own() -> None:
    store = DictStore()
    items = records(10)
    first_try(store, items, answered=[0, 1, 2, 5])

    retry = Checkpoint(store, try_number=2)
    for index, _ in enumerate(retry.watch(items)):
        if not retry.should_skip(index) and index != 7:  # record 7 fails again
            retry.mark_done(index)
    retry.flush(0.0, force=True)

    assert store.values[KEY]["done"] == [[0, 7], [8, 10]]
    assert store.values[KEY]["try"] == 2
    third = Checkpoint(store, try_number=3)
    assert [i for i, _ in enumerate(third.watch(items)) if not third.should_skip(i)] == [7]


@pytest.mark.parametrize(
    ("retry_input", "why"),
    [
        (records(301), "the input has 301 records, the earlier try's had 300"),
        (records(300, start=1), "the input's first records differ from the earlier try's"),
        (list(reversed(records(300))), "the input's first records differ from the earlier try's"),
    ],
    ids=["count", "first-records", "order"],
)
def test_a_retry_with_another_input_starts_over_and_says_why(
    retry_input: list[Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = DictStore()
    first_try(store, records(300), answered=list(range(200)))

    retry = Checkpoint(store, try_number=2)
    with caplog.at_level(logging.WARNING):
        watched = list(retry.watch(retry_input))

    assert not any(retry.should_skip(i) for i in range(len(watched)))
    assert retry.summary() == {"started_over": why}
    assert why in caplog.text
    retry.mark_done(0)
    retry.flush(0.0)
    assert store.values[KEY]["done"] == [[0, 1]], "the earlier progress is replaced"


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ({"format": 99}, "the progress was written in another format (99)"),
        ({"done": [[5, 1]]}, "the progress is unreadable"),
        ({"done": "0-100"}, "the progress is unreadable"),
    ],
)
def test_progress_that_cannot_be_read_starts_over(stored: dict[str, Any], why: str) -> None:
    store = DictStore()
    first_try(store, records(10), answered=[0, 1])
    store.values[KEY].update(stored)

    retry = Checkpoint(store)
    retry.watch(records(10))

    assert retry.summary() == {"started_over": why}
    assert not retry.should_skip(0)


def test_a_streamed_input_is_handed_on_whole_and_counted_at_its_end() -> None:
    """A query's rows have no length: the first records are read ahead for the digest."""
    store = DictStore()
    items = records(HEAD + 50)

    def stream() -> Iterator[Any]:
        yield from items

    first = Checkpoint(store)
    watched = first.watch(stream())
    assert first.value()["count"] is None
    assert list(watched) == items
    first.mark_done(0)
    first.flush(0.0)
    assert store.values[KEY]["count"] == HEAD + 50

    retry = Checkpoint(store, try_number=2)
    assert list(retry.watch(stream())) == items
    assert retry.should_skip(0) and not retry.should_skip(1)


def test_closing_a_watched_stream_closes_the_source() -> None:
    """The run closes an input it stops reading: a SQL cursor must be released through the wrapper."""
    closed: list[bool] = []

    def source() -> Iterator[Any]:
        try:
            yield from records(HEAD * 3)
        finally:
            closed.append(True)

    watched = Checkpoint(DictStore()).watch(source())
    assert isinstance(watched, Iterator)
    next(watched)
    watched.close()  # type: ignore[attr-defined]

    assert closed == [True]


def test_a_short_input_is_digested_whole() -> None:
    store = DictStore()
    first_try(store, records(3), answered=[0])

    retry = Checkpoint(store)
    retry.watch(records(3))

    assert store.values[KEY]["head"] == 3
    assert retry.should_skip(0)


# ---- a store that fails ------------------------------------------------------------------------


def test_a_store_that_fails_costs_the_resume_never_the_run(caplog: pytest.LogCaptureFixture) -> None:
    store = DictStore(failing=True)
    checkpoint = Checkpoint(store)

    with caplog.at_level(logging.WARNING):
        items = records(5)
        assert checkpoint.watch(items) is items
        checkpoint.mark_done(0)
        assert not checkpoint.flush(0.0)
        checkpoint.mark_done(1)
        assert not checkpoint.flush(10.0)
        checkpoint.finish()

    assert "Could not read the earlier tries' progress (the API server is away)" in caplog.text
    assert caplog.text.count("Could not keep the run's progress") == 1, "said once"
    assert "Could not clear the run's progress" in caplog.text


# ---- the real store, across an Airflow retry ---------------------------------------------------


RETRY_DAG = """
import datetime as dt
import json
import os

from airflow.sdk import DAG, task

from airflow_provider_chartmogul.push.checkpoint import KEY, Checkpoint

ITEMS = [{"customer_uuid": f"cus_{i}"} for i in range(12)]

with DAG("checkpoint_retry", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:

    @task(retries=1, retry_delay=dt.timedelta(0))
    def push(**context):
        checkpoint = Checkpoint.from_context(context)
        skipped, sent = [], []
        for index, _ in enumerate(checkpoint.watch(ITEMS)):
            if checkpoint.should_skip(index):
                skipped.append(index)
                continue
            sent.append(index)
            checkpoint.mark_done(index)
            if index == 5 and context["ti"].try_number == 1:
                checkpoint.flush(0.0, force=True)
                raise RuntimeError("the worker died")
        stored = context["task_state_store"].get(KEY)
        checkpoint.finish()
        result = {
            "try": context["ti"].try_number,
            "skipped": skipped,
            "sent": sent,
            "summary": checkpoint.summary(),
            "stored_before_finish": stored,
            "after_finish": context["task_state_store"].get(KEY),
        }
        with open(os.environ["RESULT_PATH"], "w") as out:
            json.dump(result, out)

    push()

if __name__ == "__main__":
    print("state:", dag.test().state)
"""


@pytest.mark.db
@pytest.mark.skipif(
    tuple(int(p) for p in importlib.metadata.version("apache-airflow").split(".")[:2]) < (3, 3),
    reason="the task state store is new in Airflow 3.3",
)
def test_the_progress_survives_an_airflow_retry(airflow_db: None, tmp_path: Path) -> None:
    """Try 1 answers records 0-5 and dies; Airflow's own retry (try 2) skips exactly those. In a
    child process with a DAGs folder of its own (``dag.test()`` runs only DAGs it can parse)."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "checkpoint_retry.py").write_text(RETRY_DAG)
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "RESULT_PATH": str(tmp_path / "result.json"),
    }

    child = subprocess.run(
        [sys.executable, str(dags / "checkpoint_retry.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    output = child.stdout + child.stderr
    assert "state: success" in output, output[-3000:]
    assert "the worker died" in output, "try 1 failed"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["try"] == 2
    assert result["skipped"] == [0, 1, 2, 3, 4, 5]
    assert result["sent"] == [6, 7, 8, 9, 10, 11]
    assert result["summary"] == {"from_try": 1, "watermark": 6, "done_earlier": 6}
    assert result["stored_before_finish"]["try"] == 1, "try 2 wrote nothing before its end"
    assert result["after_finish"] is None
