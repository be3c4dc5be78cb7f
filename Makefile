# Every target bootstraps .venv itself, so a fresh clone needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench sim-sweep clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check raftq sim tests benchmarks
	$(BIN)/ruff format --check raftq sim tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_storage.py
	$(BIN)/python benchmarks/bench_raft.py
	$(BIN)/python benchmarks/bench_jobs.py
	$(BIN)/python benchmarks/bench_node.py

# Many random seeds of the deterministic simulator (SEEDS, START); a failure prints its replay.
SEEDS ?= 200
START ?= 1000
sim-sweep: $(STAMP)
	$(BIN)/python -m sim sweep --seeds $(SEEDS) --start $(START)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
