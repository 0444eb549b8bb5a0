# fenliu — make setup | run | test | lint | bench | proto
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PACK   ?= rules/wushen
ADDRESS ?= 127.0.0.1:50051
METRICS_ADDRESS ?= 127.0.0.1:9464
WORKERS ?= 2
# pytest processes of make test (pytest-xdist): the long tests (a million decisions, 200 reloads under
# load, the bench smoke run) run beside the rest instead of one after another.
TEST_PROCESSES ?= 2
STAMP  := $(VENV)/.fenliu-setup
PROTO_SRC := $(shell find proto -name '*.proto' 2>/dev/null)

# durable-rules 2.0.28 calls PyEval_CallObject, removed in Python 3.13: map it to its replacement there.
DR_CPPFLAGS = $(shell scripts/durable-cppflags.sh $(PYTHON))

.PHONY: setup run test test-fast lint typecheck bench bench-replay proto clean node-deps prometheus postgresql messages

PROTO_STAMP := service/fenliu/_proto/.generated

LOCALE := service/fenliu/locale
MO := $(LOCALE)/zh_CN/LC_MESSAGES/fenliu.mo

setup: $(STAMP) $(PROTO_STAMP) $(MO)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CPPFLAGS="$(DR_CPPFLAGS)" $(PY) -m pip install -q --no-binary durable-rules -e '.[dev]'
	touch $(STAMP)

# Generated code is generated (into service/fenliu/_proto, not committed), and only when the protos change.
$(PROTO_STAMP): $(PROTO_SRC) $(STAMP)
	$(PY) -m fenliu._protogen
	touch $(PROTO_STAMP)

# Messages in Chinese: the catalog (.po) is kept in the repository, compiled (.mo) by setup.
$(MO): $(LOCALE)/zh_CN/LC_MESSAGES/fenliu.po $(STAMP)
	$(VENV)/bin/pybabel compile --statistics -d $(LOCALE) -D fenliu -l zh_CN

# After changing messages in the code: new msgids enter the catalog with an empty msgstr to translate.
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k _ -k N_ --no-location --sort-output --no-wrap \
	  --project fenliu -o $(LOCALE)/fenliu.pot service/fenliu
	$(VENV)/bin/pybabel update -i $(LOCALE)/fenliu.pot -d $(LOCALE) -D fenliu -l zh_CN \
	  --no-wrap --ignore-obsolete --no-fuzzy-matching

proto:
	rm -f $(PROTO_STAMP)
	$(MAKE) --no-print-directory $(PROTO_STAMP)

# The Node client test (tests/node) calls the service from another language.
node-deps: tests/node/node_modules/.package-lock.json
tests/node/node_modules/.package-lock.json: tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

# Debian's prometheus and promtool, for the alert-rule tests and the real-Prometheus integration test.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || bash scripts/install-prometheus.sh

# Debian's postgresql server binaries, for the matter-store tests (each test session starts its own server).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || bash scripts/install-postgresql.sh

# The matter store of `make run`: an SQLite file, its queue and its hash key under $(STATE_DIR).
STATE_DIR ?= .fenliu-state
run: setup
	@mkdir -p $(STATE_DIR) && chmod 700 $(STATE_DIR)
	@test -s $(STATE_DIR)/hash.key || (umask 077 && head -c 32 /dev/urandom | base64 > $(STATE_DIR)/hash.key)
	$(VENV)/bin/fenliu serve --rules $(PACK) --address $(ADDRESS) --workers $(WORKERS) \
	  --metrics-address $(METRICS_ADDRESS) \
	  --store sqlite:///$(abspath $(STATE_DIR))/matters.db --store-key-file $(STATE_DIR)/hash.key

test: setup node-deps prometheus postgresql
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/fenliu verify $(PACK)
	$(VENV)/bin/fenliu fmt --check $(PACK)
	$(VENV)/bin/fenliu test $(PACK) --coverage --fail-uncovered
	$(VENV)/bin/fenliu lint $(PACK)
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist worksteal

test-fast: setup
	$(PY) -m pytest -q -m 'not slow'

LINT_PATHS := $(wildcard service tests bench tools)

lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: setup
	$(PY) bench/run.py

# The replay part alone (also in make bench): fenliu diff of two packs over REPLAY_COUNT generated complaints.
REPLAY_COUNT ?= 1000000
bench-replay: setup
	$(PY) -m bench.replay --count $(REPLAY_COUNT)

clean:
	rm -rf $(VENV) service/fenliu/_proto .pytest_cache .mypy_cache .ruff_cache
