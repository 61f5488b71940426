# The two commands of the README: `make demo` and `make test`.
# Each creates .venv on first use; later runs reuse it (re-installing only when
# pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

# The demo space (spaces/demo.yaml): the paper's six presets, then networks the sampler draws,
# each trained once for two epochs at 16 px, within a three-minute budget.
demo: install
	$(BIN)/castsearch run spaces/demo.yaml --data synthetic --workers 2

test: install
	$(BIN)/python -m pytest -q

# The tests marked slow too: the real-data test, the latency bench scripts end to end, a
# two-node Ray cluster and two drivers on PostgreSQL (about 3 minutes more). CI runs them.
test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check castmodels search tests bench

# The real-data benchmarks of BENCHMARKS.md (about 3.5 hours on 2 cores): first the slow
# tests that train on ../shared/datasets, then each script; outputs land in bench/out/.
bench: install
	$(BIN)/python -m pytest -q -m slow
	mkdir -p bench/out
	$(BIN)/python bench/paper_table.py --epochs 5 --seeds 2 --jobs 2 --rounds 2 > bench/out/paper_table.md
	$(BIN)/python bench/recipe_choice.py --epochs 10 --seeds 2 --jobs 2 --val-fraction 0.2 > bench/out/recipe_choice.md
	$(BIN)/python bench/paper_table.py --epochs 10 --seeds 3 --jobs 2 --rounds 2 --recipes paper default --groups preset --val-fraction 0.2 > bench/out/paper_table_recipes.md
	$(BIN)/python bench/search_vs_random.py --minutes 10 --workers 2 --epochs 5 > bench/out/search_vs_random.md
	$(BIN)/python bench/latency.py --study svr-default svr-random --front 4 > bench/out/latency.md
	$(BIN)/python bench/train_throughput.py --repeats 3 > bench/out/train_throughput.md
	$(BIN)/python bench/space_near_presets.py --seeds 555 556 557 558 > bench/out/space_near_presets.md

clean-venv:
	rm -rf $(VENV)
