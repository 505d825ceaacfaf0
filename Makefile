# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test test-unit lint dev bench bench-search browser postgres-docs soak clean-data \
	env-example test-servers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU build: any other spec pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,distributed]'
	touch $(STAMP)

venv: $(STAMP)

## Crawl the demo site (or START_URLS) and ingest it through Dagster, end to end.
run: venv
	$(BIN)/rag run

## Debian's Chromium and its WebDriver, for the search page's browser test (tests/test_serve.py).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update && apt-get install -y chromium chromium-driver; }

## The PostgreSQL 15 manual (Debian package), the second retrieval question set's site.
postgres-docs:
	@test -f /usr/share/doc/postgresql-doc-15/html/index.html || \
		{ apt-get update && apt-get install -y postgresql-doc-15; }

## Lint, then the whole test suite (unit, in-process Dagster, real daemon end to end).
test: venv lint browser test-servers
	$(BIN)/python -m pytest -q

## Only the unit tier (pure functions: no Dagster instance, no server, no subprocess); fast.
test-unit: venv
	$(BIN)/python -m pytest -q -m unit

# Servers the tests start themselves on free ports: Prometheus (Debian package) scrapes a
# real `rag run` in tests/test_ops_e2e.py; PostgreSQL (a throwaway initdb cluster) and Redis
# carry the distributed profile in tests/test_scale_out.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PG_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin))
test-servers:
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@{ command -v redis-server >/dev/null && \
		{ command -v initdb >/dev/null || test -x "$(PG_BIN)/initdb"; }; } || \
		{ $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
		--no-install-recommends postgresql redis-server; }

lint: venv
	$(BIN)/ruff check .

## The Dagster UI on http://127.0.0.1:3000 with the sensor on and a warm embedding model.
dev: venv
	$(BIN)/rag dev

env-example: venv
	$(BIN)/rag env-example > env.example
	$(BIN)/rag settings-table --readme README.md

## Benchmarks (bench/README.md): the platform against a plain script, streaming against
## batch, memory and scale. Writes bench/RESULTS.md and bench/overlap.png; takes a while.
## `make bench N=100` for a smaller site, `make bench SCALE=1` adds the N=5000 run (P5).
N ?= 500
SCALE ?= 0
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: venv $(BENCH_STAMP) postgres-docs
	$(BIN)/python -m bench --n $(N) $(if $(filter 1 true yes,$(SCALE)),--scale,)
	$(BIN)/python -m bench.search_latency --n 100000 --n 1000000 --write bench/RESULTS.md
	$(BIN)/python -m bench.retrieval --subset 4 --site demo --site postgres \
		--variant baseline --variant $(RETRIEVAL_VARIANT)

## Only the search latency part of make bench (SEARCH_N=100000 for the smaller size alone).
SEARCH_N ?= 100000 1000000
RETRIEVAL_VARIANT ?= header
bench-search: venv
	$(BIN)/python -m bench.search_latency $(foreach n,$(SEARCH_N),--n $(n)) --write bench/RESULTS.md

## Fault-injection soak test (tests/test_soak.py: SIGKILLs, 503 bursts, a held DuckDB file,
## then one clean run must equal a clean run) with more seeds than `make test` runs.
SEEDS ?= 0,1,2,3,4

soak: venv
	SOAK_SEEDS=$(SEEDS) $(BIN)/python -m pytest -q -s tests/test_soak.py

## Remove everything ingested (item files, DuckDB, the Dagster instance, logs).
clean-data:
	rm -rf data/raw data/rag.duckdb data/rag.duckdb.wal data/dagster_home data/crawl data/logs
