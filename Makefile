# The two commands of the README: `make serve` and `make test`. Both install what
# they need into .venv first (idempotent: reinstalls only when pyproject changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-server

.PHONY: serve test lint typecheck unit install bench web web-build web-test chromium

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# `make serve` installs what serving needs (the server extra), `make test` everything
# (the dev extra includes the server's).
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server]'
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $(SERVE_STAMP)

install: $(STAMP)

serve: $(SERVE_STAMP) web
	$(BIN)/deardiary serve $(ARGS)

# The web page (web/ -> services/web/static, committed): rebuilt only when its sources
# or lockfile changed since the recorded build (services/web/build_info.py).
web: $(SERVE_STAMP)
	@$(BIN)/python -m deardiary.services.web.build_info --check || $(MAKE) web-build

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

web-build: web/node_modules/.package-lock.json
	cd web && npm run --silent build -- --logLevel warn
	$(BIN)/python -m deardiary.services.web.build_info --write

web-test: web/node_modules/.package-lock.json
	cd web && npm run --silent typecheck && npm run --silent test

# The browser tests drive Debian's chromium; as root (CI) it is installed when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: the browser tests will be skipped"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python .ci/typecheck.py

# Test modules run in parallel processes (pytest-xdist), each module whole in one process
# (its servers and brokers are module fixtures): most tests wait on servers, not CPU.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile

unit: $(STAMP) web
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck web web-test chromium unit

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)
