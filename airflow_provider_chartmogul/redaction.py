"""Keep the API key out of every text the provider produces.

A server or a proxy may echo the key, or the ``Authorization`` header that carries it, in an error
body; ``http.client`` debugging prints the header too. So each key is known in three forms: the
key itself, ``base64(key + ":")`` (the Basic auth token) and ``Basic <token>`` (the header value).
:func:`register_secret` gives all three to Airflow's secrets masker (for log lines) and to
:func:`scrub`, which the provider applies where error texts are made (exceptions, error bodies,
reports, dead-letter rows), so a text is clean before it is logged, pushed to XCom or stored.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

from airflow_provider_chartmogul.version_compat import mask_secret

__all__ = ["REPLACEMENT", "register_secret", "scrub", "scrub_value", "secret_forms"]

REPLACEMENT = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
# Rebuilt under the lock and swapped in one assignment: readers never take the lock.
_pattern: re.Pattern[str] | None = None


def secret_forms(api_key: str) -> list[str]:
    """The key, its Basic auth token and the ``Authorization`` header value that carries it."""
    token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
    return [api_key, token, f"Basic {token}"]


def register_secret(api_key: str | None) -> None:
    """Mask ``api_key`` in every form in Airflow's logs and in :func:`scrub`. Thread-safe."""
    global _pattern
    if not api_key:
        return
    forms = secret_forms(api_key)
    for form in forms:
        mask_secret(form)
    with _lock:
        if _secrets.issuperset(forms):
            return
        _secrets.update(forms)
        # Longest first, so "Basic <token>" is replaced whole rather than leaving "Basic ***".
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REPLACEMENT, text)


def scrub_value(value: Any) -> Any:
    """:func:`scrub` applied to every string inside ``value`` (dicts, lists and tuples walked)."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_value(v) for v in value)
    return value
