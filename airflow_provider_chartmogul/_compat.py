"""Import shims so one code base runs on Airflow 3.x and 2.10+."""

from __future__ import annotations

try:  # Airflow 3
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # Airflow 2
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]
    from airflow.models import BaseOperator  # type: ignore[no-redef]

try:  # Airflow 3 (airflow.utils.log.secrets_masker is gone in 3.3)
    from airflow.sdk.log import mask_secret
except ImportError:  # Airflow 2
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import AirflowException
except ImportError:
    from airflow.exceptions import AirflowException  # type: ignore[no-redef,assignment]

__all__ = ["AirflowException", "BaseHook", "BaseOperator", "mask_secret"]
