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
.PHONY: help install demo serve up down status test test-all bench docs docs-serve clean

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
	@mapwise model list
	@echo "Models: models/trained, models/export; quality: reports/evaluate.json, reports/plots/; runs: mlflow ui --backend-store-uri sqlite:///mlflow.db"
	@echo "Serve the champion: make serve (then http://127.0.0.1:8000/docs)"

serve: $(STAMP) ## serve the champion model over HTTP (after make demo)
	mapwise serve

up: $(STAMP) ## start the local stack on 127.0.0.1: Prefect server + UI, served flows, file watcher, MLflow UI, model service
	@deploy/stack.sh up

down: ## stop exactly the processes `make up` started
	@deploy/stack.sh down

status: ## which processes of the local stack are running
	@deploy/stack.sh status

test: $(STAMP) ## run the test suite (quick: skips slow and gpu tests)
	python -m pytest -q

test-all: $(STAMP) ## run every test, slow ones included
	python -m pytest -q -m "not gpu"

bench: $(STAMP) ## run the benchmarks (writes bench/results/*.json; serve and orchestrate need make demo first, serve needs wrk)
	python bench/ingest.py
	python bench/train.py
	python bench/serve.py
	python bench/orchestrate.py

docs: $(STAMP) ## build the docs site into site/ (strict)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir site

docs-serve: $(STAMP) ## serve the docs on http://127.0.0.1:8001, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 mkdocs serve --strict --dev-addr 127.0.0.1:8001

clean: ## remove the venv and caches (keeps data and the DVC cache)
	rm -rf $(VENV) .pytest_cache
