"""Node API: parameters, ports, lifecycle, timers — without an executor."""

from __future__ import annotations

import numpy as np
import pytest

from krabgraph.launch import Input, Node, Output, Param, ParamError
from krabgraph.launch.api.context import ManualClock, NodeContext
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import JointCommand, RobotState, VelocityCommand, to_numpy
from krabgraph.nodes.command import ScriptedVelocity
from krabgraph.nodes.demo import FakeRobot, HoldPose


class Gains(Node):
    """Example node for parameter checks."""

    rate_hz = Param(float, 50.0, "rate", unit="Hz", gt=0)
    mode = Param(str, "walk", "mode", choices=("walk", "stand"))
    joints = Param(list, ["a"], "joint names", item=str)
    count = Param(int, 3, "count", ge=0, le=10)
    name_required = Param(str, doc="a required parameter")


def test_params_default_validate_and_read_as_attributes():
    node = Gains(name_required="x", rate_hz=100)
    assert node.rate_hz == 100.0 and isinstance(node.rate_hz, float)
    assert node.mode == "walk" and node.count == 3 and node.joints == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_hz": 0.0}, r"parameter 'rate_hz' must be > 0 Hz, got 0.0"),
        ({"rate_hz": "fast"}, r"parameter 'rate_hz' must be float, got str 'fast'"),
        ({"rate_hz": float("nan")}, r"parameter 'rate_hz' must be finite"),
        ({"mode": "run"}, r"parameter 'mode' must be one of \['walk', 'stand'\], got 'run'"),
        ({"joints": ["a", 3]}, r"parameter 'joints'\[1\] must be str, got int 3"),
        ({"count": True}, r"parameter 'count' must be an int, got bool True"),
        ({"count": 11}, r"parameter 'count' must be <= 10, got 11"),
        ({"rate": 5.0}, r"unknown parameter 'rate' for Gains \(known: rate_hz, mode, joints, count, name_required\)"),
    ],
)
def test_param_errors_say_what_is_wrong(kwargs, message):
    with pytest.raises(ParamError, match=message):
        Gains(name_required="x", **kwargs)


def test_missing_required_param():
    with pytest.raises(ParamError, match="missing required parameter 'name_required' for Gains"):
        Gains()


def test_params_are_read_only():
    node = Gains(name_required="x")
    with pytest.raises(AttributeError, match="read-only"):
        node.rate_hz = 3.0


def test_port_names_may_not_shadow_node_api():
    with pytest.raises(TypeError, match="'log' is reserved by Node"):

        class Bad(Node):
            log = Input(RobotState)


def test_class_introspection():
    assert set(FakeRobot.inputs()) == {"command", "velocity_command", "safety_status"}
    assert set(FakeRobot.outputs()) == {"state"}
    assert FakeRobot.inputs()["command"].msg_type is JointCommand
    assert FakeRobot.kind == "hal" and "kinematic" in FakeRobot.summary()


def test_lifecycle_transitions_and_timer_rules():
    robot = FakeRobot()
    assert robot.lifecycle == "unconfigured"
    with pytest.raises(RuntimeError, match="cannot activate from 'unconfigured'"):
        robot.activate()
    robot.configure()
    with pytest.raises(RuntimeError, match="create timers in on_activate"):
        robot.create_timer(0.1, robot.tick)
    robot.activate()
    assert robot.lifecycle == "active" and len(robot.timers) == 1
    robot.deactivate()
    assert robot.lifecycle == "inactive" and robot.timers == []
    robot.shutdown()
    assert robot.lifecycle == "finalized"


class Stopper(Node):
    """Asks to stop the graph on its first tick; says which clock it runs on."""

    def on_activate(self) -> None:
        self.create_timer(0.1, self.tick)

    def tick(self) -> None:
        self.request_stop(3)


def test_the_runtime_handle_one_context_per_node():
    node = Stopper()  # outside any runtime: a manual clock, no one to ask for a stop
    assert node.clock_mode == "manual" and node.now_ns() == 0
    node.configure()
    with pytest.raises(RuntimeError, match=r"request_stop\(\) needs an executor"):
        node.request_stop()
    with pytest.raises(RuntimeError, match="attach a context before configure"):
        node.attach(NodeContext(ManualClock()))

    clock, fired = ManualClock("sim"), []
    node = Stopper()
    node.attach(NodeContext(clock, rank=7, schedule=fired.append, stop=fired.append))
    clock.t_ns = 5
    assert node.clock_mode == "sim" and node.now_ns() == 5 and node.now() == 5e-9
    node.configure()
    node.activate()
    (timer,) = fired  # handed to the runtime's schedule
    assert timer.rank == 7 and timer.due_ns == 5 + 100_000_000 and node.timers == [timer]
    timer.callback()
    assert fired[-1] == 3  # the stop request


def test_harness_records_stop_requests_and_reads_the_node_through_its_public_api():
    h = NodeHarness(Stopper).start()
    assert h.node.input_ports() == {} and h.node.param_values() == {} and h.stops == []
    h.advance(0.25)
    assert h.stops == [3, 3] and h.now_ns == 250_000_000
    assert set(NodeHarness(FakeRobot).node.output_ports()) == {"state"}
    with pytest.raises(TypeError, match="'lifecycle' is reserved by Node"):
        type("Bad", (Node,), {"lifecycle": Param(str, "x", "")})


def test_harness_fires_timers_on_a_manual_clock():
    h = NodeHarness(FakeRobot, rate_hz=50.0).start()
    h.advance(0.1)
    states = h.outputs["state"]
    assert len(states) == 5
    assert [s.header.seq for s in states] == [1, 2, 3, 4, 5]
    assert [s.header.stamp_ns for s in states] == [20_000_000 * k for k in range(1, 6)]


def test_fake_robot_follows_targets_by_name_and_rejects_bad_commands():
    h = NodeHarness(FakeRobot, joints=["a", "b"], gain=1.0).start()
    cmd = JointCommand(name=["b", "a"])
    from krabgraph.msgs import set_array

    set_array(cmd.position, [2.0, 1.0])
    h.feed("command", cmd)
    h.advance(0.02)
    np.testing.assert_allclose(to_numpy(h.outputs["state"][-1].joints.position), [1.0, 2.0])
    bad = JointCommand(name=["a", "zz"])
    set_array(bad.position, [5.0, 5.0])
    h.feed("command", bad)
    nan = JointCommand(name=["a"])
    set_array(nan.position, [float("nan")])
    h.feed("command", nan)
    h.advance(0.02)
    assert h.node.rejected == 2
    np.testing.assert_allclose(to_numpy(h.outputs["state"][-1].joints.position), [1.0, 2.0])


def test_hold_pose_answers_state_with_stamped_command():
    h = NodeHarness(HoldPose, target=[0.1, 0.2], kp=10.0).start()
    state = RobotState()
    state.joints.name.extend(["x", "y"])
    state.header.stamp_ns, state.header.seq = 123, 7
    h.feed("state", state)
    (cmd,) = h.outputs["joint_command"]
    assert list(cmd.name) == ["x", "y"] and cmd.observation_stamp_ns == 123 and cmd.observation_seq == 7
    np.testing.assert_allclose(to_numpy(cmd.position), [0.1, 0.2])
    np.testing.assert_allclose(to_numpy(cmd.kp), [10.0, 10.0])


def test_output_refuses_wrong_message_type():
    h = NodeHarness(HoldPose).start()
    with pytest.raises(TypeError, match=r"hold_pose.joint_command publishes JointCommand, got VelocityCommand"):
        h.node.joint_command.publish(VelocityCommand())


def test_scripted_velocity_plays_phases_then_zero():
    h = NodeHarness(ScriptedVelocity, schedule=[[0.1, 0.5, 0.0, 0.0], [0.1, 0.0, 0.0, 1.0]], rate_hz=50.0).start()
    h.advance(0.3)
    got = [(round(m.vx, 3), round(m.yaw_rate, 3)) for m in h.outputs["cmd_vel"]]
    assert got[:5] == [(0.5, 0.0)] * 5
    assert got[5:10] == [(0.0, 1.0)] * 5
    assert got[10:] == [(0.0, 0.0)] * (len(got) - 10) and len(got) == 16


def test_scripted_velocity_rejects_bad_phase():
    h = NodeHarness(ScriptedVelocity, schedule=[[0.0, 1.0, 0.0, 0.0]])
    with pytest.raises(ParamError, match=r"schedule\[0\] = \[0.0, 1.0, 0.0, 0.0\]; expected \[duration_s > 0"):
        h.start()


def test_inputs_without_callback_keep_latest():
    class Reader(Node):
        cmd = Input(VelocityCommand, required=False)
        out = Output(VelocityCommand)

    h = NodeHarness(Reader).start()
    assert h.node.cmd.latest is None and h.node.cmd.age_ns() is None
    h.feed("cmd", VelocityCommand(vx=1.0))
    h.feed("cmd", VelocityCommand(vx=2.0))
    assert h.node.cmd.latest.vx == 2.0 and h.node.cmd.count == 2
    h.advance(0.5)
    assert h.node.cmd.age_ns() == 500_000_000
