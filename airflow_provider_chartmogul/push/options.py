"""PushOptions: how a run treats its records, each option declared and checked here once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

Mode = Literal["add", "sync"]
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
    :param checkpoint_interval: seconds between progress records in the task state store.
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
    checkpoint_interval: float = 1.0

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, get_args(Mode))
        check_choice("clear", self.clear, get_args(Clear))
        check_choice("customer_lookup", self.customer_lookup, get_args(CustomerLookup))
        if self.clear == "remove" and self.mode != "sync":
            raise ValueError("clear='remove' needs mode='sync' (add mode never removes attributes)")
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
        return self.mode == "sync" or self.dry_run

    @property
    def keeps_nulls(self) -> bool:
        """Whether a NULL/None value means "clear this attribute" (else it is left alone)."""
        return self.mode == "sync" and self.clear == "remove"
