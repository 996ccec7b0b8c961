# batchery: `make dev` runs everything locally; `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: dev test lint typecheck pytest services tools install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/ensure-services.sh

tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (checks docker-compose.yml; no engine needed)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null; }

dev: install
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || bash scripts/ensure-services.sh
	$(BIN)/batchery dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install services tools
	$(BIN)/pytest

test: install services tools lint typecheck pytest

bench: install services
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
