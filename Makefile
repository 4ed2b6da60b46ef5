# flamesight: `make run` tries it on the bundled example, `make test` runs the checks.
# Both set themselves up on a fresh machine: a .venv made with Python >= 3.11 and
# the package installed in it (re-installed whenever pyproject.toml changes).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# The first python3 on PATH that is 3.11 or newer (override with `make PYTHON=...`).
PYTHON ?= $(shell for candidate in python3 python3.13 python3.12 python3.11; do \
	command -v $$candidate >/dev/null 2>&1 && \
	$$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && \
	{ echo $$candidate; break; }; done)
EXAMPLE := src/flamesight/examples/log_report.speedscope.json
LINTED := src benchmarks tests

.PHONY: help run test lint bench proto chromium services

help:
	@echo "make run    serve the web app on http://127.0.0.1:8000/ with the bundled example"
	@echo "make test   lint (ruff) and run the test suite (pytest)"
	@echo "make lint   ruff check and ruff format --check"
	@echo "make bench  run the import, analysis, render, server and fleet benchmarks"
	@echo "make proto  regenerate the pprof protobuf bindings"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "flamesight needs Python 3.11 or newer: none found on PATH (try make PYTHON=/path/to/python3.11)" >&2; \
		exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: pip runs again only when pyproject.toml is newer than the last install.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

run: $(VENV)/.installed-test
	@echo "flamesight: open http://127.0.0.1:8000/ in a browser (Ctrl+C stops the server)"
	$(BIN)/flamesight serve --host 127.0.0.1 --port 8000 --open $(EXAMPLE)

# The browser tests drive Debian's Chromium; as root, install it when it is missing
# (otherwise those tests skip and say how to install it).
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) \
			|| echo "could not install chromium: the browser tests will skip"; \
	fi

# The server and fleet tests use PostgreSQL (127.0.0.1:5432, trust auth) and Redis
# (127.0.0.1:6379), as this machine kind provides them: start them when they are
# installed but not answering. Where they are missing, those tests skip and say so.
services:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && [ -d /etc/postgresql ]; then \
		pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start || true; \
	fi
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && command -v redis-server >/dev/null; then \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
			--dir /tmp --logfile /tmp/flamesight-test-redis.log || true; \
	fi

test: $(VENV)/.installed-test chromium services
	$(BIN)/ruff check $(LINTED)
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/import_bench.py
	$(BIN)/python benchmarks/analysis_bench.py
	$(BIN)/python benchmarks/render_bench.py
	$(BIN)/python benchmarks/server_bench.py
	$(BIN)/python benchmarks/fleet_bench.py

proto: $(VENV)/.installed-dev
	$(BIN)/python -m grpc_tools.protoc -Isrc/flamesight/formats/proto --python_out=src/flamesight/formats src/flamesight/formats/proto/pprof.proto
