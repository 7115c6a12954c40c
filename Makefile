# Every target creates (once) and reuses the virtual environment in .venv. Serving
# targets install the package alone (RUN_STAMP); test and lint targets add the
# development tools (DEV_STAMP). Each stamp is redone when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-stamp
DEV_STAMP := $(VENV)/.dev-stamp
PYTEST_ARGS ?=

.PHONY: venv run migrate test soak lint format openapi bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

## venv: the virtual environment with the development tools
venv: $(DEV_STAMP)

## run: serve on the embedded SQLite default (EVSTORE_HOST, EVSTORE_PORT, EVSTORE_DATABASE_URL)
run: $(RUN_STAMP)
	$(BIN)/evstore serve

migrate: $(RUN_STAMP)
	$(BIN)/evstore migrate

## test: the whole suite, on SQLite and PostgreSQL
test: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## soak: the randomized workload for SOAK_SECONDS (default 600) per backend on a real server
SOAK_SECONDS ?= 600
soak: $(DEV_STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest -s tests/faults/soak_workload.py $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check app tests alembic
	$(BIN)/ruff format --check app tests alembic
	$(BIN)/mypy app
	$(BIN)/mypy tests
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix app tests alembic
	$(BIN)/ruff format app tests alembic

## openapi: regenerate openapi/openapi.json from the app
openapi: $(RUN_STAMP)
	$(BIN)/evstore openapi --output openapi/openapi.json

BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=

$(BENCH_STAMP): $(DEV_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: the benchmark suite of issue 5 against real servers (needs wrk, pgbench and
## PostgreSQL on 127.0.0.1:5432); about 45 minutes; writes bench/RESULTS.md.
## Not part of `make test`. Shorter: make bench BENCH_ARGS="--soak-seconds 120"
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
