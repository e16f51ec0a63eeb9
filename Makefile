# agentkeep's dev loop. `make help` lists the targets.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_VERSION = $(shell ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
# pytest-xdist workers (the fixtures give every worker its own databases); 0 = no xdist.
WORKERS ?= 2
# Whole-suite runs on one machine take turns (several checkouts, one PostgreSQL and a few
# cores: run at once they overrun each other's waits); TEST_LOCK= runs without waiting.
TEST_LOCK ?= /tmp/agentkeep-test-suite.lock
PYTEST_ARGS ?=
JUNIT ?= build/junit.xml
# What `make install` installs: the test tools and the integrations' frameworks the tests drive.
EXTRAS ?= test,openai-agents,langgraph,langchain,adk

.DEFAULT_GOAL := help
.PHONY: help install lock run test coverage postgres chromium lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install agentkeep with its pinned test dependencies and integration extras (versions locked by constraints.txt)

lock: ## Re-resolve every dependency (all extras) and rewrite constraints.txt
	$(BIN)/python scripts/lock.py

run: $(STAMP) ## Run the service on the embedded SQLite default (http://127.0.0.1:8080)
	@[ -n "$$AGENTKEEP_API_KEYS" ] || echo "hint: a request needs a key: $(BIN)/agentkeep keys create --tenant acme (or AGENTKEEP_API_KEYS=acme:dev-key make run)"
	@[ -n "$$AGENTKEEP_LLM_BASE_URL" ] || echo "hint: runs need an upstream: AGENTKEEP_LLM_BASE_URL=http://127.0.0.1:11434/v1 make run (any OpenAI-compatible chat-completions server)"
	$(BIN)/agentkeep serve

chromium: ## Install the distribution's Chromium for the dashboard's browser tests if it is missing
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Chromium for the dashboard's browser tests"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

postgres: ## Start the local PostgreSQL cluster if it is down, and wait for it
	@if ! pg_isready -q -h $(PG_HOST) -p $(PG_PORT); then \
	  echo "starting PostgreSQL $(PG_VERSION)"; \
	  pg_ctlcluster --skip-systemctl-redirect $(PG_VERSION) main start; \
	fi
	@for i in $$(seq 1 60); do pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && exit 0; sleep 1; done; \
	  echo "PostgreSQL is not accepting connections at $(PG_HOST):$(PG_PORT)"; exit 1

test: $(STAMP) postgres chromium ## Run the whole test suite (memory, SQLite and PostgreSQL)
	@mkdir -p $(dir $(JUNIT))
	$(if $(TEST_LOCK),flock $(TEST_LOCK)) $(BIN)/pytest $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS)) --junitxml=$(JUNIT) $(PYTEST_ARGS)

coverage: $(STAMP) postgres chromium ## The suite with line coverage of every process, service and workers too (build/coverage)
	rm -rf build/coverage && mkdir -p build/coverage
	status=0; export COVERAGE_FILE=$(CURDIR)/build/coverage/.coverage AGENTKEEP_TEST_START_TIMEOUT=180 \
	  PYTHONPATH=$(CURDIR)/tests/coverage_site$${PYTHONPATH:+:$$PYTHONPATH}; \
	$(BIN)/pytest $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS)) --cov --cov-report= $(PYTEST_ARGS) || status=$$?; \
	$(BIN)/coverage combine --quiet --append $(CURDIR)/build/coverage >/dev/null 2>&1; \
	$(BIN)/coverage report > build/coverage/report.txt; \
	$(BIN)/coverage html --quiet -d build/coverage/html; \
	grep -E '^(agentkeep/(runner|server/routes)/|TOTAL)' build/coverage/report.txt; exit $$status

lint: $(STAMP) ## ruff (check and format) and mypy --strict
	$(BIN)/ruff check agentkeep tests benchmarks scripts
	$(BIN)/ruff format --check agentkeep tests benchmarks scripts README.md
	$(BIN)/mypy agentkeep

bench: $(STAMP) ## Run the benchmarks (peers need: .venv/bin/pip install -e '.[bench]')
	$(BIN)/python -m benchmarks

clean: ## Remove build output and caches (keeps .venv)
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
