"""Composable graph files: ``extends:`` a list (base, then overlays) and ``--overlay FILE``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from krabgraph.launch import GraphError, load_and_build
from krabgraph.launch.graph.declaration import load_graph

BASE = """
name: base
clock: sim
nodes:
  robot:
    class: fake_robot
    inputs: {command: policy/joint_command}
    unsafe_direct_command: true   # the runtime's own tests: no safety node
  policy:
    class: hold_pose
    params: {kp: 15.0}
    inputs: {state: robot/state}
"""
GAINS = "nodes:\n  policy:\n    params: {kd: 2.0, kp: 9.0}\n"
STIFF = "nodes:\n  policy:\n    params: {kp: 30.0}\n"


def test_extends_a_list_applies_the_overlays_in_order_then_the_file(write_graph):
    write_graph(BASE, "base.yaml")
    write_graph(GAINS, "gains.yaml")
    write_graph(STIFF, "stiff.yaml")
    path = write_graph("extends: [base.yaml, gains.yaml, stiff.yaml]\nnodes:\n  robot: {params: {rate_hz: 100}}\n")
    graph = load_and_build(path)
    assert graph.nodes["policy"].params == {"kp": 30.0, "kd": 2.0}  # stiff.yaml after gains.yaml
    assert graph.nodes["robot"].params["rate_hz"] == 100
    assert [p.name for p in graph.decl.files] == ["base.yaml", "gains.yaml", "stiff.yaml", "g.yaml"]
    assert graph.decl.name == "g"  # the top file's name (its stem), not an overlay's


def test_an_overlay_that_extends_another_graph_is_refused_at_its_line(write_graph):
    write_graph(BASE, "base.yaml")
    bad = write_graph("extends: base.yaml\n" + GAINS, "bad.yaml")
    path = write_graph("extends: [base.yaml, bad.yaml]\nnodes: {}\n")
    with pytest.raises(GraphError) as info:
        load_graph(path)
    assert info.value.errors[0].startswith(f"{bad}:1: an overlay applied after a base graph cannot extend")


def test_extends_must_be_a_graph_or_a_non_empty_list(write_graph):
    for value, what in (("[]", "[] should be non-empty"), ("5", "5 is not of type 'string'")):
        path = write_graph(f"extends: {value}\nnodes: {{}}\n")
        with pytest.raises(GraphError) as info:
            load_graph(path)
        assert info.value.errors[0].startswith(f"{path}:1: extends: {what}"), info.value.errors


def test_overlay_option_keeps_the_graph_name_and_reports_a_missing_file(write_graph, tmp_path):
    base = write_graph(BASE, "base.yaml")
    gains = write_graph(GAINS, "gains.yaml")
    decl = load_graph(base, overlays=[gains])
    assert decl.name == "base" and decl.nodes["policy"].params == {"kp": 9.0, "kd": 2.0}
    with pytest.raises(GraphError, match=r"^command line: --overlay: "):
        load_graph(base, overlays=[tmp_path / "nope.yaml"])


def test_shipped_split_graphs_are_the_placement_overlay_on_their_base():
    for name, base in (("walk_split", "walk"), ("walk_real_split", "walk_real")):
        split, plain = load_graph(name), load_graph(base)
        assert {n: d.process for n, d in split.nodes.items()} == {
            "hal": "robot", "command": "robot", "safety": "robot", "policy": "brain",
        }  # fmt: skip
        assert {n: d.class_ref for n, d in split.nodes.items()} == {n: d.class_ref for n, d in plain.nodes.items()}
        assert split.clock.mode == "wall" and split.files[-2].name == "two_processes.yaml"
        overlaid = load_graph(base, overlays=["overlays/two_processes.yaml"])
        assert {n: d.process for n, d in overlaid.nodes.items()} == {n: d.process for n, d in split.nodes.items()}


def test_cli_check_takes_overlays():
    cmd = [sys.executable, "-m", "krabgraph", "check", "walk", "--overlay", "overlays/two_processes.yaml"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "walk: OK" in out.stdout and "policy: PolicyNode [policy] in process brain" in out.stdout


def test_null_disconnects_an_input_that_a_replaced_node_would_keep(write_graph):
    write_graph(BASE, "base.yaml")
    path = write_graph(
        "extends: base.yaml\nnodes:\n  policy:\n    class: krabgraph.nodes.demo:HoldPose\n    inputs: {state: null}\n"
    )
    decl = load_graph(path)
    assert decl.nodes["policy"].replaced == "hold_pose" and "state" not in decl.nodes["policy"].inputs
    assert load_graph(write_graph(BASE, "b2.yaml")).nodes["policy"].inputs == {"state": "robot/state"}
