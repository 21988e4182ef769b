# Everything a fresh machine needs, from only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
export RUNTIME__DLTHUB_TELEMETRY := false

.PHONY: demo test test-fast notebook bench install clean

# the demo needs the runtime and the fake API (Django REST framework) only; the tests add their
# own extras (pytest, PostgreSQL binaries, the notebook kernel) on top
$(DEMO_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[fake]'
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/cekura-sessions demo

# every test, end to end included, spread over the machine's cores (pytest-xdist); whole modules
# go to one worker, so a module-scoped fixture (the config-error CLI runs, the notebook's demo
# and kernel) is built once, not once per worker. Two workers a core, at most 8: much of a test's
# time is spent waiting (on a server, a signal's grace, another session's lock), which another
# worker's test fills (on 2 cores, the whole suite back to back: 188 s with 4 workers, 221 s
# with 2). The modules start longest first, in the order tests/support/schedule.py gives
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(8, 2 * len(os.sched_getaffinity(0))))")
# Bytecode is written (into the checkout's __pycache__, which git ignores) even where the
# environment says PYTHONDONTWRITEBYTECODE: without it every worker rewrites the asserts of every
# test module again and every process the tests start compiles the project again, about 4 s of
# CPU a worker
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# the fast tier only: row rules, retry classification, page shapes, transport, fake API and data,
# models on hand-written rows, the suite's own rules; no dlt, no pipeline or CLI run (e2e left out)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

# the notebook extras are installed once (again only after the base install is redone), so
# `make notebook` needs no network once it has run
$(NOTEBOOK_STAMP): $(DEMO_STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[notebook]'
	touch $(NOTEBOOK_STAMP)

notebook: $(NOTEBOOK_STAMP)
	test -n "$$CEKURA_DB" || test -f demo.duckdb || $(BIN)/cekura-sessions demo
	$(BIN)/jupyter lab notebooks/session_analysis.ipynb

# the night benchmark (every scale, the throttled nights), DuckDB against PostgreSQL at M, then the
# sessions' details at M
bench: $(STAMP)
	$(BIN)/python benchmarks/night.py
	$(BIN)/python benchmarks/engines.py
	$(BIN)/python benchmarks/details.py

clean:
	rm -rf $(VENV) demo.duckdb demo.duckdb.lock demo.duckdb.dlt .pytest_cache
