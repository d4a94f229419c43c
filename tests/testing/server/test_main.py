"""The command line (python -m ...testing.server)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import requests

from airflow_provider_chartmogul.testing.process import ServerProcess
from tests.testing.server._support import REPO_ROOT, SEED_UUID


def test_cli(tmp_path: Path) -> None:
    seed = tmp_path / "customers.json"
    seed.write_text(json.dumps([{"uuid": SEED_UUID, "email": "a@example.com", "custom": {"age": 3}}]))
    command = [
        sys.executable,
        "-m",
        "airflow_provider_chartmogul.testing.server",
        "--port",
        "0",
        "--api-key",
        "sk_cli",
        "--read-only-key",
        "ro_cli",
        "--seed",
        str(seed),
        "--rate-limit",
        "1000",
        "--faults",
        "429=0,drop=0",
        "--retry-after",
        "1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        assert selector.select(timeout=20), "no listening line within 20 s"
        line = process.stdout.readline()  # type: ignore[union-attr]
        prefix = "ChartMogul-compatible server listening on "
        assert line.startswith(prefix), line
        base = line[len(prefix) :].strip()
        assert base.startswith("http://127.0.0.1:")
        assert requests.get(f"{base}/v1/ping", auth=("sk_cli", "")).json() == {"data": "pong!"}
        attributes = requests.get(f"{base}/v1/customers/{SEED_UUID}/attributes", auth=("ro_cli", "")).json()
        assert attributes["custom"] == {"age": 3}
        assert (
            requests.post(
                f"{base}/v1/customers/{SEED_UUID}/attributes/custom", auth=("ro_cli", "")
            ).status_code
            == 403
        )
        assert requests.get(f"{base}/_testing/stats").json()["total"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        rest, errors = process.communicate(timeout=5)
        assert rest == "" and errors == ""  # exactly one stdout line, no access log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_help_lists_every_flag_and_warns_of_nothing() -> None:
    command = [sys.executable, "-W", "error", "-m", "airflow_provider_chartmogul.testing.server", "--help"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: python -m airflow_provider_chartmogul.testing.server")
    for flag in (
        "--host",
        "--port",
        "--api-key",
        "--read-only-key",
        "--seed",
        "--latency",
        "--rate-limit",
        "--retry-after",
        "--max-parallel",
        "--faults",
        "--fault-seed",
        "--slow-seconds",
        "--type-conflict",
        "--delete-status",
        "--no-record",
        "--quiet",
        "--verbose",
    ):
        assert flag in done.stdout, flag


def test_cli_seed_as_json_lines(tmp_path: Path) -> None:
    seed = tmp_path / "customers.jsonl"
    seed.write_text(
        json.dumps({"uuid": SEED_UUID, "custom": {"age": 3}})
        + "\n\n"
        + json.dumps({"external_id": "x2"})
        + "\n"
    )
    with ServerProcess(api_key="sk_cli", seed_file=seed) as process:
        custom = process.custom_attributes()
        assert list(custom.values()) == [{"age": 3}, {}] and SEED_UUID in custom
