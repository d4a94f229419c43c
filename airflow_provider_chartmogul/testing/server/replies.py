"""What the test server sends back: the Reply type, and the bodies it sends with each status."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json"  # as recorded: no charset (JSON is UTF-8 by definition)
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

UNAUTHORIZED_BODY: dict[str, Any] = {"code": 401, "message": "No valid API key provided", "param": None}
READ_ONLY_BODY: dict[str, Any] = {
    "code": 403,
    "message": "This API key is read-only: it cannot be used for POST, PUT or DELETE requests",
    "param": None,
}
RATE_LIMIT_BODY: dict[str, Any] = {
    "code": 429,
    "message": "Your request rate has exceeded our rate limit.",
    "param": None,
}
TOO_MANY_PARALLEL_BODY: dict[str, Any] = {
    "code": 503,
    "message": "Too many parallel connections: slow down and retry",
    "param": None,
}
CUSTOMER_NOT_FOUND_BODY: dict[str, Any] = {"error": "Customer not found"}

_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class Reply:
    """What to send back; ``status`` None means: close the connection without an answer."""

    status: int | None
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    fault: str | None = None
    linger: float = 0.0  # seconds to wait before closing, for the "slow" fault
    trickle: bool = False  # send the body byte by byte (the "trickle" fault)


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_reply(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None, fault: str | None = None
) -> Reply:
    return Reply(status, json_bytes(payload), JSON_TYPE, headers or [], fault)


def coded_error(
    status: int, message: str, param: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """The API's usual error body: ``{"code": status, "message": ..., "param": ...}``."""
    return json_reply(status, {"code": status, "message": message, "param": param}, headers)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def rate_limit_reply(retry_after: float | None, fault: str | None = None) -> Reply:
    """429, with ``Retry-After`` when the server is configured to send one."""
    headers = []
    if retry_after is not None:
        headers.append(("Retry-After", _format_seconds(retry_after)))
    return json_reply(429, RATE_LIMIT_BODY, headers, fault)


def status_reply(status: int, retry_after: float | None) -> Reply:
    """The body this server normally sends with ``status`` (for faults and failing customers)."""
    if status == 429:
        return rate_limit_reply(retry_after)
    if status == 500:
        return Reply(500, b"Internal Server Error", TEXT_TYPE)
    if status in (502, 504):
        page = _PROXY_PAGE.format(status=status, phrase=phrase(status))
        return Reply(status, page.encode(), HTML_TYPE)
    if status == 503:
        return coded_error(503, "Service temporarily unavailable")
    if status == 401:
        return json_reply(401, UNAUTHORIZED_BODY)
    if status == 403:
        return json_reply(403, READ_ONLY_BODY)
    if status == 404:
        return json_reply(404, CUSTOMER_NOT_FOUND_BODY)
    return coded_error(status, phrase(status))
