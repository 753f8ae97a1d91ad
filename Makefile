# mapwise: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# pip prints one harmless line per ignored local index location on these machines.
QUIET_PIP := grep -v "is ignored" || true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(BIN):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install demo test test-all bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(VENV)/bin/python -m pip install -q -c requirements/lock.txt -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@touch $(STAMP)

install: $(STAMP) ## create or refresh .venv with the locked versions

demo: $(STAMP) ## run the whole pipeline (dvc repro) on the bundled demo data
	dvc repro
	@mapwise report ingest reports/ingest.json
	@mapwise report evaluate reports/evaluate.json
	@echo "Canonical tables: data/canonical/ (quarantine: data/quarantine/); profiles: data/profiles/ and reports/profile.html"
	@echo "Models: models/; quality: reports/evaluate.json, reports/plots/; runs: mlflow ui --backend-store-uri sqlite:///mlflow.db"

test: $(STAMP) ## run the test suite (quick: skips slow and gpu tests)
	python -m pytest -q

test-all: $(STAMP) ## run every test, slow ones included
	python -m pytest -q -m "not gpu"

bench: $(STAMP) ## run the benchmarks (writes bench/results/*.json)
	python bench/ingest.py

clean: ## remove the venv and caches (keeps data and the DVC cache)
	rm -rf $(VENV) .pytest_cache
