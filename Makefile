# The two commands of the README: `make demo` and `make test`. Both create or refresh .venv from
# the committed lock file (uv.lock) first.
UV_VERSION := 0.13.8
PY ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PY) -m uv
endif
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck rules pytest services browser clean

setup:
	@$(PY) -m uv --version >/dev/null 2>&1 || command -v uv >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode --quiet

demo: setup
	$(BIN)/opsradar demo

services:
	@bash .ci/services.sh

browser:
	@bash .ci/browser.sh

lint: setup
	$(BIN)/ruff check opsradar collectors detectors alerting serving tests bench

typecheck: setup
	$(BIN)/mypy

rules: setup
	$(BIN)/opsradar rules check rules/
	$(BIN)/opsradar rules test

pytest: setup services browser
	$(BIN)/pytest

test: lint typecheck rules pytest

clean:
	rm -rf $(VENV) .opsradar .pytest_cache .mypy_cache .ruff_cache
