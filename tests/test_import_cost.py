"""Importing the node API stays light: a node file pays for the runtime only when it runs.

``from krabgraph.launch import Node`` is the first line of every node; what it may load is checked
by module name (deterministic), not by time. ``python -X importtime -c "from krabgraph.launch
import Node"`` measures the time (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "zmq", "yaml", "networkx", "jsonschema", "mujoco", "onnxruntime", "torch")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_node_api_loads_none_of_the_runtime_dependencies():
    loaded = _loaded_after("from krabgraph.launch import Input, Node, Output, Param")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_one_message_module_does_not_load_numpy_but_the_array_helpers_do():
    assert "numpy" not in _loaded_after("from krabgraph.msgs import RobotState")
    assert "numpy" in _loaded_after("from krabgraph.msgs import to_numpy")


def test_the_main_job_needs_none_of_the_opt_in_extras():
    """``make launch GRAPH=parkour`` installs only the ``sim`` extra: running the parkour graph loads no
    module of the opt-in extras (torch, recording tools, plots, the real robot's DDS, the gamepad)."""
    run = (
        "from krabgraph.launch import Executor, load_and_build; "
        "ex = Executor(load_and_build('parkour', clock='sim')); "
        "assert ex.run(duration_s=0.5, handle_signals=False) == 0"
    )
    extras = {"torch", "mcap", "mcap_protobuf", "foxglove", "matplotlib", "cyclonedds", "evdev", "pytest"}
    loaded = _loaded_after(run)
    assert {"mujoco", "onnxruntime"} <= loaded  # it did run the simulator and the policy
    assert not loaded & extras, sorted(loaded & extras)
