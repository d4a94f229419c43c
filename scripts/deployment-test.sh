#!/usr/bin/env bash
# The real-deployment test (tests/deployment): Airflow 3.3's API server, scheduler and DAG processor
# with the LocalExecutor on a throw-away PostgreSQL cluster run the XCom and SQL example DAGs through
# `airflow dags trigger`, and the test checks the results through the REST API; then a push marked
# failed, one SIGKILLed half-way and one cut short by execution_timeout on every try, each resumed
# by Airflow's own retries (about 4 minutes in all here). Needs .venv
# (`make install`) and PostgreSQL's server binaries (Debian's `postgresql`; .ci/run installs it).
# Everything listens on 127.0.0.1 and is stopped at the end. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
make --quiet install
export CHARTMOGUL_DEPLOYMENT_TEST=1
.venv/bin/pytest -p no:cacheprovider -m deployment tests/deployment -v -rxXs "$@"
echo "Deployment test finished in $(( $(date +%s) - start )) s"
