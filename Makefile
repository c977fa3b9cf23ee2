# fastgate: `make run` starts the gateway on conf/fastgate.toml (with the secret of
# conf/local.secret, generated on first use), `make test` runs every test.
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

# The Gateway API secret lives in a git-ignored file, generated (random) on the first run and
# printed with how to use it; the gateway gets it as FASTGATE_SECRET.
SECRET_FILE := conf/local.secret

run: install
	@secret=$$($(BIN)/fastgate secret --file $(SECRET_FILE)) && FASTGATE_SECRET="$$secret" exec $(BIN)/fastgate run --config conf/fastgate.toml

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
