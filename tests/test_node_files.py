"""A new node is one file plus a graph line: ``class: lowpass.py:JointLowPass`` names a Python
file in the graph file's folder, found without ``PYTHONPATH``; the root-shadow trap is one clear error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from krabgraph.launch import Executor, GraphError, load_and_build

ROOT = Path(__file__).resolve().parent.parent
NODE_FILE = '''
"""A joint-target low-pass: the user's own node, next to the graph file."""

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.msgs import JointCommand, set_array, to_numpy


class JointLowPass(Node):
    alpha = Param(float, 0.5, "weight of the newest target", gt=0, le=1)
    command = Input(JointCommand)
    smoothed = Output(JointCommand)

    def on_configure(self) -> None:
        self.state = None
        self.count = 0

    def on_command(self, msg: JointCommand) -> None:
        q = to_numpy(msg.position)
        self.state = q if self.state is None else self.alpha * q + (1 - self.alpha) * self.state
        out = JointCommand()
        out.CopyFrom(msg)
        set_array(out.position, self.state)
        self.smoothed.publish(out)
        self.count += 1
'''
GRAPH = """
clock: sim
nodes:
  robot:
    class: fake_robot
    inputs: {command: lp/smoothed}
    unsafe_direct_command: true   # a runtime test graph: no safety node
  policy:
    class: hold_pose
    inputs: {state: robot/state}
  lp:
    class: CLASS
    params: {alpha: 0.25}
    inputs: {command: policy/joint_command}
"""


def _project(tmp_path: Path, class_ref: str = "lowpass.py:JointLowPass", body: str = NODE_FILE) -> Path:
    proj = tmp_path / "proj"
    (proj / "nodes").mkdir(parents=True, exist_ok=True)
    (proj / "lowpass.py").write_text(body)
    (proj / "nodes" / "lowpass.py").write_text(body)
    graph = proj / "g.yaml"
    graph.write_text(textwrap.dedent(GRAPH).lstrip("\n").replace("CLASS", class_ref))
    return graph


def test_a_node_file_beside_the_graph_runs_in_it(tmp_path):
    graph = load_and_build(_project(tmp_path))
    spec = graph.nodes["lp"]
    assert spec.cls.__name__ == "JointLowPass" and spec.params == {"alpha": 0.25}
    ex = Executor(graph)
    assert ex.run(duration_s=0.2, handle_signals=False) == 0 and not ex.failures
    assert ex.nodes["lp"].count >= 5  # it smoothed the policy's commands on their way to the robot


def test_a_node_file_in_a_subfolder_and_from_another_working_directory(tmp_path):
    path = _project(tmp_path, "nodes/lowpass.py:JointLowPass")
    cmd = [sys.executable, "-m", "krabgraph", "check", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lp: JointLowPass [other]" in out.stdout


@pytest.mark.parametrize(
    ("class_ref", "body", "message"),
    [
        ("../outside.py:JointLowPass", NODE_FILE, "outside.py is outside the graph file's folder"),
        ("missing.py:JointLowPass", NODE_FILE, "missing.py"),
        ("lowpass.py:Nope", NODE_FILE, "has no 'Nope'"),
        ("lowpass.py:JointLowPass", "raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
        ("lowpass.py:JointLowPass", "class JointLowPass:\n    pass\n", "is not a krabgraph Node subclass"),
    ],
)
def test_a_bad_node_file_is_one_error_at_the_class_line(tmp_path, class_ref, body, message):
    (tmp_path / "outside.py").write_text(NODE_FILE)
    path = _project(tmp_path, class_ref, body)
    with pytest.raises(GraphError) as info:
        load_and_build(path)
    (error,) = [e for e in info.value.errors if "node 'lp'" in e]
    assert error.startswith(f"{path}:11: node 'lp': ") and message in error, error


def test_a_node_written_against_the_root_shadow_copy_is_told_how_to_import(tmp_path):
    code = (
        "from launch.api.node import Node\n"
        "class Stray(Node):\n    pass\n"
        "from krabgraph.launch.graph.registry import resolve_class\n"
        "try:\n    resolve_class(Stray)\nexcept LookupError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "subclasses launch.api.node.Node, a second copy" in out.stdout, out.stderr
    assert "write `from krabgraph.launch import Node`" in out.stdout
