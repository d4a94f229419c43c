"""mode="mirror": a sync that also clears the managed keys on customers the source no longer lists,
after reading the whole listing and input, and guards that refuse a plan before its first write."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator
from airflow_provider_chartmogul.testing.server import ChartMogulServer
from airflow_provider_chartmogul.version_compat import AirflowFailException

KEYS = ("churn_risk", "seats")


def _writes(server: ChartMogulServer) -> list:
    return [r for r in server.requests if r.method in ("POST", "PUT", "DELETE")]


def run(**kwargs: object) -> dict:
    kwargs.setdefault("task_id", "mirror")
    kwargs.setdefault("mode", "mirror")
    return AddCustomAttributesOperator(**kwargs).execute(context={})  # type: ignore[arg-type]


def record(external_id: str, churn_risk: float | None, seats: int | None) -> dict:
    return {
        "external_id": external_id,
        "custom": [
            {"type": "Decimal", "key": "churn_risk", "value": churn_risk},
            {"type": "Integer", "key": "seats", "value": seats},
        ],
    }


@pytest.fixture
def account(chartmogul_conn: ChartMogulServer) -> dict[str, str]:
    """Ten customers holding the managed keys and a key of another integration (``stripe_plan``)."""
    chartmogul_conn.define_attribute("churn_risk", "Decimal")
    chartmogul_conn.define_attribute("seats", "Integer")
    chartmogul_conn.define_attribute("stripe_plan", "String")
    uuids = {}
    for i in range(10):
        uuids[f"acct-{i}"] = chartmogul_conn.add_customer(
            external_id=f"acct-{i}", custom={"churn_risk": 0.5, "seats": 3, "stripe_plan": "pro"}
        )["uuid"]
    chartmogul_conn.clear_requests()
    return uuids


def source(count: int = 9) -> list[dict]:
    return [record(f"acct-{i}", 0.5, 3) for i in range(count)]


def test_a_customer_absent_from_the_source_loses_exactly_the_managed_keys(
    chartmogul_conn: ChartMogulServer, account: dict[str, str]
) -> None:
    records = source()
    records[0] = record("acct-0", 0.9, None)  # a change, and a NULL that clears
    report = run(customers=records, max_clear_fraction=0.2)  # 2 of the 10 lose managed keys

    assert chartmogul_conn.custom_attributes(account["acct-9"]) == {"stripe_plan": "pro"}
    assert chartmogul_conn.custom_attributes(account["acct-0"]) == {"churn_risk": 0.9, "stripe_plan": "pro"}
    for i in range(1, 9):
        assert chartmogul_conn.custom_attributes(account[f"acct-{i}"]) == {
            "churn_risk": 0.5,
            "seats": 3,
            "stripe_plan": "pro",
        }
    assert report["mirror"]["customers_to_clear"] == 2
    assert report["mirror"]["customers_holding_managed_keys"] == 10
    assert report["mirror"]["refused"] is None
    assert (report["succeeded"], report["failed"], report["cleared"], report["changed"]) == (10, 0, 3, 1)
    deletes = [r for r in _writes(chartmogul_conn) if r.method == "DELETE"]
    assert {r.path for r in deletes} == {
        f"/v1/customers/{account['acct-9']}/attributes/custom",
        f"/v1/customers/{account['acct-0']}/attributes/custom",
    }

    chartmogul_conn.clear_requests()
    again = run(customers=records, max_clear_fraction=0.2)
    assert _writes(chartmogul_conn) == []
    assert again["mirror"]["customers_to_clear"] == 0


def test_managed_keys_limit_what_is_cleared(
    chartmogul_conn: ChartMogulServer, account: dict[str, str]
) -> None:
    run(customers=source(), managed_keys=["seats"])
    assert chartmogul_conn.custom_attributes(account["acct-9"]) == {"churn_risk": 0.5, "stripe_plan": "pro"}


def test_a_dry_run_shows_the_clears_and_sends_nothing(
    chartmogul_conn: ChartMogulServer, account: dict[str, str]
) -> None:
    report = run(customers=source(), dry_run=True)
    assert _writes(chartmogul_conn) == []
    planned = {entry["customer_uuid"]: entry["changes"] for entry in report["plan"]}
    assert sorted(planned[account["acct-9"]], key=lambda c: c["key"]) == [
        {"key": "churn_risk", "action": "cleared", "old": 0.5},
        {"key": "seats", "action": "cleared", "old": 3},
    ]


def _refused(**kwargs: object) -> dict:
    with pytest.raises(AirflowFailException) as raised:
        run(**kwargs)
    assert "nothing was sent" in str(raised.value)
    return {"message": str(raised.value)}


def test_a_plan_clearing_half_the_holders_is_refused_and_sends_nothing(
    chartmogul_conn: ChartMogulServer, account: dict[str, str]
) -> None:
    refused = _refused(customers=source(5))
    assert "5 of the 10 customers" in refused["message"]
    assert _writes(chartmogul_conn) == []
    assert chartmogul_conn.custom_attributes(account["acct-9"])["seats"] == 3
    # Allowed, the same plan runs.
    report = run(customers=source(5), max_clear_fraction=0.5)
    assert report["mirror"]["customers_to_clear"] == 5


@pytest.mark.parametrize("records", [[], [record(f"acct-{i}", None, None) for i in range(10)]])
def test_an_empty_source_clears_nothing_unless_allowed(
    chartmogul_conn: ChartMogulServer, account: dict[str, str], records: list[dict]
) -> None:
    refused = _refused(customers=records, managed_keys=list(KEYS), max_clear_fraction=1.0)
    assert "allow_empty_source=True" in refused["message"]
    assert _writes(chartmogul_conn) == []


def test_a_refused_plan_leaves_its_summary_in_the_report(
    chartmogul_conn: ChartMogulServer, account: dict[str, str], tmp_path: Path
) -> None:
    from airflow_provider_chartmogul.push.mirror import PlanRefused
    from airflow_provider_chartmogul.push.options import PushOptions
    from airflow_provider_chartmogul.push.run import CustomAttributesPusher

    with AddCustomAttributesOperator(task_id="t", customers=[]).hook as hook:
        pusher = CustomAttributesPusher(hook, PushOptions(mode="mirror"))  # type: ignore[arg-type]
        with pytest.raises(PlanRefused) as raised:
            pusher.run(source(5))
    shown = raised.value.report.as_dict()
    assert shown["mirror"]["customers_to_clear"] == 5
    assert len(shown["mirror"]["sample"]) == 5
    assert shown["mirror"]["refused"].startswith("the plan would clear managed keys on 5 of the 10")
    assert shown["total"] == 0
    assert _writes(chartmogul_conn) == []


def test_a_sql_source_mirrors_its_columns(
    chartmogul_conn: ChartMogulServer,
    account: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "scores.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scores (external_id TEXT, churn_risk REAL, seats INTEGER)")
        conn.executemany(
            "INSERT INTO scores VALUES (?, ?, ?)", [(f"acct-{i}", 0.5, 3 if i else None) for i in range(9)]
        )
    monkeypatch.setenv("AIRFLOW_CONN_SCORES", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    run(
        sql="SELECT external_id, churn_risk, seats FROM scores ORDER BY external_id",
        sql_conn_id="scores",
        attribute_types={"churn_risk": "Decimal", "seats": "Integer"},
        max_clear_fraction=0.2,
    )
    assert chartmogul_conn.custom_attributes(account["acct-9"]) == {"stripe_plan": "pro"}
    assert chartmogul_conn.custom_attributes(account["acct-0"]) == {"churn_risk": 0.5, "stripe_plan": "pro"}
    chartmogul_conn.clear_requests()
    run(
        sql="SELECT external_id, churn_risk, seats FROM scores ORDER BY external_id",
        sql_conn_id="scores",
        attribute_types={"churn_risk": "Decimal", "seats": "Integer"},
        max_clear_fraction=0.2,
    )
    assert _writes(chartmogul_conn) == []


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"managed_keys": ["seats", 3]}, "managed_keys"),
        ({"managed_keys": []}, "managed_keys"),
        ({"max_clear_fraction": 1.5}, "max_clear_fraction"),
        ({"allow_empty_source": "yes"}, "allow_empty_source"),
    ],
)
def test_bad_mirror_arguments_fail_when_the_dag_is_parsed(kwargs: dict, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        AddCustomAttributesOperator(task_id="t", customers=[], mode="mirror", **kwargs)
