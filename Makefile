# The two commands of the README: `make run` (offline demo) and `make test` (every check).
# Both build everything they need from nothing on a fresh Debian machine with Python 3.11.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint unit bench soak deps system-deps node-deps clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@# Debian's own python3.11 ships venv/ensurepip in a separate package.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3.11-venv >/dev/null && \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

deps: $(BIN)/.installed

# Debian packages the test suite drives for real: Chromium (Playwright's browser here) and
# PostgreSQL 15 (the tests start their own throw-away server from its binaries).
system-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium postgresql-15 >/dev/null; \
	fi
	@if ! command -v npm >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# The official Node SDK, for the interoperability test against the simulator.
node-deps: tests/interop/node_modules/.installed
tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
	touch $@

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: deps system-deps node-deps lint
	$(BIN)/pytest

run: deps
	$(BIN)/flask --app app db upgrade
	$(BIN)/gunicorn 'app:create_app()' --bind $(HOST):$(PORT) --workers 1 --threads 4 --no-control-socket --access-logfile -

bench: deps
	$(BIN)/python bench/client_bench.py
	$(BIN)/python bench/return_flow.py

# The 10-minute fault soak (README: The soak); its short form is part of `make test`.
soak: deps system-deps
	$(BIN)/python bench/soak.py --minutes 10 --out test-artifacts/soak

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache
