# beatedit — two commands do all the set-up: `make pipeline` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Telemetry off for every tool (each otherwise calls home on every run).
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
# Prefect's local state stays inside the project; the venv's tools come first on PATH (dvc runs `python -m flows.*`).
export PREFECT_HOME := $(CURDIR)/.prefect
export PATH := $(BIN):$(PATH)

.PHONY: venv pipeline test repro bench mlflow-ui clean-results help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP)  ## create .venv with the pinned dependencies

pipeline: venv  ## run the whole pipeline (dvc repro, stage by stage, under one MLflow pipeline run)
	$(BIN)/python -m flows.pipeline
	@echo
	@echo "Results:"
	@echo "  metrics:  dvc metrics show   (files in metrics/), plots: dvc plots show (writes dvc_plots/index.html)"
	@echo "  MLflow:   $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db   then open http://127.0.0.1:5000"
	@echo "  models:   registry names beatedit-reward / beatedit-policy, alias champion"

repro: venv  ## plain dvc repro (no pipeline parent run)
	$(BIN)/dvc repro

test: venv  ## run the test suite
	$(BIN)/python -m pytest

bench: venv  ## run the benchmarks (not tests); results go to bench/RESULTS.md
	$(BIN)/python -m bench.run_all

mlflow-ui: venv  ## browse runs and the model registry
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1
