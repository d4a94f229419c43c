"""No deprecation warnings from the provider's own code: importing every module, and running every
example DAG with ``dag.test()``, on a fresh interpreter with warnings as errors for the provider.

A warning counts as the provider's when Python attributes it to a file of the package or of
``example_dags/`` (a deprecated Airflow name imported or called there); warnings Airflow raises
about its own internals are Airflow's to fix and are not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_chartmogul.testing.server import ChartMogulServer
from tests.conftest import connection_json

ROOT = Path(__file__).resolve().parents[1]


def _airflow_version() -> tuple[int, int]:
    import airflow

    major, minor = airflow.__version__.split(".")[:2]
    return int(major), int(minor)


# The promise is made for Airflow 3.3; older versions deprecate other names.
pytestmark = pytest.mark.skipif(_airflow_version() < (3, 3), reason="checked on Airflow 3.3+")

# Runs in a new interpreter, so every module is imported (and every warning raised) afresh.
# DeprecationWarning (AirflowProviderDeprecationWarning too) and FutureWarning (Airflow 3's
# DeprecatedImportWarning is one) are errors when attributed to the provider or its examples.
_SCRIPT = textwrap.dedent(
    """
    import json, pkgutil, importlib, sys, warnings
    ours = r"(airflow_provider_chartmogul|chartmogul_attributes_\\w+|unusual_prefix_\\w+)(\\.|$)"
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category, module=ours)

    import airflow_provider_chartmogul as package
    failures = []
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except (DeprecationWarning, PendingDeprecationWarning, FutureWarning) as exc:
            failures.append(f"import {module.name}: {type(exc).__name__}: {exc}")
        except ImportError:
            pass  # an optional extra that is not installed (e.g. the OpenLineage provider)

    if sys.argv[1:] == ["dags"]:
        from tests.example_dags.test_example_dags import EXAMPLE_DAGS, DagBag
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
            for dag_id in sorted(bag.dag_ids):
                bag.dags[dag_id].test()
        roots = (str(EXAMPLE_DAGS), package.__path__[0])
        for w in seen:
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) and (
                str(w.filename).startswith(roots)
            ):
                failures.append(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}")
        # DagBag records what parsing a DAG file warned of itself (and re-emits it as a UserWarning).
        failures.extend(w for found in bag.captured_warnings.values() for w in found)
        failures.extend(f"import error {k}: {v}" for k, v in bag.import_errors.items())
    print("FAILURES", json.dumps(failures))
    """
)


def _run(*args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=280,
        env=env or dict(os.environ),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("FAILURES ")]
    return json.loads(line.removeprefix("FAILURES "))


def test_importing_every_module_of_the_provider_warns_of_nothing_deprecated() -> None:
    assert _run() == []


@pytest.mark.db
def test_running_every_example_dag_warns_of_nothing_deprecated_in_the_provider_or_the_examples(
    airflow_db: None, chartmogul_server: ChartMogulServer, tmp_path: Path
) -> None:
    import sqlite3

    from tests.example_dags.test_example_dags import TABLE_DDL

    database = tmp_path / "example.db"
    with sqlite3.connect(database) as db:
        db.execute(TABLE_DDL)
        db.execute(
            "INSERT INTO customer_attributes VALUES ('acct-001', 'team', 3, 99.5, 1, '2025-01-01', 'x')"
        )
    db.close()
    chartmogul_server.add_customer(external_id="acct-001")
    env = {
        **os.environ,
        "AIRFLOW_CONN_CHARTMOGUL_DEFAULT": connection_json(chartmogul_server),
        "AIRFLOW_CONN_CHARTMOGUL_EXAMPLE_DB": json.dumps({"conn_type": "sqlite", "host": str(database)}),
    }
    # The runs need not succeed (most example customers are not on the server): every code path
    # they take is checked, failures included.
    assert _run("dags", env=env) == []
