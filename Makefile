# Two commands a new user needs: `make run` and `make test`. Everything else is optional.
# Only python3 (>= 3.11) and make are required: uv is bootstrapped into .tools/ and the
# locked environment is created in .venv/ on first use.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast lint typecheck check bench soak env

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE=1 (common in containers and CI) nothing is ever
# cached, so every process would compile Django and the SDKs from source at start.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

env: $(VENV)/.synced

## run: create the environment if needed, migrate, serve on $$HOST:$$PORT (127.0.0.1:3001)
run: env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py serve

# Four pytest workers (pytest-xdist), each test module on one worker (tests/scheduling.py): much
# of the suite waits on sockets and server processes, so workers beyond the 2 cores still help,
# one core busy: 3 workers 144-155 s, 4 workers 123-137 s (docs/benchmarks.md). The workers share
# one fork server and one rewrite cache, so each costs ~5 s of CPU. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 4
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadfile)

## test: create the environment if needed and run the whole suite
test: env
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

## test-fast: the suite without the tests that start server processes (marked slow)
test-fast: env
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: env
	$(VENV)/bin/mypy .

check: lint typecheck test

## bench: the relay benchmark (docs/benchmarks.md); adds the bench group (LiteLLM, uvicorn, py-spy)
bench: env
	$(UV) sync --frozen --quiet --compile-bytecode --group bench --group dev
	$(PY) -m bench $(BENCH_ARGS)

## soak: SOAK (default 30m) of moderate load, server resources judged flat (docs/benchmarks.md)
SOAK ?= 30m
soak: env
	$(UV) sync --frozen --quiet --compile-bytecode --group bench --group dev
	$(PY) -m bench --soak $(SOAK) $(BENCH_ARGS)
