"""ChartMogulServer as a whole: imports, reset, the official client against it."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
import requests

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.testing.server._support import REPO_ROOT, SEED_UUID, url


def test_import_does_not_need_airflow() -> None:
    code = (
        "import sys; import airflow_provider_chartmogul.testing.server as s; "
        "assert s.ChartMogulServer; assert 'airflow' not in sys.modules, 'airflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=30)


def test_reset(server: ChartMogulServer, api: requests.Session) -> None:
    server.add_customer(uuid=SEED_UUID, custom={"a": 1})
    server.queue_faults(["500"])
    server.fail_customer(SEED_UUID)
    api.get(url(server, "/ping"))
    server.queue_faults(["500"])
    server.reset()
    assert server.get_customer(SEED_UUID) is None and server.definitions == {} and server.requests == []
    assert server.stats()["total"] == 0
    assert api.get(url(server, "/ping")).status_code == 200


def test_official_chartmogul_client_unchanged(server: ChartMogulServer) -> None:
    chartmogul = pytest.importorskip("chartmogul")
    server.add_customer(uuid=SEED_UUID, email="bob@example.com", name="Example Company", custom={"CAC": 213})
    config = chartmogul.Config("sk_test", request_timeout=10)
    config.uri = f"{server.url}/v1"  # the client builds every URL as config.uri + path
    data = {
        "custom": [
            {"type": "String", "key": "channel", "value": "Facebook", "source": "integration"},
            {"type": "Integer", "key": "CAC", "value": 8},
        ]
    }
    assert chartmogul.Ping.ping(config).get().data == "pong!"
    added = chartmogul.CustomAttributes.add(config, uuid=SEED_UUID, data=data).get()
    assert added.custom == {"CAC": 8, "channel": "Facebook"}
    updated = chartmogul.CustomAttributes.update(config, uuid=SEED_UUID, data={"custom": {"CAC": 9}}).get()
    assert updated.custom == {"CAC": 9, "channel": "Facebook"}
    # The recorded DELETE answers 204 with no body: the client gives None.
    removed = chartmogul.CustomAttributes.remove(config, uuid=SEED_UUID, data={"custom": ["CAC"]}).get()
    assert removed is None and server.custom_attributes(SEED_UUID) == {"channel": "Facebook"}
    server.configure(delete_status=200)  # the older answer: the remaining map
    again = chartmogul.CustomAttributes.remove(config, uuid=SEED_UUID, data={"custom": ["CAC"]}).get()
    assert again.custom == {"channel": "Facebook"}
    attributes = chartmogul.Attributes.retrieve(config, uuid=SEED_UUID).get()
    assert attributes.custom == {"channel": "Facebook"} and attributes.tags == []
    found = chartmogul.Customer.search(config, email="bob@example.com").get()
    assert [customer.uuid for customer in found.entries] == [SEED_UUID]
    assert found.entries[0].attributes.custom == {"channel": "Facebook"}
    listed = chartmogul.Customer.all(config, per_page=200).get()
    assert listed.has_more is False and listed.entries[0].name == "Example Company"
    retrieved = chartmogul.Customer.retrieve(config, uuid=SEED_UUID).get()
    assert retrieved.email == "bob@example.com"
    by_email = chartmogul.CustomAttributes.add_by_email(
        config, data={"email": "bob@example.com", "custom": [{"type": "Boolean", "key": "pro", "value": "t"}]}
    ).get()
    assert by_email.entries[0].attributes.custom == {"channel": "Facebook", "pro": True}
    with pytest.raises(chartmogul.APIError, match="param"):
        chartmogul.Customer.search(config, email="nobody@example.com").get()

    # What the official client sends, for comparison with the provider's hook.
    post = next(record for record in server.requests if record.method == "POST")
    assert post.path == f"/v1/customers/{SEED_UUID}/attributes/custom"
    assert post.headers["authorization"] == "Basic " + base64.b64encode(b"sk_test:").decode()
    assert post.headers["content-type"] == "application/json"
    assert post.headers["user-agent"].startswith("chartmogul-python/")
    assert post.body == data and post.query == {}
    print("\nofficial chartmogul client requests:")
    for record in server.requests:
        print(
            f"  {record.method} {record.path} query={record.query} status={record.status} "
            f"content-type={record.headers.get('content-type')} auth={record.headers.get('authorization')} "
            f"ua={record.headers.get('user-agent')} body={record.raw_body.decode()}"
        )
