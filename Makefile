# Two commands for a newcomer: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-sqlite test-postgres test-browser lint venv system-deps clean

# Debian/Ubuntu packages the project needs (only what is missing is installed; needs root or sudo).
system-deps:
	@bash scripts/system-deps.sh

$(BIN)/.installed: requirements.txt requirements-dev.txt | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# Sets up and runs the whole product on embedded defaults (SQLite, q2 ORM broker, emulators).
run: venv
	$(BIN)/python scripts/run.py

# ruff, then the house's import contracts (pyproject.toml [tool.importlinter]): a module importing upward fails.
# Then mypy (pyproject.toml [tool.mypy], django-stubs for Django 5.2): strict for the wire clients and core/.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test-sqlite: venv
	$(BIN)/python -m pytest -p no:cacheprovider

# The same suite on PostgreSQL, where concurrency and locking are real; skipped when none answers.
test-postgres: venv
	@if $(BIN)/python scripts/pg_ready.py "$(PG_TEST_URL)"; then \
		DATABASE_URL="$(PG_TEST_URL)" $(BIN)/python -m pytest -p no:cacheprovider; \
	else echo "PostgreSQL not reachable at $(PG_TEST_URL): PostgreSQL run skipped"; fi

# Just the browser tests (tests/browser, marker "browser"): Playwright driving /usr/bin/chromium; they are
# part of test-sqlite (the PostgreSQL pass skips them, and runs the short soak and the fuzzing once instead:
# tests/passes.py). Screenshots land in artifacts/screenshots/.
test-browser: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m browser tests/browser

test: lint test-sqlite test-postgres

clean:
	rm -rf $(VENV) var

# Long runs with their own targets (soak, fuzz, bench): one file each under mk/.
-include mk/*.mk
