#!/usr/bin/env bash
# Run the unit tests against several Airflow versions, each in its own virtualenv made with uv.
#
# For each version V: `uv venv -p <python> .venv-airflow-V` (.venv-pyP-airflow-V with MATRIX_PYTHON), then
#   uv pip install "apache-airflow==V" apache-airflow-providers-sqlite \
#       apache-airflow-providers-common-sql -e ".[sql,openlineage]" --group test
# (uv picks provider versions that fit V: on 2.10 that means older common-sql/sqlite), then
#   pytest -m "not db and not browser and not postgres"
# Prints a summary table (version, install s, test s, passed/failed/errors/skipped) and exits
# non-zero if any version failed to install, had a failing or erroring test, or ran no test.
#
# Usage: scripts/test-matrix.sh [VERSION ...]          (default: $AIRFLOW_VERSIONS or the list below)
#   MATRIX_PYTHON=3.12          interpreter for the venvs (default 3.11): the machine's
#                               /root/.pyenv/versions/3.12*/bin/python, else `uv python find 3.12`;
#                               none found fails with a message (uv never downloads one)
#   MATRIX_MARKERS='...'        pytest -m expression (default: not db and not browser and not postgres)
#   MATRIX_REUSE=1              keep existing .venv-airflow-V instead of recreating them
#   PYTEST_ARGS='-x -q'         extra pytest arguments
# Logs and JUnit files: .artifacts/matrix/ (gitignored).
set -uo pipefail

cd "$(dirname "$0")/.."

DEFAULT_VERSIONS="2.10.5 2.11.2 3.1.8 3.3.2"
if [[ $# -gt 0 ]]; then
    VERSIONS=("$@")
else
    read -r -a VERSIONS <<<"${AIRFLOW_VERSIONS:-$DEFAULT_VERSIONS}"
fi
PYTHON_VERSION="${MATRIX_PYTHON:-3.11}"
VENV_PREFIX=".venv-"
[[ -n "${MATRIX_PYTHON:-}" ]] && VENV_PREFIX=".venv-py$PYTHON_VERSION-"
MARKERS="${MATRIX_MARKERS:-not db and not browser and not postgres}"
read -r -a EXTRA_PYTEST_ARGS <<<"${PYTEST_ARGS:-}"
OUT=.artifacts/matrix
mkdir -p "$OUT"

if command -v uv >/dev/null 2>&1; then
    UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
    UV=(python3 -m uv)
else
    echo "test-matrix: uv not found (pip install uv)" >&2
    exit 2
fi
export UV_PYTHON_DOWNLOADS=never  # no interpreter downloads: only package registries are reachable

# The interpreter: one the machine has (pyenv's builds here), else one uv finds on the machine.
PYTHON_BIN=""
for candidate in /root/.pyenv/versions/"$PYTHON_VERSION"/bin/python /root/.pyenv/versions/"$PYTHON_VERSION".*/bin/python; do
    if [[ -x "$candidate" ]]; then
        PYTHON_BIN="$candidate"
        break
    fi
done
if [[ -z "$PYTHON_BIN" ]]; then
    PYTHON_BIN=$("${UV[@]}" python find --no-project "$PYTHON_VERSION" 2>/dev/null || true)
fi
if [[ -z "$PYTHON_BIN" ]]; then
    echo "test-matrix: Python $PYTHON_VERSION is not on this machine (not under /root/.pyenv/versions," >&2
    echo "  and 'uv python find $PYTHON_VERSION' finds none); install it from the system's packages," >&2
    echo "  uv does not download interpreters here. Failing." >&2
    exit 3
fi
echo "test-matrix: Python $PYTHON_VERSION is $PYTHON_BIN ($("$PYTHON_BIN" -V 2>&1))"

# Counts from a JUnit XML file: "tests failures errors skipped" (or nothing if unreadable).
junit_counts() {
    python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(total["tests"], total["failures"], total["errors"], total["skipped"])
PY
}

# Seconds between two $EPOCHREALTIME readings, one decimal (no bc needed).
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

rows=()
overall=0
matrix_start=$(date +%s)

for version in "${VERSIONS[@]}"; do
    venv="${VENV_PREFIX}airflow-$version"
    leg="${VENV_PREFIX#.venv-}airflow-$version"
    install_log="$OUT/$leg-install.log"
    test_log="$OUT/$leg-pytest.log"
    junit="$OUT/$leg-junit.xml"
    rm -f "$junit"
    echo "=== Airflow $version: installing into $venv"

    t0=$EPOCHREALTIME
    {
        if [[ "${MATRIX_REUSE:-}" == 1 && -x "$venv/bin/python" ]]; then
            echo "reusing $venv"
        else
            "${UV[@]}" venv --clear --quiet -p "$PYTHON_BIN" "$venv"
        fi &&
            "${UV[@]}" pip install -p "$venv/bin/python" \
                "apache-airflow==$version" \
                apache-airflow-providers-sqlite \
                apache-airflow-providers-common-sql \
                -e ".[sql,openlineage]" --group test
    } >"$install_log" 2>&1
    install_rc=$?
    t1=$EPOCHREALTIME
    install_s=$(elapsed "$t0" "$t1")

    if [[ $install_rc -ne 0 ]]; then
        echo "!!! install failed for Airflow $version (exit $install_rc); last lines of $install_log:"
        tail -n 25 "$install_log"
        rows+=("$version|$install_s|-|-|-|-|-|INSTALL FAILED")
        overall=1
        continue
    fi
    installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))' 2>/dev/null)
    echo "    installed apache-airflow $installed in ${install_s} s; running pytest -m \"$MARKERS\""

    # A clean Airflow environment: tests/conftest.py sets its own AIRFLOW_HOME and options.
    t0=$EPOCHREALTIME
    env -u AIRFLOW_HOME -u AIRFLOW__CORE__DAGS_FOLDER -u AIRFLOW__CORE__LOAD_EXAMPLES \
        "$venv/bin/python" -m pytest -m "$MARKERS" -p no:cacheprovider -n "${TEST_WORKERS:-3}" \
        --junitxml="$junit" -o junit_family=xunit2 "${EXTRA_PYTEST_ARGS[@]}" >"$test_log" 2>&1
    test_rc=$?
    t1=$EPOCHREALTIME
    test_s=$(elapsed "$t0" "$t1")

    read -r tests failures errors skipped <<<"$(junit_counts "$junit")"
    if [[ -z "${tests:-}" ]]; then
        tests=0 failures=- errors=- skipped=-
    fi
    passed=$((tests - ${failures/-/0} - ${errors/-/0} - ${skipped/-/0}))
    case $test_rc in
        0) result=ok ;;
        5) result="NO TESTS RAN" ;;
        *) result="FAILED (pytest exit $test_rc)" ;;
    esac
    if [[ $test_rc -ne 0 ]]; then
        overall=1
        echo "!!! Airflow $version: $result; last lines of $test_log:"
        tail -n 40 "$test_log"
    else
        tail -n 1 "$test_log"
    fi
    rows+=("$version|$install_s|$test_s|$passed|$failures|$errors|$skipped|$result")
done

total_s=$(($(date +%s) - matrix_start))
{
    echo
    echo "Airflow test matrix (python $PYTHON_VERSION, pytest -m \"$MARKERS\"), total ${total_s} s"
    printf '%-10s %10s %8s %7s %7s %7s %8s  %s\n' airflow install_s test_s passed failed errors skipped result
    for row in "${rows[@]}"; do
        IFS='|' read -r v i t p f e s r <<<"$row"
        printf '%-10s %10s %8s %7s %7s %7s %8s  %s\n' "$v" "$i" "$t" "$p" "$f" "$e" "$s" "$r"
    done
} | tee "$OUT/${VENV_PREFIX#.venv-}summary.txt"

exit $overall
