"""Constants and helpers shared by the test server's tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer

SEED_UUID = "cus_de305d54-75b4-431b-adb2-eb6b9e546012"
SEED_BODY: dict[str, Any] = {
    "custom": [
        {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
        {"type": "Integer", "key": "age", "value": 8},
    ]
}
RATE_LIMIT_BODY = {"code": 429, "message": "Your request rate has exceeded our rate limit.", "param": None}
DS2 = "ds_00000000-0000-0000-0000-000000000002"
REPO_ROOT = Path(__file__).resolve().parents[3]


def url(server: ChartMogulServer, path: str) -> str:
    return f"{server.url}/v1{path}"


def custom_path(server: ChartMogulServer, uuid: str = SEED_UUID) -> str:
    return url(server, f"/customers/{uuid}/attributes/custom")


def post_attr(
    api: requests.Session, server: ChartMogulServer, type_: str, key: str, value: Any, uuid: str = SEED_UUID
) -> requests.Response:
    return api.post(custom_path(server, uuid), json={"custom": [{"type": type_, "key": key, "value": value}]})


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
