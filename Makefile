# Two commands: `make dev` runs the platform on the embedded default, `make test` passes the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ML_PLATFORM_HOME ?= $(CURDIR)/.ml_platform
DAGSTER_HOME := $(ML_PLATFORM_HOME)/dagster
HOST ?= 127.0.0.1
# Test processes: many tests wait on servers, runs and containers more than they compute, so one more than the
# cores keeps both busy (ml_platform_tests/conftest.py keeps a module on one worker, longest first). The Docker
# tests run alone afterwards: the stack picks its seven ports before minutes of image builds, and other tests'
# servers took them meanwhile; its services also started past their deadline with two other workers busy.
# (`|| [ $$? -eq 5 ]`: a PYTEST_ARGS that selects no Docker test is not a failure.)
TEST_WORKERS ?= 3
PORT ?= 3000
# The code locations `make dev` loads: the one of every spec in ML_PLATFORM_SPECS, or one per team folder
# (`ml-platform workspace > teams.yaml`, then `make dev WORKSPACE=teams.yaml`; docs/many-models.md).
WORKSPACE ?= workspace.yaml
export ML_PLATFORM_HOME

.PHONY: dev test lint docs bench test-ui browser stack-tools install install-test check backfill-benchmark up down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv installs the same resolution as pip from PyPI, in seconds instead of minutes (a fresh machine has no cache);
# compiled to bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, every process would compile its imports anew.
$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check 'uv>=0.9,<1'

$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test,lint]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

dev: install
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev -w $(WORKSPACE) -h $(HOST) -p $(PORT)

# The browser tests of the Dagster UI drive Debian's chromium (Playwright's own download does not work
# offline): installed when missing and apt-get can (as root or through sudo); else those tests skip, loudly.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo -n"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  || echo "!!! could not install Debian's chromium: the Dagster UI tests will be skipped"; \
	fi

# The stack tests drive Debian's docker-compose and validate the alert rules with promtool (Debian's
# prometheus): installed when missing and apt-get can; else those tests say what is missing.
stack-tools:
	@need=""; command -v docker-compose >/dev/null || need="$$need docker-compose"; \
	command -v promtool >/dev/null || need="$$need prometheus"; \
	if [ -n "$$need" ] && command -v apt-get >/dev/null; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo -n"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null \
	  || echo "!!! could not install$$need: the stack tests will fail or skip"; \
	fi

# The code's guards: formatting, lint and types (configured in pyproject.toml).
lint: install-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/, with --strict: a broken link or anchor, a page missing
# from the navigation or a generated page that fails is an error. `$(BIN)/mkdocs serve` serves it while editing.
docs: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# Everything, the browser tests of the Dagster UI and the production stack included; first the benchmark guard
# (each benchmark's quick form against benchmarks/baseline.json: fails on a figure more than 2x worse).
test: install-test browser stack-tools lint docs
	$(BIN)/python benchmarks/guard.py
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not docker" --durations=25 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m docker --durations=10 $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Every benchmark's full form (the heavy ones too: scale, the Docker stack, the suite on two commits); rewrites
# the full baseline in benchmarks/baseline.json on purpose.
bench: install-test
	$(BIN)/python benchmarks/guard.py --full --record

# Only the browser tests (screenshots of failures in test-artifacts/ui/).
test-ui: install-test browser
	$(BIN)/python -m pytest ml_platform_tests/ui $(PYTEST_ARGS)

# The production stack (deploy/): PostgreSQL, the Dagster webserver, daemon and code server with runs in
# containers, an MLflow tracking server, the endpoint and Prometheus. Secrets go to deploy/.env on first use.
up:
	$(PYTHON) deploy/stack.py up

down:
	$(PYTHON) deploy/stack.py down

check: install
	$(BIN)/ml-platform check

backfill-benchmark: install
	$(BIN)/python benchmarks/backfill.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts site
