# scssq developer commands. Everything installs itself on a fresh Debian machine
# (root or sudo for apt-get; python3 with venv). Installs come from the hashed locks in
# requirements/ (docs/development.md says how they are made and upgraded).
VENV ?= .venv
PY := $(VENV)/bin/python
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)
# `make lock`'s tool: uv, this exact version, in its own venv.
UV_VERSION := 0.13.9
TOOLS ?= .venv-tools
UV := $(TOOLS)/bin/uv
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release pyproject.toml
# allows; `LOCK_ARGS='-P celery'` moves one package; plain `make lock` keeps the pins.
LOCK_ARGS ?=
COMPILE = $(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command 'make lock' $(LOCK_ARGS)
# `make test-latest`'s venv: the newest releases the ranges allow, ignoring the locks.
LATEST ?= .venv-latest

.PHONY: setup redis demo test lint format clean bench lock test-latest

setup: $(VENV)/.installed redis

# The exact versions of requirements/dev.lock (hash-checked), then scssq itself, editable
# (an editable install has no hash: its build backend comes from the lock instead).
$(VENV)/.installed: requirements/dev.lock pyproject.toml
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# redis-sentinel: the failover test (tests/faults/test_sentinel.py) runs three of them.
redis:
	@command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null || { \
		$(APT) update -qq && DEBIAN_FRONTEND=noninteractive \
		$(APT) install -y -qq redis-server redis-sentinel >/dev/null; }

# A real compile through a local fleet: private redis-server, 2 workers, local store.
demo: setup
	$(PY) scripts/demo.py

# Lint, types, then the whole test suite (real Redis, real workers, S3 API on loopback).
test: setup lint
	$(PY) -m pytest

# The benchmark suite (not tests): corpus, every benchmark, figures and a summary under
# bench/results/ (ignored). Slow (about an hour on 2 cores); see docs/benchmarks.md.
bench: setup $(VENV)/.bench-installed
	$(PY) -m bench.suite

# requirements/bench.lock is dev.lock plus matplotlib's tree, at dev.lock's versions.
$(VENV)/.bench-installed: requirements/bench.lock $(VENV)/.installed
	$(PY) -m pip install -q --require-hashes -r requirements/bench.lock
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerates the locks from pyproject.toml (and requirements/build.in): dev first, the
# others constrained to its versions so every lock agrees.
lock: $(TOOLS)/.uv-$(UV_VERSION)
	$(COMPILE) --extra dev pyproject.toml requirements/build.in -o requirements/dev.lock
	$(COMPILE) -c requirements/dev.lock --extra worker pyproject.toml -o requirements/worker.lock
	$(COMPILE) -c requirements/dev.lock pyproject.toml -o requirements/client.lock
	$(COMPILE) -c requirements/dev.lock requirements/build.in -o requirements/build.lock
	$(COMPILE) -c requirements/dev.lock --extra dev --extra bench \
		pyproject.toml requirements/build.in -o requirements/bench.lock

$(TOOLS)/.uv-$(UV_VERSION):
	[ -x $(TOOLS)/bin/python ] || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)
	touch $@

# The upgrade canary (not part of `make test` or CI): a fresh venv with the newest releases
# pyproject.toml's ranges allow, what differs from the lock, then lint, types and the suite.
test-latest: redis
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(LATEST)/bin/python -m pip install -q -e '.[dev]'
	$(LATEST)/bin/python scripts/lock_diff.py requirements/dev.lock
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/ruff format --check .
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .scssq out examples/site/out .pytest_cache .mypy_cache \
		.ruff_cache
