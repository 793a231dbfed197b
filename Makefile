# scssq developer commands. Everything installs itself on a fresh Debian machine
# (root or sudo for apt-get; python3 with venv).
VENV ?= .venv
PY := $(VENV)/bin/python
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: setup redis demo test lint format clean bench

setup: $(VENV)/.installed redis

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

redis:
	@command -v redis-server >/dev/null || { $(APT) update -qq && \
		DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq redis-server >/dev/null; }

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

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .scssq out examples/site/out .pytest_cache .mypy_cache .ruff_cache
