# One entry point for people and CI alike. `make demo` and `make test` install what they need.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint typecheck unit faults bench pi-constraints clean

bootstrap:
	@bash deploy/dev/bootstrap.sh $(VENV)

demo: bootstrap
	$(BIN)/gatescan demo

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

# The default suite: everything but the long fault scenarios (a few minutes), on PYTEST_WORKERS
# processes (pytest-xdist; every test starts its own brokers and servers on free ports, so they
# run side by side). PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 2
unit: bootstrap
	$(BIN)/pytest -q -m "not slow" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck unit

# The long fault-injection scenarios of docs/reliability.md (real Mosquitto, agent and collector
# processes); prints the figures table at the end and keeps it in .artifacts/reliability/. Two
# at a time (FAULT_WORKERS, pytest-xdist; each starts its own broker on a free port): most of a
# scenario is waiting out its fault, and its figures came out as alone (measured: 245 s for the
# nine, 391 s one after the other). FAULT_WORKERS=0 runs them one by one, in this process.
FAULT_WORKERS ?= 2
faults: bootstrap
	$(BIN)/pytest -q -m slow tests/scenarios -n $(FAULT_WORKERS) $(PYTEST_ARGS)

# Every benchmark (bench/run_all.py): one table with the goals, also written into
# docs/benchmarks.md. BENCH_ARGS=--quick for a smoke run, BENCH_ARGS=--only=decode for one area.
# Fails when the run is not green (the table is written all the same): exit 1 if a benchmark
# failed, 3 if a goal was missed (stderr lists which). A --quick run fails only on a missed
# correctness check (events lost), not on a performance goal its tiny workloads cannot meet.
BENCH_ARGS ?=
bench: bootstrap
	$(BIN)/python -m bench.run_all --write docs/benchmarks.md $(BENCH_ARGS)

# Do deploy/pi/constraints.txt resolve to wheels for a gate (64-bit Raspberry Pi OS Trixie,
# Python 3.13)? Asks PyPI, so it is not part of `make test`; its latest result is in
# docs/operations.md ("The constraints").
pi-constraints: bootstrap
	$(BIN)/pytest -q -s -m slow tests/server/provision/test_pi_constraints.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache
