"""Fixtures of the test server's tests: a server of their own, and a session on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer


@pytest.fixture
def server() -> Iterator[ChartMogulServer]:
    with ChartMogulServer(api_keys={"sk_test": "read-write", "ro_key": "read-only"}) as running:
        yield running


@pytest.fixture
def api(server: ChartMogulServer) -> Iterator[requests.Session]:
    """A keep-alive session authenticated as the read-write key."""
    with requests.Session() as session:
        session.auth = ("sk_test", "")
        yield session
