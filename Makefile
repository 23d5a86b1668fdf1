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

.PHONY: venv pipeline report test test-fast repro bench mlflow-ui clean-results help

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
	@echo "  metrics:  dvc metrics show --md   (files in metrics/; dvc metrics diff: what changed), plots: dvc plots show (writes dvc_plots/index.html)"
	@echo "  MLflow:   $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db   then open http://127.0.0.1:5000"
	@echo "  models:   registry names beatedit-reward / beatedit-policy, alias champion"

report: venv  ## the final report (frozen test set, report.seeds, seeds x songs CIs): dvc repro of the report stages (~40 min; docs/rlhf.md)
	$(BIN)/dvc repro report
	@echo
	@echo "Report: metrics/report.json, plots/report/win_rates.png, artifacts/report/table.md"
	@cat $$($(BIN)/python -c "from beatedit.config import load_config; from beatedit.paths import StagePaths; print(StagePaths.from_config(load_config('params.yaml')).report_table)")

repro: venv  ## plain dvc repro of the pipeline up to evaluate (no pipeline parent run; the report stages are `make report`)
	$(BIN)/dvc repro evaluate

test: venv  ## run the whole test suite (unit, data, model, integration): what CI runs
	$(BIN)/python -m pytest

test-fast: venv  ## everything but the slow lane (tests/integration and tests marked slow): under 3 minutes
	$(BIN)/python -m pytest -m "not slow"

bench: venv  ## run the benchmarks (not tests); results go to bench/RESULTS.md
	$(BIN)/python -m bench.run_all

mlflow-ui: venv  ## browse runs and the model registry
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

# --- operations: Prefect server, scheduled deployments, workers (docs/operations.md) -------------------------------
PREFECT_PORT ?= 4200
PREFECT_POOL ?= beatedit-process
OPS_API := PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api}
.PHONY: prefect-server serve-deployments deploy-pool worker retrain-now evaluate-champion-now

prefect-server: venv  ## Prefect server + UI on loopback (http://127.0.0.1:$(PREFECT_PORT)); Ctrl-C stops it
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

serve-deployments: venv  ## serve the retrain (nightly) + evaluate-champion (weekly) deployments against the server
	$(OPS_API) $(BIN)/python -m flows.deployments serve

deploy-pool: venv  ## register both deployments on the process work pool $(PREFECT_POOL) (created if missing)
	$(OPS_API) $(BIN)/python -m flows.deployments deploy --pool $(PREFECT_POOL)

worker: venv  ## a process worker for $(PREFECT_POOL) (run one per machine; flows run in this checkout)
	$(OPS_API) $(BIN)/prefect worker start --pool $(PREFECT_POOL) --type process

retrain-now: venv  ## run the retrain flow now, in this process (feedback export, dvc repro, evaluate, promote)
	$(BIN)/python -m flows.deployments run retrain

evaluate-champion-now: venv  ## re-evaluate the champion now; fails on drift below the recorded figures
	$(BIN)/python -m flows.deployments run evaluate-champion
