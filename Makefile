# The two commands of the README: `make demo` and `make test`.
# Each creates .venv on first use; later runs reuse it (re-installing only when
# pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: install
	$(BIN)/castsearch run spaces/paper.yaml --data synthetic --study demo --trials 8 --epochs 2 --workers 2 --timeout 15m

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check castmodels search tests bench

clean-venv:
	rm -rf $(VENV)
