# Everything runs from a virtualenv at .venv, created with uv (Airflow installs in seconds with it).
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=

.PHONY: install test lint format demo benchmark clean

$(VENV)/.installed: pyproject.toml Makefile
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) venv --allow-existing --quiet -p 3.11 $(VENV)
	$(UV) pip install --quiet -p $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test,postgres,dev]"
	@touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The SQL example DAG end to end against the local ChartMogul-compatible server (see scripts/demo.py).
demo: install
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .demo .artifacts .pytest_cache .ruff_cache
