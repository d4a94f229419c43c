# Everything runs from a virtualenv at .venv, created with uv (Airflow installs in seconds with it).
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on the server, backoff or Airflow, not the CPU.
TEST_WORKERS ?= 3

.PHONY: install test lint format demo benchmark browser test-browser docs docs-images matrix clean

$(VENV)/.installed: pyproject.toml Makefile
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) venv --allow-existing --quiet -p 3.11 $(VENV)
	$(UV) pip install --quiet -p $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" \
		-e ".[sql,postgres,openlineage,redis]" --group test --group dev --group browser --group docs
	@touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy airflow_provider_chartmogul

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The SQL example DAG end to end against the local ChartMogul-compatible server (see scripts/demo.py).
demo: install
	$(BIN)/python scripts/demo.py

# The documentation site (Sphinx + MyST, docs/conf.py) into build/docs/html; warnings are errors.
# -E: every page is read afresh (a cached page would hide a link broken elsewhere).
docs: install
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs build/docs/html
	@echo "Documentation: build/docs/html/index.html"

# Debian's Chromium for the connection-form test (apt-get; root or sudo).
browser:
	bash scripts/install-browser.sh

test-browser: install browser
	CHARTMOGUL_REQUIRE_BROWSER=1 $(BIN)/pytest -m browser $(PYTEST_ARGS)

# Re-take the README's screenshots of the connection form.
docs-images: install browser
	CHARTMOGUL_REQUIRE_BROWSER=1 CHARTMOGUL_UPDATE_DOC_IMAGES=1 $(BIN)/pytest -m browser tests/browser

# The unit tests on every supported Airflow version, each in its own .venv-airflow-X.
matrix:
	bash scripts/test-matrix.sh $(AIRFLOW_VERSIONS)

benchmark: install
	$(BIN)/python benchmarks/run.py $(BENCHMARK_ARGS)

clean:
	rm -rf $(VENV) .demo .artifacts .pytest_cache .ruff_cache
