"""PushOptions: how a run treats its records, each option declared and checked here once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from airflow_provider_chartmogul.push.checkpoint import DEFAULT_INTERVAL as CHECKPOINT_INTERVAL

Mode = Literal["add", "sync", "mirror"]
Clear = Literal["ignore", "remove"]
CustomerLookup = Literal["auto", "per_customer", "listing"]


def check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    """``value`` when it is one of ``allowed``.

    :raises ValueError: naming the argument and the allowed values.
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_whole_number(name: str, value: Any, minimum: int) -> int:
    """``value`` when it is an int (not a bool) of at least ``minimum``.

    :raises ValueError: naming the argument.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False`` (not ``0``, not ``"false"``).

    :raises ValueError: naming the argument.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_seconds(name: str, value: Any) -> float:
    """``value`` when it is a finite number of seconds >= 0.

    :raises ValueError: naming the argument.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PushOptions:
    """How a run treats its records. The operator's arguments of the same names (``dry_run``
    included) are passed here unchanged; an instance is checked when it is made, so a bad
    argument fails when the DAG is parsed.

    :param mode: ``"add"`` posts every attribute; ``"sync"`` reads what ChartMogul holds and sends
        only the differences.
    :param dry_run: read and plan, send no write.
    :param clear: in sync mode, ``"remove"`` deletes an attribute whose value is NULL/None.
    :param source: the ``source`` label of attributes that carry none.
    :param customer_lookup: per-customer lookups, the listing, or ``"auto"``.
    :param listing_threshold: with ``"auto"``: more records than this needing a lookup read the
        listing instead.
    :param max_failures: how many customers may fail before the task fails.
    :param resume: on Airflow >= 3.3, let a retry of the task skip the records an earlier try
        already answered (:mod:`airflow_provider_chartmogul.push.checkpoint`).
    :param progress_interval: seconds between progress lines in the log.
    :param checkpoint_interval: seconds between writes of the progress to the task state store,
        while records are answered. A SIGKILL loses the progress since the last write: at 39
        requests per second, 0.5 s is about 20 records (under 1 % of a 3,000-record push), which
        the retry sends again. The cost: each write is one ``PUT`` to Airflow's execution API and
        one upsert of a small JSON value (a few hundred bytes; at most 30 KB) in the metadata
        database, so two a second per running push at the default.
    :param managed_keys: in mirror mode, the keys a mirror clears on customers the source no longer
        lists; None: the keys the input carries.
    :param max_clear_fraction: in mirror mode, the largest share (0-1) of the customers holding
        managed keys whose keys a plan may clear.
    :param allow_empty_source: in mirror mode, let a source of no records (or only NULL managed
        values) clear managed keys.
    :raises ValueError: on the first option that is out of its range, naming it.
    """

    mode: Mode = "add"
    dry_run: bool = False
    clear: Clear = "ignore"
    source: str | None = None
    customer_lookup: CustomerLookup = "auto"
    listing_threshold: int = 500
    max_failures: int = 0
    resume: bool = True
    progress_interval: float = 30.0
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    managed_keys: Sequence[str] | None = None
    max_clear_fraction: float = 0.1
    allow_empty_source: bool = False

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, get_args(Mode))
        check_choice("clear", self.clear, get_args(Clear))
        check_choice("customer_lookup", self.customer_lookup, get_args(CustomerLookup))
        if self.clear == "remove" and self.mode == "add":
            raise ValueError("clear='remove' needs mode='sync' (add mode never removes attributes)")
        check_flag("allow_empty_source", self.allow_empty_source)
        fraction = self.max_clear_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise ValueError(f"max_clear_fraction must be a number from 0 to 1, got {fraction!r}")
        if self.managed_keys is not None:
            keys = self.managed_keys
            if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys) or not keys:
                raise ValueError(f"managed_keys must be a non-empty list of attribute keys, got {keys!r}")
            object.__setattr__(self, "managed_keys", tuple(keys))
        check_flag("dry_run", self.dry_run)
        check_flag("resume", self.resume)
        if self.source is not None and not isinstance(self.source, str):
            raise ValueError(f"source must be a string or None, got {self.source!r}")
        check_whole_number("listing_threshold", self.listing_threshold, 0)
        check_whole_number("max_failures", self.max_failures, 0)
        check_seconds("progress_interval", self.progress_interval)
        check_seconds("checkpoint_interval", self.checkpoint_interval)

    @property
    def needs_state(self) -> bool:
        """Whether each customer's current attributes must be read before planning."""
        return self.mode != "add" or self.dry_run

    @property
    def keeps_nulls(self) -> bool:
        """Whether a NULL/None value means "clear this attribute" (else it is left alone)."""
        return self.mode == "mirror" or (self.mode == "sync" and self.clear == "remove")
