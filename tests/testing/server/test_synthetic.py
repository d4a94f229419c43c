"""Synthetic customers: the formulas, the share holding custom attributes, the three ways in."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_chartmogul.testing.process import ServerProcess
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.testing.server.synthetic import (
    holds_custom,
    synthetic_custom,
    synthetic_email,
    synthetic_external_id,
    synthetic_uuid,
)
from tests.testing.server._support import url


def test_formulas_are_the_documented_ones() -> None:
    assert synthetic_uuid(26) == "cus_00000000-0000-4000-8000-00000000001a"
    assert synthetic_external_id(26) == "ext-0000026"
    assert synthetic_email(26) == "customer26@example.com"
    assert synthetic_custom(26) == {"channel": "Facebook", "age": 34, "pro": True}
    assert synthetic_custom(61) == {"channel": "Facebook", "age": 9, "pro": False}


@pytest.mark.parametrize("share", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_share_holding_custom_is_exact_and_spread(share: float) -> None:
    holders = [i for i in range(10_000) if holds_custom(i, share)]
    assert len(holders) == round(10_000 * share)
    if 0 < share < 1:  # spread evenly: every 100 customers hold the share, give or take one
        for block in range(100):
            in_block = sum(1 for i in holders if block * 100 <= i < block * 100 + 100)
            assert abs(in_block - 100 * share) <= 1


def test_seed_synthetic_in_process(server: ChartMogulServer, api: requests.Session) -> None:
    assert server.seed_synthetic(40, custom_share=0.5) == 40
    assert server.seed_synthetic(2, start=40) == 2
    assert server.customer_count == 42
    assert server.definitions == {"channel": "String", "age": "Integer", "pro": "Boolean"}
    held = [uuid for uuid in (synthetic_uuid(i) for i in range(40)) if server.custom_attributes(uuid)]
    assert len(held) == 20
    for index in (0, 1, 39, 41):
        found = api.get(url(server, "/customers"), params={"external_id": synthetic_external_id(index)})
        (entry,) = found.json()["entries"]
        assert entry["uuid"] == synthetic_uuid(index) and entry["email"] == synthetic_email(index)
        expected = synthetic_custom(index) if index >= 40 or holds_custom(index, 0.5) else {}
        assert entry["attributes"]["custom"] == expected
    with pytest.raises(ValueError, match="already exists"):
        server.seed_synthetic(1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        server.seed_synthetic(1, start=99, custom_share=1.5)
    with pytest.raises(TypeError, match="count must be an integer"):
        server.seed_synthetic("3")  # type: ignore[arg-type]


def test_seed_synthetic_from_the_command_line_and_the_admin_api() -> None:
    with ServerProcess(api_key="sk_synth", synthetic_customers=5, synthetic_custom_share=0.2) as process:
        custom = process.custom_attributes()
        assert list(custom) == [synthetic_uuid(i) for i in range(5)]
        assert [uuid for uuid, values in custom.items() if values] == [synthetic_uuid(4)]
        assert process.seed_synthetic(3, start=5, custom_share=1.0) == 3
        assert process.custom_attributes()[synthetic_uuid(7)] == synthetic_custom(7)
        assert requests.post(f"{process.url}/_testing/synthetic", json={"count": -1}).status_code == 400
