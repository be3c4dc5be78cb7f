# Every target bootstraps .venv itself, so a fresh clone needs only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench sim-sweep mutants clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Two workers, each running whole files (their module fixtures and clusters stay in one process).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check raftq sim tests benchmarks scripts examples
	$(BIN)/ruff format --check raftq sim tests benchmarks scripts examples
	$(BIN)/mypy

# Three local nodes, the leader killed with SIGKILL mid-run, a report; under a minute.
demo: $(STAMP)
	$(BIN)/raftq demo

# The end-to-end suite as one table (docs/performance.md). Component benchmarks run alone:
# $(BIN)/python benchmarks/bench_storage.py (also bench_raft.py, bench_jobs.py).
bench: $(STAMP)
	$(BIN)/raftq bench

# Many random seeds of the deterministic simulator (SEEDS, START), JOBS processes at once
# (default: the cores); each failure prints its replay command, progress the time left, the
# end seeds per minute, the fault coverage and the slowest seeds; RESULTS=FILE appends each
# seed's report to FILE as it finishes; FORCE="KIND ..." turns fault kinds on in every seed.
# 10,000 seeds: make sim-sweep SEEDS=10000
# RESULTS=sweep.jsonl (docs/simulator.md, "Speed").
SEEDS ?= 200
START ?= 1000
JOBS ?=
RESULTS ?=
FORCE ?=
sim-sweep: $(STAMP)
	$(BIN)/python -m sim sweep --seeds $(SEEDS) --start $(START) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(RESULTS),--results $(RESULTS)) $(foreach kind,$(FORCE),--force $(kind))

# The mutation harness (docs/simulator.md): each planted bug in tests/mutants/ against its
# unit tests and up to MUTANT_SEEDS simulator seeds; MUTANTS="a b" runs only those.
MUTANTS ?=
MUTANT_SEEDS ?= 200
mutants: $(STAMP)
	$(BIN)/python -m sim.mutants $(MUTANTS) --seeds $(MUTANT_SEEDS) $(if $(JOBS),--jobs $(JOBS))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
