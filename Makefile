# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG15 := /usr/lib/postgresql/15/bin/postgres

.PHONY: demo test lint system-deps bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's PostgreSQL 15: the tests prove the oldest supported version with it (needs root for apt).
system-deps:
	@test -x $(PG15) || { echo "installing postgresql-15 (Debian) for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }
	@test -x $(PG15) || { echo "PostgreSQL 15 is missing: apt-get install postgresql-15"; exit 1; }

demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict otel_rag

test: lint system-deps
	$(BIN)/pytest

bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/log_event.py
	$(BIN)/python bench/http_overhead.py
	$(BIN)/python bench/http_profile.py
	$(BIN)/python bench/sink_throughput.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/query_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
