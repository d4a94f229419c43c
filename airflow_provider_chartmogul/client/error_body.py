"""Read the API's own error message out of any of the error-body shapes ChartMogul uses.

Seen shapes (see the API notes): ``{"code", "message", "param"}``, ``{"error": str}``,
``{"errors": {field: msg}}``, a Rails-style body with ``error_details``, and plain text or HTML
on 5xx answers from proxies.

Both functions scrub the API key (see :mod:`~airflow_provider_chartmogul.redaction`) from the
whole text before cutting it, so a key an answer echoes cannot leak, even in part.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from airflow_provider_chartmogul.exceptions import shorten
from airflow_provider_chartmogul.redaction import scrub

MAX_BODY_CHARS = 500
#: How much of a non-JSON error body is scanned for a message.
MAX_SCAN_CHARS = 16_384

_TAG = re.compile(r"<[^<>]+>")
_SPACE = re.compile(r"\s+")
# An unclosed block runs to the end: then each pattern is linear, even on malformed HTML.
_HTML_SKIP = re.compile(r"<(script|style|head)\b.*?(?:</\1>|\Z)", re.IGNORECASE | re.DOTALL)


def _flatten(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_flatten(v) for v in value)
    return json.dumps(value)


def _message_from_json(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return None
    for field in ("message", "error", "errors", "error_details", "error_message", "detail"):
        if data.get(field):
            text = _flatten(data[field])
            param = data.get("param")
            if field == "message" and isinstance(param, str) and param and param not in text:
                text = f"{text} (param: {param})"
            return text
    return None


def _text_from_html(body: str) -> str:
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
    text = _TAG.sub(" ", _HTML_SKIP.sub(" ", body))
    text = _SPACE.sub(" ", html.unescape(text)).strip()
    if title:
        heading = _SPACE.sub(" ", html.unescape(title.group(1))).strip()
        if heading and not text.startswith(heading):
            text = f"{heading}: {text}" if text else heading
    return text


def error_message(body: str, content_type: str | None = None) -> str:
    """The most useful one-line message in an error answer's body, shortened; never empty."""
    stripped = scrub(body).strip()
    if not stripped:
        return "(empty body)"
    try:
        message = _message_from_json(json.loads(stripped))
    except ValueError:
        message = None
    if message is None:
        # Only the start is read (malformed HTML once took 10 s per 100 KB here), and an error
        # page's message is near its start anyway.
        head = stripped[:MAX_SCAN_CHARS]
        looks_html = "html" in (content_type or "").lower() or head.lower().startswith(("<!doctype", "<html"))
        message = _text_from_html(head) if looks_html else _SPACE.sub(" ", head)
    return shorten(message or stripped, MAX_BODY_CHARS, quote=False)
