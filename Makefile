# dealsync: `make run` starts the local world with demo data; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
SAM_VENV  := .venv-sam
PY        := $(VENV)/bin/python
SAM       := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
STATE_DIR ?= .state
ARGS ?=
# SAM needs a working python3.13 first on PATH to build without Docker; its own venv provides one.
SAM_ENV   := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1
LINT_PATHS := $(wildcard layers functions local cli tests bench scripts)
TYPED_PATHS := $(wildcard layers/common/dealsync functions local cli tests scripts)

.PHONY: help install run test lint typecheck secrets validate build smoke pytest bench soak clean

help:
	@echo "make run    start the local world (emulators, moto, local runtime) with demo data"
	@echo "make test   install everything, then lint, type-check, validate, build and run all tests"

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt pyproject.toml
	rm -rf $(VENV)
	"$$(scripts/python313.sh)" -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(SAM_VENV)/.installed:
	rm -rf $(SAM_VENV)
	"$$(scripts/python313.sh)" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet "aws-sam-cli==$(SAM_CLI_VERSION)"
	touch $@

install: $(VENV)/.installed $(SAM_VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/dealsync local up --state-dir $(STATE_DIR) --seed demo $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINT_PATHS)

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy $(TYPED_PATHS)

# No secret in the repository's files (tracked, or new and not ignored) beyond the audited .secrets.baseline.
secrets: $(VENV)/.installed
	$(PY) -m tests.security.secret_scan

validate: install
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint

build: install
	$(SAM_ENV) $(SAM) build --parallel

# The built artifact, not the source tree: import the built layer and parse an event with it.
smoke: build
	$(PY) scripts/smoke_built_artifact.py

# Each folder with a local world of its own (sync, onboarding, pipelines, health, mappings, reconcile) runs as its
# own pytest session: a process holds one world at a time (the handlers' environment and moto's state are per process).
pytest: $(VENV)/.installed
	$(VENV)/bin/pytest -n 2 --dist loadfile --ignore=tests/sync --ignore=tests/onboarding --ignore=tests/pipelines --ignore=tests/health --ignore=tests/mappings \
		--ignore=tests/reconcile --ignore=tests/soak --ignore=tests/budgets --ignore=tests/hostile
	$(VENV)/bin/pytest -n 2 --dist loadfile tests/sync
	$(VENV)/bin/pytest -n 2 --dist loadfile tests/onboarding
	$(VENV)/bin/pytest tests/pipelines
	$(VENV)/bin/pytest tests/health
	$(VENV)/bin/pytest tests/mappings
	$(VENV)/bin/pytest tests/reconcile
	$(VENV)/bin/pytest tests/soak
	$(VENV)/bin/pytest tests/budgets
	$(VENV)/bin/pytest -n 2 --dist loadfile tests/hostile

test: lint typecheck secrets validate smoke pytest

# Every benchmark beside the naive way, one table (docs/performance.md); the cold start reads the built artifact.
# Small sizes: make bench ARGS=--quick
bench: build
	$(PY) -m bench.run $(ARGS)

# The reliability soak (issue 9): three seeds at 2,000 operations each, a table per seed; fails on a broken
# invariant. A short fixed-seed version runs in `make test` (tests/soak).
SOAK_SEEDS ?= 1 2 3
SOAK_OPERATIONS ?= 2000
soak: $(VENV)/.installed
	@status=0; for seed in $(SOAK_SEEDS); do \
		$(PY) -m dealsync_local.soak --seed $$seed --operations $(SOAK_OPERATIONS) || status=1; \
	done; exit $$status

clean:
	rm -rf .aws-sam $(STATE_DIR) .pytest_cache .mypy_cache .ruff_cache
