# ck-mlperf-vision: two commands.
#   make demo   set everything up (.venv, ck, software detection, model + dataset packages),
#               then record the four demo runs with ck benchmark and print the results
#   make test   lint, type-check the TensorRT code, run the test suite
# Both are idempotent: nothing already installed is installed again.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ckvision-installed

.PHONY: demo test setup lint typecheck clean-ck-tmp help mutation

help:
	@echo "make demo   set up .venv + CK and run the recorded demo on EfficientNet-Lite0"
	@echo "make test   lint + type check + pytest (about 5 minutes on 2 cores)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if (3, 10) <= v[:2] <= (3, 11) else "ck 2.6.4 needs Python 3.10 or 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[export,sample,dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "tensorrt-stubs==10.13.0.35.1"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m ckvision demo

lint: $(STAMP)
	$(BIN)/ruff check ckvision tests benchmarks soft script package

typecheck: $(STAMP)  # also run by the test suite (tests/test_typecheck.py)
	$(BIN)/python tests/test_typecheck.py

test: lint
	$(BIN)/python -m pytest -q

# Mutation testing of the harness, the scorer and the settings (scope and tests: [tool.mutmut]
# in pyproject.toml). Not part of `make test`: about an hour on 2 busy cores (the LoadGen-driven
# sut/run/ledger mutants are slow; narrow only_mutate for a quick look).
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results

clean-ck-tmp:
	rm -rf program/*/tmp
