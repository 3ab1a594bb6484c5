# tradeflow — the two set-up commands: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Keep Prefect's database, GX and analytics local to the checkout and quiet.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_ALLOW_EPHEMERAL_MODE ?= true
export PREFECT_LOGGING_EXTRA_LOGGERS ?= tradeflow
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export TQDM_DISABLE ?= 1

.PHONY: venv run test lint typecheck imports serve bench clean

venv: $(STAMP)

# torch first: with torch 2.13.0 (CPU) already present, nothing later pulls CUDA wheels.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (tradeflow needs Python >= 3.11; set PYTHON=...)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Prefect's first start creates its SQLite database; on a fresh machine that can outlast the
# temporary server's 20 s start-up timeout, so migrate it up front.
.prefect/.migrated: $(STAMP)
	mkdir -p .prefect
	$(VENV)/bin/prefect --no-prompt server database upgrade -y >/dev/null
	touch $@

run: $(STAMP) .prefect/.migrated
	$(PY) -m flows.train_spy

test: $(STAMP) .prefect/.migrated
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

imports:
	$(VENV)/bin/lint-imports

serve: $(STAMP) .prefect/.migrated
	$(PY) deployments/serve.py

bench: $(STAMP)
	$(PY) benchmarks/bench_gate.py

clean:
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache
