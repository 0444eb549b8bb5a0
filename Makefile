# fenliu — make setup | run | test | lint | bench | proto
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PACK   ?= rules/wushen
ADDRESS ?= 127.0.0.1:50051
WORKERS ?= 2
STAMP  := $(VENV)/.fenliu-setup
PROTO_SRC := $(shell find proto -name '*.proto' 2>/dev/null)

# durable-rules 2.0.28 calls PyEval_CallObject, removed in Python 3.13: map it to its replacement there.
PY_MINOR = $(shell $(PYTHON) -c 'import sys; print(sys.version_info[1])')
DR_CPPFLAGS = $(shell [ $(PY_MINOR) -ge 13 ] && echo '-DPyEval_CallObject=PyObject_CallObject')

.PHONY: setup run test test-fast lint typecheck bench proto clean

setup: $(STAMP) proto

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CPPFLAGS="$(DR_CPPFLAGS)" $(PY) -m pip install -q --no-binary durable-rules -e '.[dev]'
	touch $(STAMP)

proto: $(STAMP)
	$(PY) -m fenliu._protogen

run: setup
	$(VENV)/bin/fenliu serve --rules $(PACK) --address $(ADDRESS) --workers $(WORKERS)

test: setup
	$(VENV)/bin/fenliu check $(PACK)
	$(VENV)/bin/fenliu test $(PACK) --coverage --fail-uncovered
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m 'not slow'

lint: setup
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/ruff format --check service tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) service/fenliu/_proto .pytest_cache .mypy_cache .ruff_cache
