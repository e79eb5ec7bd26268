# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG15 := /usr/lib/postgresql/15/bin/postgres
APT_PROGRAMS := $(PG15) /usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-alertmanager /usr/bin/amtool \
  /usr/bin/chromium /usr/bin/wrk
APT_PACKAGES := postgresql-15 prometheus prometheus-alertmanager chromium wrk
UI_STAMP := ui/node_modules/.installed

.PHONY: demo test check check-lowest docs lint system-deps stack-binaries ui bench mutation clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests run (needs root for apt): PostgreSQL 15 (the oldest supported version), Prometheus with
# promtool, Alertmanager with amtool, Chromium for the browser tests (driven by playwright-core; never a
# downloaded browser) and wrk (the HTTP load of the benchmarks and their regression guard).
system-deps:
	@for program in $(APT_PROGRAMS); do test -x $$program || missing=1; done; \
	if [ -n "$$missing" ]; then echo "installing $(APT_PACKAGES) (Debian) for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(APT_PACKAGES) >/dev/null; fi
	@for program in $(APT_PROGRAMS); do test -x $$program || { echo "$$program is missing: apt-get install $(APT_PACKAGES)"; exit 1; }; done

# Our Collector (ocb), Jaeger v2 and versitygw (the retention tests' S3), built from Go modules into .build/
# (minutes the first time, then reused).
stack-binaries:
	collector/build.sh >/dev/null
	tools/build-jaeger.sh >/dev/null
	tools/build-versitygw.sh >/dev/null

# The debug page (React + Vite + TypeScript): installed from the lock file, type-checked, unit-tested (Vitest) and
# built into otel_rag/web/static/, which the Python package serves.
$(UI_STAMP): ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	touch $(UI_STAMP)

ui: $(UI_STAMP)
	cd ui && npm run build && npm test

demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict otel_rag tests examples

# The inner loop: lint, types and the unit tests (no root, Go, network or server needed), in seconds.
check: lint
	HYPOTHESIS_PROFILE=check $(BIN)/pytest -m "not integration" -q

# The unit tests against the lowest OpenTelemetry releases pyproject.toml allows (tools/lowest-otel.txt), in their
# own virtualenv under .build/ (re-created when pyproject.toml or the pins change): the configurator builds on the
# SDK's own configuration functions, so both ends of the allowed range are tested.
LOWEST_VENV := .build/venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed
$(LOWEST_STAMP): pyproject.toml tools/lowest-otel.txt
	rm -rf $(LOWEST_VENV)
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/pip install -q -c tools/lowest-otel.txt -e '.[dev]'
	touch $(LOWEST_STAMP)

check-lowest: $(LOWEST_STAMP)
	HYPOTHESIS_PROFILE=check $(LOWEST_VENV)/bin/pytest -m "not integration" -q -p no:cacheprovider

# The tests, then the performance regression guard: the benchmarks' quick variants, failing only when a ratio falls
# below half its goal (bench/guard.py; about two minutes).
test: lint system-deps stack-binaries ui check-lowest
	$(BIN)/pytest
	$(BIN)/python -m bench.guard

# Every benchmark; each prints its figures against a baseline measured in the same run. Run as modules from the
# repository root, so that `bench.*` and `tests.support.*` import as they do under pytest.
# The verdict lines of the last run are collected at the end (and kept in .build/bench.log); docs/performance.md
# records them with the machine.
BENCHES := startup log_event http_overhead http_profile rag_overhead sink_throughput freshness query_latency \
  otlp_pipeline retention load
bench: $(STAMP) system-deps stack-binaries
	@mkdir -p .build
	@bash -o pipefail -c 'for name in $(BENCHES); do echo "== bench/$$name.py"; \
	  $(BIN)/python -m bench.$$name || exit 1; done 2>&1 | tee .build/bench.log'
	@echo; echo "== verdicts"; grep '^verdict' .build/bench.log

# The docs site (MkDocs, Material, mkdocstrings) into .build/site; `mkdocs serve` for live editing.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Mutation testing of the guarantee code (slow: not part of `make test`); scores and survivors in docs/testing.md.
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache ui/node_modules otel_rag/web/static mutants
