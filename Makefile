# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/redfleet: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: demo test lint bench
demo: $(BIN)/redfleet
	$(BIN)/redfleet demo

test: $(BIN)/redfleet
	scripts/system-deps
	$(BIN)/ruff check src tests benchmarks evaluation
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(BIN)/redfleet
	$(BIN)/ruff check src tests benchmarks evaluation
	$(BIN)/mypy

bench: $(BIN)/redfleet
	$(BIN)/python -m benchmarks
