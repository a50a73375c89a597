"""Commands are bound to the robot they answer (issue 14, item 1): a command for another robot's
identity, for a stale or unknown state, a replayed old one and a repeated answer are all rejected by
the safety node and counted by kind, while the robot stays ACTIVE under its own policy; a second copy
of a graph whose brain takes over the first copy's command topic never drives the first robot.

Lockstep graphs of the ``fake_robot`` HAL (real ``Hal`` base: it stamps ``robot_id``), an honest
policy and the real ``Safety`` node; an ``Intruder`` relays the policy's commands and injects forged ones.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import CommandSource, JointCommand, RobotState, SafetyStatus, set_array, to_numpy
from krabgraph.nodes.demo import FakeRobot
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.safety import Safety
from tests.faults.recording_nodes import LoggingRobot, StatusLog

R = load_robot("go2")
NAMES = list(R.joint_names)
DT_NS = round(R.control_dt * 1e9)
Mode, Fault = SafetyStatus.Mode, SafetyStatus.Fault
GOOD = R.default_pos + 0.1  # what the honest policy commands
FORGED = R.default_pos - 0.3  # what every forged command carries: the HAL must never see it
ATTACKS = ("another robot", "stale state", "unknown state", "replayed", "repeated answer")


def command(position: np.ndarray, state: RobotState | None = None) -> JointCommand:
    """A valid JointCommand (the description's gains), answering ``state`` if given."""
    msg = JointCommand(name=NAMES, source=CommandSource.POLICY)
    set_array(msg.position, np.asarray(position, dtype=np.float64))
    if state is not None:
        msg.robot_id, msg.observation_seq = state.robot_id, state.header.seq
        msg.observation_stamp_ns = state.header.stamp_ns
    return msg


class HonestPolicy(Node):
    """Answers every state with ``GOOD``, bound to it; silent from ``silent_after_s`` on."""

    kind = "policy"
    silent_after_s = Param(float, 1e9, "no answers from this graph time on", unit="s")
    state = Input(RobotState)
    joint_command = Output(JointCommand)

    def on_state(self, msg: RobotState) -> None:
        if self.now_ns() < round(self.silent_after_s * 1e9):
            self.joint_command.publish(command(GOOD, msg))


class Intruder(Node):
    """Relays ``raw`` (the honest policy's commands) to ``out``; every ``period_s`` from ``start_s`` to
    ``stop_s`` it also injects one forged command, the kinds of ``ATTACKS`` in turn, all carrying ``FORGED``."""

    kind = "safety"  # it forwards a policy's commands (the graph checks who publishes them)
    raw = Input(JointCommand, queue=10, triggers=False)
    state = Input(RobotState, queue=0, triggers=False)
    out = Output(JointCommand)
    start_s = Param(float, 1.0, unit="s")
    stop_s = Param(float, 2.0, unit="s")
    period_s = Param(float, 0.05, unit="s")

    def on_configure(self) -> None:
        self.states: list[RobotState] = []  # every state seen (the robot's, so seq and stamp are real)
        self.real: list[JointCommand] = []  # every honest command relayed
        self.sent: Counter[str] = Counter()

    def on_activate(self) -> None:
        self.create_timer(self.period_s, self.inject)

    def on_raw(self, msg: JointCommand) -> None:
        self.real.append(msg)
        out = JointCommand()
        out.CopyFrom(msg)
        self.out.publish(out)

    def on_state(self, msg: RobotState) -> None:
        self.states.append(msg)

    def inject(self) -> None:
        t = self.now()
        if not (self.start_s <= t < self.stop_s) or len(self.states) < 40:
            return
        kind = ATTACKS[sum(self.sent.values()) % len(ATTACKS)]
        latest = self.states[-1]
        if kind == "another robot":  # the latest state's seq and stamp, the other copy's robot
            msg = command(FORGED, latest)
            msg.robot_id = "hal#" + "f" * 12
        elif kind == "stale state":  # a real state of this robot, 5 periods old
            msg = command(FORGED, self.states[-6])
        elif kind == "unknown state":  # a made-up sequence number
            msg = command(FORGED, latest)
            msg.observation_seq += 1000
        elif kind == "replayed":  # a real command of 0.5 s ago, sent again as it was
            msg = self.real[-25]
        else:  # "repeated answer": a second answer to the state the policy answered just now
            msg = command(FORGED, latest)
        out = JointCommand()
        out.CopyFrom(msg)
        self.sent[kind] += 1
        self.out.publish(out)


def run(nodes: dict, duration_s: float) -> Executor:
    ex = Executor(build_graph(graph_from_dict({"clock": "sim", "nodes": nodes}, name="binding")))
    assert ex.run(duration_s=duration_s, handle_signals=False) == 0 and ex.failures == []
    return ex


def safety_decl(robot: str, command: str) -> dict:
    return {
        "class": Safety,
        "params": {"soft_start_s": 0.5},
        "inputs": {"state": f"{robot}/state", "command": command},
    }


def test_forged_commands_are_rejected_counted_once_per_kind_and_never_reach_the_hal(caplog):
    caplog.set_level(logging.INFO, logger="krabgraph")
    ex = run(
        {
            "log": {"class": StatusLog, "inputs": {"status": "safety/status"}},
            "robot": {"class": LoggingRobot, "inputs": {"command": "safety/joint_command"}},
            "policy": {"class": HonestPolicy, "inputs": {"state": "robot/state"}, "outputs": {"joint_command": "raw"}},
            "intruder": {"class": Intruder, "inputs": {"raw": "raw", "state": "robot/state"}},
            "safety": safety_decl("robot", "intruder/out"),
        },
        3.0,
    )
    robot, safety, intruder = ex.nodes["robot"], ex.nodes["safety"], ex.nodes["intruder"]
    assert set(intruder.sent) == set(ATTACKS) and all(n == 4 for n in intruder.sent.values())  # 20 in 1 s

    # Every forged command was rejected, by kind ("replayed" ones answer a state long gone: unknown).
    kinds = {k: v for k, v in safety.problems.items() if k.startswith("rejected")}
    assert kinds == {
        "rejected another robot": 4,
        "rejected stale state": 4,
        "rejected unknown state": 8,
        "rejected repeated answer": 4,
    }
    assert safety.rejected == 20 and robot.rejected == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "krabgraph.safety" and r.levelno == logging.ERROR]
    assert sorted(line.split(":")[0] for line in lines) == sorted(kinds)  # one line per kind (5 s interval)

    # The robot stayed safe: ACTIVE from the end of the soft start to the end, no fault; the HAL never
    # saw a forged target, and every policy command it executed answers one of its own states.
    modes = [(t, s.mode) for t, s in ex.nodes["log"].got]
    active = next(t for t, m in modes if m == Mode.ACTIVE)
    assert active <= 600_000_000 and all(m == Mode.ACTIVE for t, m in modes if active <= t < 3_000_000_000)
    assert {s.fault for _, s in ex.nodes["log"].got} == {Fault.FAULT_NONE}
    assert not any(np.allclose(to_numpy(m.position), FORGED) for _, m in robot.received)
    own = {(s.header.seq, s.header.stamp_ns) for s in intruder.states}
    policy = [m for _, m in robot.received if m.source == CommandSource.POLICY]
    assert len(policy) >= 100 and all(m.robot_id == robot.robot_id for m in policy)
    assert all((m.observation_seq, m.observation_stamp_ns) in own for m in policy)
    np.testing.assert_allclose(robot.q, GOOD, atol=1e-6)


class Rebind(Node):
    """The ipc takeover of issue 14, case 1: relays copy A's brain until ``at_s``, copy B's after."""

    kind = "safety"
    a = Input(JointCommand, triggers=False)
    b = Input(JointCommand, triggers=False)
    out = Output(JointCommand)
    at_s = Param(float, 1.0, unit="s")

    def _relay(self, msg: JointCommand, late: bool) -> None:
        if (self.now_ns() >= round(self.at_s * 1e9)) == late:
            out = JointCommand()
            out.CopyFrom(msg)
            self.out.publish(out)

    def on_a(self, msg: JointCommand) -> None:
        self._relay(msg, late=False)

    def on_b(self, msg: JointCommand) -> None:
        self._relay(msg, late=True)


def test_a_second_copys_brain_on_the_first_copys_command_topic_never_drives_the_first_robot():
    """Two copies of one graph: from 1.0 s copy A's safety gets copy B's policy commands (which answer
    robot B's states). They are all rejected; robot A damps 2 periods after its last valid command and
    stays damped where it stood; robot B walks on undisturbed."""
    ex = run(
        {
            "log": {"class": StatusLog, "inputs": {"status": "safety_a/status"}},
            "robot_a": {"class": LoggingRobot, "inputs": {"command": "safety_a/joint_command"}},
            "robot_b": {"class": LoggingRobot, "inputs": {"command": "safety_b/joint_command"}},
            "policy_a": {"class": HonestPolicy, "inputs": {"state": "robot_a/state"}},
            "policy_b": {"class": HonestPolicy, "inputs": {"state": "robot_b/state"}},
            "rebind": {"class": Rebind, "inputs": {"a": "policy_a/joint_command", "b": "policy_b/joint_command"}},
            "safety_a": safety_decl("robot_a", "rebind/out"),
            "safety_b": safety_decl("robot_b", "policy_b/joint_command"),
        },
        2.0,
    )
    a, b, safety_a = ex.nodes["robot_a"], ex.nodes["robot_b"], ex.nodes["safety_a"]
    assert a.robot_id != b.robot_id and a.robot_id.startswith("robot_a#")
    assert safety_a.problems == {"rejected another robot": 50} == {"rejected another robot": safety_a.rejected}
    executed = [(t, m) for t, m in a.received if m.source == CommandSource.POLICY]
    assert executed and all(m.robot_id == a.robot_id for _, m in executed)
    t_last = executed[-1][0]
    assert t_last == 980_000_000  # the last answer of A's own policy
    t_damp = next(t for t, m in a.received if t > t_last and not to_numpy(m.kp).any())
    assert t_damp - t_last == 2 * DT_NS
    assert all(not to_numpy(m.kp).any() for t, m in a.received if t >= t_damp)  # damped to the end
    trip = next(s for _, s in ex.nodes["log"].got if s.mode == Mode.DAMPING)
    assert trip.fault == Fault.FAULT_COMMANDS_STALE
    assert ex.nodes["safety_b"].rejected == 0 and b.rejected == 0
    np.testing.assert_allclose(b.q, GOOD, atol=1e-6)


# -- the pieces, one node at a time ------------------------------------------------------------------


def test_every_hal_stamps_its_identity_and_sequence_and_rejects_another_robots_command():
    h = NodeHarness(FakeRobot).start()
    h.advance(0.06)
    states = h.outputs["state"]
    assert [s.header.seq for s in states] == [1, 2, 3] and len({s.robot_id for s in states}) == 1
    robot_id = states[0].robot_id
    assert robot_id.startswith("fake_robot#") and len(robot_id) == len("fake_robot#") + 12
    assert NodeHarness(FakeRobot).start().node.robot_id != robot_id  # two copies never share one
    h.feed("command", command(GOOD, states[-1]))  # its own: applied
    foreign = command(FORGED, states[-1])
    foreign.robot_id = "fake_robot#000000000000"
    h.feed("command", foreign)
    h.feed("command", command(GOOD + 0.05))  # no robot_id (a tool, an old recording): applied
    assert h.node.rejected == 1 and h.node.problems == {"robot": 1}
    np.testing.assert_array_equal(h.node.target, GOOD + 0.05)


def _active_safety(robot_id: str) -> tuple[NodeHarness, list[RobotState]]:
    """A Safety node driven to ACTIVE by states of ``robot_id`` answered at once; and those states."""
    h = NodeHarness(Safety, soft_start_s=0.0).start()
    states = []
    for seq in range(1, 4):
        state = RobotState(robot_id=robot_id)
        state.header.seq, state.header.stamp_ns = seq, seq * DT_NS
        state.joints.name.extend(NAMES)
        set_array(state.joints.position, R.default_pos)
        state.imu.orientation.w = 1.0
        h.feed("state", state)
        h.feed("command", command(GOOD, state))
        states.append(state)
        h.advance(DT_NS * 1e-9)
    assert h.node.mode == Mode.ACTIVE and h.node.rejected == 0
    return h, states


def test_recordings_without_robot_ids_still_bind_by_sequence():
    """States recorded before robot_id existed replay with an empty one; the policy copies it."""
    h, states = _active_safety("")
    assert h.node.robot_id == ""
    old = command(GOOD, states[0])  # seq 1: answered already
    h.feed("command", old)
    assert h.node.problems == {"rejected repeated answer": 1}


def test_operator_commands_are_not_bound_to_a_state_but_a_named_robot_must_be_this_one():
    h, states = _active_safety("hal#0123456789ab")
    sent = h.outputs["joint_command"]
    h.feed("operator", command(GOOD - 0.05))  # a person's set-point: answers no state, forwarded
    assert sent[-1].source == CommandSource.OPERATOR and h.node.rejected == 0
    named = command(GOOD - 0.04)
    named.robot_id = states[-1].robot_id
    h.feed("operator", named)
    assert sent[-1].source == CommandSource.OPERATOR and np.allclose(to_numpy(sent[-1].position), GOOD - 0.04)
    other = command(FORGED)
    other.robot_id = "hal#ffffffffffff"
    h.feed("operator", other)
    assert h.node.problems == {"rejected another robot": 1}
    assert not np.allclose(to_numpy(sent[-1].position), FORGED)


@pytest.mark.parametrize("late", [True, False])
def test_a_state_of_another_robot_is_ignored_while_this_one_publishes_and_taken_after_a_timeout(late):
    h, states = _active_safety("hal#0123456789ab")
    other = RobotState()
    other.CopyFrom(states[-1])
    other.robot_id, other.header.seq = "hal#ffffffffffff", 99
    if late:  # this robot went quiet (a restarted HAL): the next valid state's robot is this robot now
        h.advance(0.2)
        assert h.node.mode == Mode.DAMPING
    h.feed("state", other)
    if late:
        assert h.node.robot_id == "hal#ffffffffffff" and h.node.bad_states == 0
    else:
        assert h.node.robot_id == "hal#0123456789ab" and h.node.problems == {"ignored robot state: another robot": 1}
        h.feed("command", command(FORGED, other))  # answering the ignored state: rejected
        assert h.node.problems["rejected another robot"] == 1
