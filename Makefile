# fastgate: `make run` starts the gateway on conf/fastgate.toml (with the secret of
# conf/local.secret, generated on first use), `make test` runs every test.
#
# Two builds of one editable install in .venv: `make install` (the default) compiles the hot
# modules with mypyc next to their sources (setup.py; pure Python when there is no C compiler or
# the compile fails), `make dev` removes the compiled modules so edits take effect without a
# rebuild. `make test`, `run`, `check` and `bench` use the build chosen last, the compiled one
# rebuilt first when a source changed. `fastgate version` says which one runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUILT := $(VENV)/.built
PURE := $(VENV)/.pure
SOURCES := $(shell find fastgate -name '*.py')
# [build-system] requires of pyproject.toml: installed into the venv, the build runs there
# (--no-build-isolation), so mypy sees the dependencies' types. setuptools stays below 81 here:
# httpsig (a test dependency) imports pkg_resources, which setuptools 81 removed.
BUILD_REQUIRES := 'setuptools>=68,<81' 'mypy>=2.4' 'mypy-extensions>=1.0'

.PHONY: install dev run lint test bench check clean

install: $(STAMP)
	@if [ -e $(PURE) ]; then rm -f $(PURE) $(BUILT); fi
	@$(MAKE) --no-print-directory $(BUILT)

dev: $(STAMP)
	touch $(PURE)
	FASTGATE_PURE=1 $(BIN)/python setup.py -q build_ext --inplace
	touch $(BUILT)
	@$(BIN)/fastgate version

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(BUILD_REQUIRES)
	FASTGATE_PURE=1 $(BIN)/pip install -q --no-build-isolation -e '.[test]'
	touch $(STAMP)

# Compiles only what changed since (mypyc rewrites only the C files whose code changed).
$(BUILT): $(STAMP) $(SOURCES)
	@if [ -e $(PURE) ]; then echo "pure Python build (make dev); make install compiles"; \
	else echo "compiling the hot modules with mypyc (minutes the first time)"; \
	$(BIN)/python setup.py -q build_ext --inplace; fi
	touch $(BUILT)
	@$(BIN)/fastgate version

# The Gateway API secret lives in a git-ignored file, generated (random) on the first run and
# printed with how to use it; the gateway gets it as FASTGATE_SECRET.
SECRET_FILE := conf/local.secret

run: $(BUILT)
	@secret=$$($(BIN)/fastgate secret --file $(SECRET_FILE)) && FASTGATE_SECRET="$$secret" exec $(BIN)/fastgate run --config conf/fastgate.toml

check: $(BUILT)
	$(BIN)/fastgate check --config conf/fastgate.toml

# The import rules of docs/ARCHITECTURE.md (pyproject.toml [tool.importlinter]) and ruff.
lint: $(BUILT)
	$(BIN)/ruff check fastgate tests bench tools setup.py
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q tests

bench: $(BUILT)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
	find fastgate -name '*.so' -delete
