"""The API's URL table: path segments and method -> endpoint, and the 404 / 405 answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from airflow_provider_chartmogul.testing.server import responses
from airflow_provider_chartmogul.testing.server.replies import Reply, coded_error

Endpoint = Callable[[responses.ApiCall], Reply]

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

# The first pattern that matches wins, so literal routes come before the {uuid} ones.
ROUTES: tuple[tuple[tuple[str, ...], Mapping[str, Endpoint]], ...] = (
    (("v1", "ping"), {"GET": responses.ping}),
    (("v1", "customers"), {"GET": responses.list_customers}),
    (("v1", "customers", "search"), {"GET": responses.search}),
    (("v1", "customers", "attributes", "custom"), {"POST": responses.add_custom_by_email}),
    (("v1", "customers", "{uuid}"), {"GET": responses.retrieve}),
    (("v1", "customers", "{uuid}", "attributes"), {"GET": responses.attributes}),
    (
        ("v1", "customers", "{uuid}", "attributes", "custom"),
        {"POST": responses.add_custom, "PUT": responses.update_custom, "DELETE": responses.remove_custom},
    ),
)


@dataclass(frozen=True)
class Route:
    """A matched route: the endpoint, and the path parameters (``uuid``)."""

    endpoint: Endpoint
    params: dict[str, str]


def _segments(path: str) -> list[str]:
    # Split before decoding, so "%2F" stays inside its segment; a trailing slash is ignored.
    segments = [unquote(segment) for segment in path.split("/")[1:]]
    if len(segments) > 1 and segments[-1] == "":
        segments.pop()
    return segments


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if expected == "{uuid}":
            params["uuid"] = actual
        elif expected != actual:
            return None
    return params


def resolve(method: str, path: str) -> Route | Reply:
    """The endpoint for ``method`` on the raw (percent-encoded) ``path``, or the 404 / 405 answer."""
    segments = _segments(path)
    for pattern, endpoints in ROUTES:
        params = _match(pattern, segments)
        if params is None:
            continue
        endpoint = endpoints.get(method)
        if endpoint is None:
            message = f"Method {method} is not allowed on {path}"
            return coded_error(405, message, headers=[("Allow", ", ".join(sorted(endpoints)))])
        return Route(endpoint, params)
    return coded_error(404, f"No route matches [{method}] {path}")
