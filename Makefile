# Two commands do everything on a fresh machine with python3 (>= 3.11) and pip:
#   make run    trains + evaluates every method on the embedded sets, then writes a report
#   make test   runs the test suite
# Each creates .venv from the pinned, tested set (requirements*.lock) on first use;
# `make test` first runs the linter, the format check and the type checker (`make lint`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/benchmark

.PHONY: run test lint venv clean

$(VENV)/.installed: pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/relbench benchmark --workdir $(WORKDIR)

SOURCES := relbench tests experiments benchmarks examples

test: lint
	$(PY) -m pytest -q -n 2

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/pyrefly check

clean:
	rm -rf $(VENV) runs
