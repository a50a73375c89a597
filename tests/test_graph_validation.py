"""Graph files: every validation error names the file and line and says what to do."""

from __future__ import annotations

import pytest

from krabgraph.launch import GraphError, load_and_build
from krabgraph.launch.graph.declaration import load_graph

GOOD = """
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


def errors_of(path) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_and_build(path)
    return info.value.errors


def test_good_graph_builds(write_graph):
    graph = load_and_build(write_graph(GOOD))
    assert list(graph.nodes) == ["robot", "policy"]
    assert graph.nodes["policy"].params["kp"] == 15.0
    assert graph.nodes["robot"].outputs == {"state": "robot/state"}
    assert set(graph.topics) == {"robot/state", "policy/joint_command"}
    state = graph.topics["robot/state"]
    assert state.publishers == [("robot", "state")] and state.subscribers == [("policy", "state")]


def test_unknown_node_class(write_graph):
    path = write_graph(GOOD.replace("class: hold_pose", "class: hold_pos"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:8: node 'policy': unknown node class 'hold_pos'; did you mean 'hold_pose'?")


def test_unknown_module_path(write_graph):
    path = write_graph(GOOD.replace("class: hold_pose", "class: no_such_pkg.mod:Thing"))
    (err,) = errors_of(path)
    assert err == f"{path}:8: node 'policy': unknown node class 'no_such_pkg.mod:Thing': no module 'no_such_pkg.mod'"


def test_unknown_parameter_with_suggestion(write_graph):
    path = write_graph(GOOD.replace("{kp: 15.0}", "{kpp: 15.0}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:9: node 'policy': unknown parameter 'kpp' for HoldPose; did you mean 'kp'? known: target, kp, kd"
    )


def test_mistyped_parameter(write_graph):
    path = write_graph(GOOD.replace("{kp: 15.0}", "{kp: high}"))
    (err,) = errors_of(path)
    assert err == f"{path}:9: node 'policy': parameter 'kp' must be float, got str 'high'"


def test_out_of_range_parameter(write_graph):
    path = write_graph(GOOD.replace("{kp: 15.0}", "{kp: -1}"))
    (err,) = errors_of(path)
    assert err == f"{path}:9: node 'policy': parameter 'kp' must be >= 0 N·m/rad, got -1.0"


def test_port_type_mismatch(write_graph):
    path = write_graph(GOOD.replace("inputs: {command: policy/joint_command}", "inputs: {command: robot/state}"))
    errs = errors_of(path)
    assert (
        f"{path}:5: node 'robot': input 'command' expects JointCommand but topic 'robot/state' carries "
        "RobotState; wire it to a JointCommand topic"
    ) in errs


def test_required_input_unconnected(write_graph):
    path = write_graph(GOOD.replace("    inputs: {state: robot/state}\n", ""))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:7: node 'policy': required input 'state' (RobotState) is not connected; "
        "add `inputs: {state: <topic>}`"
    )


def test_unknown_topic(write_graph):
    path = write_graph(GOOD.replace("{state: robot/state}", "{state: robot/stat}"))
    (err,) = errors_of(path)
    assert err.startswith(
        f"{path}:10: node 'policy': input 'state' is wired to topic 'robot/stat', which nothing "
        "publishes; did you mean 'robot/state'?"
    )


def test_unknown_port(write_graph):
    path = write_graph(GOOD.replace("{state: robot/state}", "{state: robot/state, stat: robot/state}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:10: node 'policy': HoldPose has no input port 'stat'; did you mean 'state'? input ports: state"
    )


def test_two_publishers_on_a_single_publisher_topic(write_graph):
    text = (
        GOOD
        + """  policy2:
    class: hold_pose
    inputs: {state: robot/state}
    outputs: {joint_command: policy/joint_command}
"""
    )
    path = write_graph(text)
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:14: topic 'policy/joint_command' has 2 publishers (policy.joint_command")
    assert "but allows one; remap one output to another topic" in err


def test_all_errors_reported_together(write_graph):
    path = write_graph(GOOD.replace("{kp: 15.0}", "{kp: x, kd: y}").replace("fake_robot", "fake_robo"))
    errs = errors_of(path)
    assert len(errs) == 3
    assert all(e.startswith(str(path)) for e in errs)


def test_schema_violation_names_key_and_line(write_graph):
    path = write_graph(GOOD.replace("    params: {kp: 15.0}", "    parms: {kp: 15.0}"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:9: nodes/policy: Additional properties are not allowed ('parms' was unexpected)")


def test_invalid_yaml_reports_line(write_graph):
    path = write_graph("nodes:\n  a: [1, 2\n  b: 3\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:3: invalid YAML")


def test_duplicate_node_name(write_graph):
    path = write_graph(GOOD + "  robot:\n    class: fake_robot\n")
    (err,) = errors_of(path)
    assert err == f"{path}:11: duplicate key 'robot' (first at line 3); remove one"


def test_empty_and_non_mapping_files(write_graph):
    assert errors_of(write_graph("", "e.yaml"))[0].endswith("graph file is empty; it needs at least 'nodes:'")
    assert "a graph file is a mapping" in errors_of(write_graph("- a\n", "l.yaml"))[0]


def test_missing_graph_lists_available():
    with pytest.raises(GraphError, match=r"graph 'nope' not found .*demo"):
        load_graph("nope")


def test_thread_not_allowed_in_lockstep(write_graph):
    path = write_graph(GOOD.replace("    class: fake_robot\n", "    class: fake_robot\n    thread: true\n"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:5: node 'robot': `thread: true` is not allowed with clock 'sim'")


def test_overlay_replaces_a_node_and_keeps_wiring(write_graph):
    write_graph(GOOD, "base.yaml")
    path = write_graph(
        """
        extends: base.yaml
        nodes:
          policy:
            class: krabgraph.nodes.demo:HoldPose
            params: {kd: 1.0}
        """,
        "over.yaml",
    )
    graph = load_and_build(path)
    policy = graph.nodes["policy"]
    assert policy.decl.replaced == "hold_pose"
    assert policy.params == {"kd": 1.0}  # params start afresh for a replaced class
    assert policy.inputs == {"state": "robot/state"}  # wiring kept
    assert [p.name for p in graph.decl.files] == ["base.yaml", "over.yaml"]


def test_overlay_merges_params_and_removes_nodes(write_graph):
    write_graph(GOOD, "base.yaml")
    path = write_graph(
        """
        extends: base.yaml
        nodes:
          policy:
            params: {kd: 2.0}
        """,
        "over.yaml",
    )
    assert load_and_build(path).nodes["policy"].params == {"kp": 15.0, "kd": 2.0}
    path = write_graph("extends: base.yaml\nnodes:\n  policy: null\n", "rm.yaml")
    errs = errors_of(path)  # removing the policy leaves robot.command unpublished
    assert "input 'command' is wired to topic 'policy/joint_command', which nothing publishes" in errs[0]


def test_overlay_error_points_into_the_overlay_file(write_graph):
    write_graph(GOOD, "base.yaml")
    path = write_graph("extends: base.yaml\nnodes:\n  policy:\n    params: {kp: nope}\n", "over.yaml")
    (err,) = errors_of(path)
    assert err == f"{path}:4: node 'policy': parameter 'kp' must be float, got str 'nope'"


def test_extends_loop_is_reported(write_graph):
    write_graph("extends: b.yaml\nnodes: {}\n", "a.yaml")
    path = write_graph("extends: a.yaml\nnodes: {}\n", "b.yaml")
    assert "'extends' loop" in errors_of(path)[0]


def test_command_line_overrides(write_graph):
    path = write_graph(GOOD)
    decl = load_graph(path, sets=["policy.kd=0.7", "robot.rate_hz=100"], replaces=[])
    assert decl.nodes["policy"].params == {"kp": 15.0, "kd": 0.7}
    with pytest.raises(GraphError) as info:
        load_and_build(path, sets=["policy.kq=1"])
    assert info.value.errors[0].startswith("command line: node 'policy': unknown parameter 'kq'")
    with pytest.raises(GraphError, match=r"--set 'oops': expected NODE.PARAM=VALUE"):
        load_graph(path, sets=["oops"])
    with pytest.raises(GraphError, match=r"--replace 'ghost=x': no node 'ghost'"):
        load_graph(path, replaces=["ghost=x"])


def test_shipped_graph_files_validate():
    from krabgraph.launch.graph.declaration import GRAPHS_DIR

    for path in sorted(GRAPHS_DIR.glob("*.yaml")):
        try:
            load_and_build(path)
        except GraphError as exc:
            if "cannot be imported" in str(exc):
                pytest.skip(f"{path.name}: optional dependency missing: {exc}")
            raise
