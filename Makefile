# One entry point for people and CI alike. `make demo` and `make test` install what they need.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint typecheck unit bench clean

bootstrap:
	@bash deploy/dev/bootstrap.sh $(VENV)

demo: bootstrap
	$(BIN)/gatescan demo

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

unit: bootstrap
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

bench: bootstrap
	$(BIN)/python bench/decode_bench.py
	$(BIN)/python bench/journal_bench.py
	$(BIN)/python bench/agent_bench.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache
