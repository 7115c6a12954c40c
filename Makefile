# Every target creates (once) and reuses the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv run migrate test soak lint format openapi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: serve on the embedded SQLite default (EVSTORE_HOST, EVSTORE_PORT, EVSTORE_DATABASE_URL)
run: venv
	$(BIN)/evstore serve

migrate: venv
	$(BIN)/evstore migrate

## test: the whole suite, on SQLite and PostgreSQL
test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

## soak: the randomized workload for SOAK_SECONDS (default 600) per backend on a real server
SOAK_SECONDS ?= 600
soak: venv
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest -s tests/faults/soak_workload.py $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check app tests alembic
	$(BIN)/ruff format --check app tests alembic
	$(BIN)/mypy app
	$(BIN)/mypy tests
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix app tests alembic
	$(BIN)/ruff format app tests alembic

## openapi: regenerate openapi/openapi.json from the app
openapi: venv
	$(BIN)/evstore openapi --output openapi/openapi.json

BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
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
