# One entry point. `make demo` and `make test` do all the set-up on a fresh machine
# (Python 3.11+, Java 17+, Maven): a .venv with the project, and the Kafka jars from Maven.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JARS   := var/cache/kafka-jars
JARS_STAMP := $(JARS)/.resolved

.PHONY: setup test test-docker lint demo bench loadtest fuzz clean help

help:
	@echo "make setup  - .venv with surplus[dev], Kafka jars from Maven (idempotent)"
	@echo "make demo   - the national network on one machine (surplus demo)"
	@echo "make test   - ruff, mypy and the whole pytest suite (real Kafka broker + chDB)"
	@echo "make test-docker - the tests that need a Docker engine (a real Grafana)"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - worker, agent and read-side (national scale) benchmarks, as ratios"
	@echo "make loadtest - the national load test (10,000 simulated DCs, 1 and 2 workers; ~40 min)"
	@echo "make fuzz   - a longer fuzz run of decode"

setup: $(STAMP) $(JARS_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(JARS_STAMP): deploy/kafka/pom.xml
	@command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka broker"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch the Kafka jars"; exit 1; }
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(JARS)
	@touch $(JARS_STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -v --durations=15 -m "not docker and not loadtest"

test-docker: setup
	$(BIN)/pytest -v -m docker

demo: setup
	$(BIN)/surplus demo

bench: setup
	$(BIN)/python bench/worker_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/read_bench.py

loadtest: setup
	$(BIN)/pytest -v -s -m loadtest tests/integration/test_loadtest.py

fuzz: setup
	$(BIN)/python tools/fuzz_decode.py --seconds 300

clean:
	rm -rf var/chdb var/kafka var/faust var/demo
