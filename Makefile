# fastgate: `make run` starts the gateway on conf/fastgate.toml, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run lint test bench check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/fastgate run --config conf/fastgate.toml

check: install
	$(BIN)/fastgate check --config conf/fastgate.toml

# The import rules of docs/ARCHITECTURE.md (pyproject.toml [tool.importlinter]) and ruff.
lint: install
	$(BIN)/ruff check fastgate tests bench tools
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
