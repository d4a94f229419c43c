"""Import shims so one code base runs on Airflow 3.x and 2.10+."""

from __future__ import annotations

from typing import Any

try:  # Airflow 3
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # Airflow 2
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]
    from airflow.models import BaseOperator  # type: ignore[no-redef]

try:  # Airflow 3 (airflow.utils.log.secrets_masker is gone in 3.3)
    from airflow.sdk.log import mask_secret
except ImportError:  # Airflow 2
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]

# Both from one module, so that AirflowFailException subclasses the AirflowException used here.
try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2, 3.0 and 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowFailException,
    )

# What BaseHook.get_connection raises for an undefined connection id; what execution_timeout raises.
try:  # Airflow 3
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowTaskTimeout
except ImportError:  # Airflow 2
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowNotFoundException,
        AirflowTaskTimeout,
    )

# A value of a templated field wrapped in it is used as it is, never rendered.
try:  # Airflow 3
    from airflow.sdk import literal
except ImportError:  # Airflow 2.8+
    from airflow.template.templater import LiteralValue as literal  # type: ignore[no-redef,assignment]

LiteralValue: type[Any] = type(literal(None))

# Outlets: Assets and Asset aliases (Datasets and Dataset aliases on Airflow 2.10+).
try:  # Airflow 3
    from airflow.sdk import Asset, AssetAlias
except ImportError:  # Airflow 2.10+
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef,assignment]
    from airflow.datasets import DatasetAlias as AssetAlias  # type: ignore[no-redef,assignment]

# Airflow's metrics front end: the task SDK's on 3.3+ (airflow.stats warns there), core's before.
try:  # Airflow 3.3+
    from airflow.sdk.observability.stats import Stats
except ImportError:  # Airflow 2.10+, 3.0 to 3.2
    from airflow.stats import Stats  # type: ignore[no-redef]

# The running task's context; raises outside a task.
try:  # Airflow 3
    from airflow.sdk import get_current_context
except ImportError:  # Airflow 2
    from airflow.operators.python import get_current_context  # type: ignore[no-redef]

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowTaskTimeout",
    "Asset",
    "AssetAlias",
    "BaseHook",
    "BaseOperator",
    "LiteralValue",
    "Stats",
    "get_current_context",
    "literal",
    "mask_secret",
]
