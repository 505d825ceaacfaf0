# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test lint dev bench soak clean-data env-example

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU build: any other spec pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Crawl the demo site (or START_URLS) and ingest it through Dagster, end to end.
run: venv
	$(BIN)/rag run

## Lint, then the whole test suite (unit, in-process Dagster, real daemon end to end).
test: venv lint
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

## The Dagster UI on http://127.0.0.1:3000 with the sensor on and a warm embedding model.
dev: venv
	$(BIN)/rag dev

env-example: venv
	$(BIN)/rag env-example > env.example

## Benchmarks (bench/README.md): the platform against a plain script, streaming against
## batch, memory and scale. Writes bench/RESULTS.md and bench/overlap.png; takes a while.
## `make bench N=100` for a smaller site, `make bench SCALE=1` adds the N=5000 run (P5).
N ?= 500
SCALE ?= 0
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: venv $(BENCH_STAMP)
	$(BIN)/python -m bench --n $(N) $(if $(filter 1 true yes,$(SCALE)),--scale,)

## Fault-injection soak test (tests/test_soak.py: SIGKILLs, 503 bursts, a held DuckDB file,
## then one clean run must equal a clean run) with more seeds than `make test` runs.
SEEDS ?= 0,1,2,3,4

soak: venv
	SOAK_SEEDS=$(SEEDS) $(BIN)/python -m pytest -q -s tests/test_soak.py

## Remove everything ingested (item files, DuckDB, the Dagster instance, logs).
clean-data:
	rm -rf data/raw data/rag.duckdb data/rag.duckdb.wal data/dagster_home data/crawl data/logs
