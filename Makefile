# Every target creates the environment first when it is missing (.venv, pinned by constraints.txt).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
ENV := source infra/local/env.sh &&
# Pytest arguments; `make test` runs every tier (unit, spark, airflow, mlflow, postgres, slow).
PYTEST_ARGS ?=

.PHONY: help venv demo test test-fast bench lock airflow-ui mlflow-ui clean-var

help:
	@echo "make demo      create .venv, then run the nightly DAG end to end on the embedded default (./var)"
	@echo "make test      create .venv, then run the whole test suite (all tiers)"
	@echo "make test-fast unit tests only (no Spark, Airflow, MLflow, PostgreSQL)"
	@echo "make bench     run the benchmarks in bench/ (writes bench/results/*.json, docs/BENCHMARKS.md)"
	@echo "make airflow-ui / make mlflow-ui   open the UIs on 127.0.0.1"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch first: a CPU wheel of exactly this version lies on the build machines (see README).
	$(VENV)/bin/python -m pip install -q torch==2.13.0 -c constraints.txt
	$(VENV)/bin/python -m pip install -q -e '.[dev,prod]' -c constraints.txt
	$(VENV)/bin/python -m pip check
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(ENV) bash infra/local/demo.sh

test: venv
	# Exit code 5 ("no tests collected") fails the target like any other non-zero code.
	$(ENV) $(VENV)/bin/python -m pytest -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

test-fast: venv
	$(ENV) $(VENV)/bin/python -m pytest -p no:cacheprovider -m "not slow and not spark and not airflow and not mlflow and not postgres" $(PYTEST_ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(VENV)/bin/python -m pip install -q -e '.[dev,prod,bench]' -c constraints.txt
	@touch $@

# Every bench/*.py but the shared helpers (pinnerformer_public.py is pinnerformer_quality.py's public section;
# pinsage_seeds.py pools records that pinsage_quality.py wrote, given by name; bench/device_check.sh is the GPU
# session's run of the speed benches: docs/BENCHMARKS.md, "GPU runs").
HELPERS = bench/__init__.py bench/common.py bench/devices.py bench/pinnerformer_public.py bench/pinsage_seeds.py
BENCHES = $(filter-out $(HELPERS),$(wildcard bench/*.py))

bench: venv $(VENV)/.bench-installed
	$(ENV) for b in $(BENCHES); do echo "== $$b"; $(VENV)/bin/python $$b; done

# Re-resolve the full dependency set and rewrite constraints.txt (then commit it).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q torch==2.13.0 && .venv-lock/bin/python -m pip install -q -e '.[dev,prod]'
	.venv-lock/bin/python -m pip check
	(echo "# The full resolution verified on Python 3.11 / x86_64 (pip check clean). Regenerate with: make lock"; \
	 .venv-lock/bin/python -m pip freeze --exclude-editable | grep -vi '^pinterest-embeddings' | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/') > constraints.txt
	rm -rf .venv-lock

airflow-ui: venv
	$(ENV) AIRFLOW__CORE__EXECUTOR=LocalExecutor setsid airflow standalone

mlflow-ui: venv
	$(ENV) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 --port 5000 --workers 1 \
	  --backend-store-uri "$$MLFLOW_TRACKING_URI" --default-artifact-root "$$EMB_MLFLOW_ARTIFACTS"

clean-var:
	rm -rf var
