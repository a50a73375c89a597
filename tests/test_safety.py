"""Safety node: validation, clamping, watchdogs, e-stop, attitude trip, soft start, precedence, shutdown.

Unit behaviour runs the real node in a ``NodeHarness`` (one control period per ``Bench.step``); fault
injection runs whole lockstep graphs and asserts on the commands the HAL actually received.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from krabgraph.launch import Executor, Input, Node, Output, Param, ParamError, build_graph, graph_from_dict
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import (
    CommandSource,
    EStop,
    HeightScan,
    JointCommand,
    RobotState,
    SafetyStatus,
    set_array,
    to_numpy,
)
from krabgraph.nodes.hal_io import CommandParser
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.rotations import quat_from_rpy
from krabgraph.nodes.safety import Safety
from tests.faults.recording_nodes import LoggingRobot

R = load_robot("go2")
NAMES = list(R.joint_names)
N = R.num_joints
DT = R.control_dt
DT_NS = round(DT * 1e9)
MARGIN = 0.05  # Safety's default soft_limit_margin
LOWER, UPPER = R.pos_lower + MARGIN, R.pos_upper - MARGIN
Mode = SafetyStatus.Mode
Fault = SafetyStatus.Fault
POLICY, OPERATOR, SAFETY = CommandSource.POLICY, CommandSource.OPERATOR, CommandSource.SAFETY
CROUCH = np.array([0.3, 1.3, -2.6, -0.3, 1.3, -2.6, 0.3, 1.3, -2.6, -0.3, 1.3, -2.6])  # inside the soft limits
ROBOT_ID = "hal#0123456789ab"  # the robot of the unit tests' states (a HAL draws its own)


def state_msg(
    q: np.ndarray, roll: float = 0.0, pitch: float = 0.0, names: list[str] = NAMES, seq: int = 0
) -> RobotState:
    """A RobotState with joint positions ``q`` (in ``names`` order) and a base tilted by roll, pitch (rad);
    of robot ``ROBOT_ID``, header seq ``seq`` and stamp ``seq`` periods (what ``command_msg(seq=)`` answers)."""
    msg = RobotState(robot_id=ROBOT_ID)
    msg.header.seq, msg.header.stamp_ns = seq, seq * DT_NS
    msg.joints.name.extend(names)
    set_array(msg.joints.position, np.asarray(q, dtype=np.float64))
    o = msg.imu.orientation
    o.w, o.x, o.y, o.z = quat_from_rpy(roll, pitch, 0.0)
    return msg


def scan_msg(
    height: float, shape: tuple[int, int] = (11, 17), offset: float = 0.5, around: float = 0.3, center_x: float = 0.0
) -> HeightScan:
    """A 0.1 m height scan: the base ``height`` above the cells within 0.1 m of it, ``around`` elsewhere;
    ``center_x`` (m) puts the grid's middle ahead of the base (a look-ahead grid)."""
    heights = np.full(shape, around - offset, dtype=np.float32)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2 - center_x / 0.1
    near = (np.abs(np.arange(shape[0]) - cy) <= 1)[:, None] & (np.abs(np.arange(shape[1]) - cx) <= 1)[None, :]
    heights[near] = height - offset
    msg = HeightScan(resolution=0.1, size_x=(shape[1] - 1) * 0.1, size_y=(shape[0] - 1) * 0.1, offset=offset)
    msg.center_x = center_x
    set_array(msg.heights, heights, np.float32)
    return msg


def command_msg(position, names: list[str] = NAMES, seq: int = 0, **arrays) -> JointCommand:
    """A JointCommand answering ``state_msg(seq=seq)``; ``arrays`` sets velocity, effort, kp or kd (omitted:
    left empty)."""
    msg = JointCommand(name=names, observation_stamp_ns=seq * DT_NS, observation_seq=seq, robot_id=ROBOT_ID)
    set_array(msg.position, np.asarray(position, dtype=np.float64))
    for key, values in arrays.items():
        set_array(getattr(msg, key), np.asarray(values, dtype=np.float64))
    return msg


def bind(cmd: JointCommand, seq: int) -> JointCommand:
    """A copy of ``cmd`` answering ``state_msg(seq=seq)``."""
    out = JointCommand()
    out.CopyFrom(cmd)
    out.observation_seq, out.observation_stamp_ns, out.robot_id = seq, seq * DT_NS, ROBOT_ID
    return out


def fields(msg: JointCommand) -> dict[str, np.ndarray]:
    assert list(msg.name) == NAMES
    return {k: to_numpy(getattr(msg, k)) for k in ("position", "velocity", "effort", "kp", "kd")}


def is_damping(msg: JointCommand, kd: float = 1.0) -> bool:
    f = fields(msg)
    return (
        msg.source == SAFETY
        and np.all(f["kp"] == 0)
        and np.all(f["kd"] == kd)
        and np.all(f["velocity"] == 0)
        and np.all(f["effort"] == 0)
    )


class Bench:
    """The Safety node in a harness with a constant robot: ``step`` = one control period."""

    def __init__(self, **params):
        self.h = NodeHarness(Safety, **{"soft_start_s": 0.2, **params}).start()
        self.node: Safety = self.h.node
        self.seq = 0  # of the last state fed

    @property
    def sent(self) -> list[JointCommand]:
        return self.h.outputs["joint_command"]

    @property
    def statuses(self) -> list[SafetyStatus]:
        return self.h.outputs["status"]

    @property
    def modes(self) -> list[int]:
        """Mode changes in order (heartbeats removed)."""
        out: list[int] = []
        for s in self.statuses:
            if not out or out[-1] != s.mode:
                out.append(s.mode)
        return out

    def step(
        self,
        n: int = 1,
        *,
        q=R.default_pos,
        cmd=None,
        operator=None,
        roll=0.0,
        pitch=0.0,
        state=True,
        base_z: float | None = None,
        scan: float | None = None,
    ) -> None:
        """For ``n`` periods: deliver the state and commands now (those given), then advance one period.

        ``base_z``: the state's ground-truth base height (world z); ``scan``: a height scan first, the
        base this high above the ground under it (as the HAL sends them: scan, then state).
        """
        for _ in range(n):
            self.seq += 1
            if scan is not None:
                self.h.feed("height_scan", scan_msg(scan))
            if state:
                msg = state_msg(q, roll, pitch, seq=self.seq)
                if base_z is not None:
                    msg.has_base = True
                    msg.base.position.z = base_z
                self.h.feed("state", msg)
            if cmd is not None:
                self.h.feed(
                    "command", bind(cmd, self.seq) if isinstance(cmd, JointCommand) else command_msg(cmd, seq=self.seq)
                )
            if operator is not None:
                self.h.feed("operator", command_msg(operator, seq=self.seq))
            self.h.advance(DT)

    def answer(self, cmd: JointCommand, q=R.default_pos) -> None:
        """Feed a new state (joint positions ``q``), then ``cmd`` answering it, at the same instant."""
        self.seq += 1
        self.h.feed("state", state_msg(q, seq=self.seq))
        self.h.feed("command", bind(cmd, self.seq))

    def activate(self, cmd=R.default_pos) -> Bench:
        """Run through soft start into ACTIVE with the policy sending ``cmd``."""
        self.step(round(0.2 / DT) + 1, cmd=cmd)
        assert self.node.mode == Mode.ACTIVE, self.node.reason
        return self


# -- soft start and forwarding ---------------------------------------------------------------------


def test_waiting_sends_damping_every_period_until_the_first_state():
    b = Bench()
    b.h.advance(3 * DT)
    assert len(b.sent) == 3 and all(is_damping(m) for m in b.sent)
    assert [m.header.stamp_ns for m in b.sent] == [DT_NS, 2 * DT_NS, 3 * DT_NS]
    assert b.modes == [Mode.WAITING]
    b.h.feed("state", state_msg(CROUCH))  # soft start begins at once, holding the measured pose
    assert b.modes == [Mode.WAITING, Mode.SOFT_START] and len(b.sent) == 4
    f = fields(b.sent[-1])
    np.testing.assert_array_equal(f["position"], CROUCH)
    np.testing.assert_array_equal(f["kp"], R.kp)
    np.testing.assert_array_equal(f["kd"], R.kd)


def test_soft_start_ramps_monotonically_to_the_default_pose_then_forwards():
    b = Bench(soft_start_s=0.4)
    target = R.default_pos + 0.2
    b.step(40, q=CROUCH, cmd=target)  # the policy publishes from the start; it must wait for the ramp
    times = np.array([m.header.stamp_ns for m in b.sent])
    first_policy = next(i for i, m in enumerate(b.sent) if m.source == POLICY)
    assert times[first_policy] == 400_000_000  # forwarded exactly when the 0.4 s ramp ends
    ramp = b.sent[:first_policy]
    assert all(m.source == SAFETY for m in ramp) and len(ramp) == round(0.4 / DT) + 1
    pos = np.array([fields(m)["position"] for m in ramp])
    np.testing.assert_array_equal(pos[0], CROUCH)
    np.testing.assert_allclose(pos[-1], R.default_pos, atol=1e-12)
    np.testing.assert_allclose(pos[times[:first_policy] == 200_000_000][0], (CROUCH + R.default_pos) / 2)
    toward = np.sign(R.default_pos - CROUCH)
    assert np.all(np.diff(pos, axis=0) * toward >= 0)  # every joint moves only toward its default
    assert all(np.array_equal(fields(m)["kp"], R.kp) for m in ramp)
    np.testing.assert_allclose(fields(b.sent[first_policy])["position"], target)
    assert b.modes == [Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE]


def test_soft_start_holds_the_default_pose_until_a_command_arrives():
    b = Bench(soft_start_s=0.1)
    b.step(30, q=CROUCH)
    assert b.node.mode == Mode.SOFT_START and len(b.sent) == 31  # one command per period, no gap
    np.testing.assert_allclose(fields(b.sent[-1])["position"], R.default_pos)
    assert np.all(fields(b.sent[-1])["kp"] == R.kp)
    b.step(1, cmd=R.default_pos + 0.1)
    assert b.node.mode == Mode.ACTIVE and b.sent[-1].source == POLICY


def test_forwarding_maps_by_name_keeps_source_and_observation_stamp():
    b = Bench().activate()
    order = NAMES[::-1]
    target = {n: R.default_pos[i] + 0.01 * i for i, n in enumerate(NAMES)}
    msg = command_msg([target[n] for n in order], names=order, kp=np.arange(N) + 1.0, kd=np.full(N, 0.3))
    b.answer(msg)
    out = b.sent[-1]
    assert out.source == POLICY and (out.observation_stamp_ns, out.observation_seq) == (b.seq * DT_NS, b.seq)
    assert out.robot_id == ROBOT_ID
    f = fields(out)
    np.testing.assert_allclose(f["position"], [target[n] for n in NAMES])
    np.testing.assert_array_equal(f["kp"], [order.index(n) + 1.0 for n in NAMES])
    np.testing.assert_array_equal(f["kd"], 0.3)
    np.testing.assert_array_equal(f["velocity"], 0.0)
    np.testing.assert_array_equal(f["effort"], 0.0)
    b.answer(command_msg(R.default_pos))  # empty gains: the description's
    np.testing.assert_array_equal(fields(b.sent[-1])["kp"], R.kp)
    assert b.node.rejected == 0 and b.node.clamped == 0


# -- validation and clamping -----------------------------------------------------------------------


def _nan_at(key: str, j: int = 4, value: float = math.nan) -> dict:
    values = np.array(R.default_pos if key == "position" else np.ones(N))
    values[j] = value
    return {"position": values} if key == "position" else {"position": R.default_pos, key: values}


BAD_COMMANDS = {
    "nan position": _nan_at("position"),
    "inf position": _nan_at("position", value=math.inf),
    "nan velocity": _nan_at("velocity"),
    "-inf effort": _nan_at("effort", value=-math.inf),
    "inf kp": _nan_at("kp", value=math.inf),
    "nan kd": _nan_at("kd", j=11),
    "unknown joint": {"position": R.default_pos, "names": [*NAMES[:-1], "tail_joint"]},
    "missing joint": {"position": R.default_pos[:-1], "names": NAMES[:-1]},
    "repeated joint": {"position": R.default_pos, "names": [*NAMES[:-1], NAMES[0]]},
    "short kd": {"position": R.default_pos, "kd": [0.5, 0.5, 0.5]},
    "no positions": {"position": []},
    "negative kp": {"position": R.default_pos, "kp": np.full(N, -5.0)},
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_invalid_command_is_rejected_and_the_last_output_is_held(case):
    # The Bench feeds each period's command after that period's tick (the worst phase): one missing
    # command is a 2-period gap at the next tick, which the default 1.75-period timeout damps.
    b = Bench(command_timeout_s=0.05).activate()
    good = R.default_pos + 0.1
    b.step(1, cmd=good)
    mark = len(b.sent)
    spec = dict(BAD_COMMANDS[case])
    b.h.feed("command", command_msg(spec.pop("position"), names=spec.pop("names", NAMES), **spec))
    assert len(b.sent) == mark and b.node.rejected == 1  # nothing forwarded
    b.h.advance(DT)  # the tick holds the last valid output
    held = fields(b.sent[-1])
    assert b.sent[-1].source == SAFETY
    np.testing.assert_array_equal(held["position"], good)
    np.testing.assert_array_equal(held["kp"], R.kp)
    assert b.node.mode == Mode.ACTIVE
    for m in b.sent:
        f = fields(m)
        assert all(np.all(np.isfinite(v)) for v in f.values())
        assert np.all(f["kp"] >= 0) and np.all(f["kd"] >= 0)


def test_a_policy_sending_only_garbage_is_damped_within_two_periods():
    b = Bench().activate()
    t_last = b.h.now_ns - DT_NS  # the last valid command was delivered one period ago
    b.step(5, cmd=command_msg(BAD_COMMANDS["nan position"]["position"]))
    first = next(m for m in b.sent if is_damping(m) and m.header.stamp_ns > t_last)
    assert first.header.stamp_ns - (t_last + DT_NS) <= 2 * DT_NS
    assert b.node.mode == Mode.DAMPING and "commands stale" in b.node.reason
    assert b.node.rejected == 5


def test_clamps_positions_to_soft_limits_and_gains_velocity_effort_to_caps():
    b = Bench(max_step=10.0, stop_torque_fraction=0.0).activate()
    pos = R.default_pos.copy()
    pos[0], pos[2], pos[7] = 5.0, -10.0, -0.6  # hip above, calf below, RL thigh below (lower -0.5236)
    b.answer(
        command_msg(pos, kp=np.full(N, 100.0), kd=np.full(N, 10.0), velocity=np.full(N, -99.0), effort=np.full(N, 1e3)),
    )
    f = fields(b.sent[-1])
    assert b.sent[-1].source == POLICY and b.node.clamped == 1 and b.node.rejected == 0
    assert f["position"][0] == pytest.approx(1.0472 - MARGIN)
    assert f["position"][2] == pytest.approx(-2.7227 + MARGIN)
    assert f["position"][7] == pytest.approx(-0.5236 + MARGIN)
    np.testing.assert_array_equal(np.delete(f["position"], [0, 2, 7]), np.delete(pos, [0, 2, 7]))
    np.testing.assert_array_equal(f["kp"], 2 * R.kp)  # max_kp_scale 2
    np.testing.assert_array_equal(f["kd"], 2 * R.kd)
    np.testing.assert_array_equal(f["velocity"], -R.velocity_limit)
    np.testing.assert_array_equal(f["effort"], R.effort_limit)
    assert set(b.node.problems) >= {"clamped position beyond soft limit", "clamped kp beyond cap"}


def test_targets_beyond_a_limit_press_the_stop_with_at_most_the_torque_budget():
    """Default stop_torque_fraction 1: overshoot beyond a soft limit ≤ effort_limit / kp."""
    b = Bench(max_step=10.0).activate()
    pos = R.default_pos.copy()
    pos[0], pos[2], pos[5] = 5.0, -10.0, -1.5  # FL hip far above, FL calf far below, FR calf inside
    pos[8] = R.pos_upper[8] - MARGIN + 0.5  # RL calf 0.5 rad beyond its soft limit: within 45.43/20
    b.answer(command_msg(pos, kp=np.full(N, 20.0)))
    f = fields(b.sent[-1])
    assert f["position"][0] == pytest.approx(1.0472 - MARGIN + 23.7 / 20.0)
    assert f["position"][2] == pytest.approx(-2.7227 + MARGIN - 45.43 / 20.0)
    assert f["position"][8] == pytest.approx(pos[8])  # a policy's ordinary overshoot passes unchanged
    assert f["position"][5] == -1.5
    # the torque with which each clamped target presses its joint into the soft limit is the rated effort
    assert 20.0 * (f["position"][0] - (1.0472 - MARGIN)) == pytest.approx(R.effort_limit[0])
    b.answer(command_msg(pos, kp=np.full(N, 40.0)))  # stiffer gains: less overshoot allowed
    assert fields(b.sent[-1])["position"][0] == pytest.approx(1.0472 - MARGIN + 23.7 / 40.0)


def test_max_step_limits_the_target_change_per_command():
    b = Bench(max_step=0.1).activate()
    target = R.default_pos + 0.35
    for _ in range(5):
        b.step(1, cmd=target)
    forwarded = [fields(m)["position"] - R.default_pos for m in b.sent if m.source == POLICY][-5:]
    np.testing.assert_allclose(forwarded, [[d] * N for d in (0.1, 0.2, 0.3, 0.35, 0.35)], atol=1e-12)
    assert b.node.clamped == 3


def test_rejections_log_one_line_per_kind_per_interval(caplog):
    b = Bench(log_interval_s=1.0).activate()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="krabgraph"):
        for _ in range(20):
            b.h.feed("command", command_msg(BAD_COMMANDS["nan position"]["position"]))
        b.h.feed("command", command_msg(R.default_pos, names=[*NAMES[:-1], "tail_joint"]))
        b.h.advance(1.0)
        b.h.feed("command", command_msg(BAD_COMMANDS["nan position"]["position"]))
    lines = [r.getMessage() for r in caplog.records if r.name == "krabgraph.safety" and "rejected" in r.getMessage()]
    assert lines == [
        "rejected non-finite value: policy: position of FR_thigh_joint is nan; values must be finite",
        "rejected joint names: policy: unknown joint(s) ['tail_joint'], missing joint(s) ['RR_calf_joint']; "
        "commands must name every joint of 'go2' exactly once",
        "rejected non-finite value: policy: position of FR_thigh_joint is nan; values must be finite "
        "(+19 more since the last report)",
    ]
    assert b.node.rejected == 22


# -- watchdogs, e-stop, attitude -------------------------------------------------------------------


def test_policy_silence_damps_within_two_control_periods_and_keeps_damping():
    b = Bench().activate()
    t_last = b.h.now_ns - DT_NS  # the last valid command (the next period's is the first missing one)
    b.step(10)  # states keep coming, commands stop
    damping = [m for m in b.sent if m.header.stamp_ns > t_last and is_damping(m)]
    assert damping[0].header.stamp_ns - t_last == 2 * DT_NS  # the default command_timeout_s: 1.75 periods
    assert [m.header.stamp_ns for m in damping] == [t_last + k * DT_NS for k in range(2, 12)]  # every period
    np.testing.assert_array_equal(fields(damping[-1])["position"], R.default_pos)  # the measured q
    assert b.modes[-1] == Mode.DAMPING and "commands stale" in b.statuses[-1].reason


def test_state_silence_damps_and_recovery_goes_through_soft_start():
    # (commands answering no new state are rejected and do not feed the command watchdog: a longer
    # command timeout lets this test see the state watchdog trip first)
    b = Bench(command_timeout_s=0.1).activate(cmd=R.default_pos + 0.1)
    t_miss = b.h.now_ns
    b.step(6, cmd=R.default_pos + 0.1, state=False)  # the policy keeps publishing (e.g. on a stale state)
    after = [m for m in b.sent if m.header.stamp_ns >= t_miss]
    first = next(m for m in after if is_damping(m))
    assert first.header.stamp_ns - t_miss == 2 * DT_NS
    assert all(m.source == SAFETY for m in after if m.header.stamp_ns > first.header.stamp_ns)
    assert "robot state stale" in b.node.reason
    mark = len(b.sent)
    b.step(1, q=CROUCH, cmd=R.default_pos + 0.1)  # the robot sagged while damped
    assert b.node.mode == Mode.SOFT_START
    np.testing.assert_array_equal(fields(b.sent[mark])["position"], CROUCH)  # the ramp starts where it is
    b.step(round(0.2 / DT) + 1, cmd=R.default_pos + 0.1)
    assert b.modes == [Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE, Mode.DAMPING, Mode.SOFT_START, Mode.ACTIVE]


def _bad_state(case: str) -> RobotState:
    if case == "nan joint":
        return state_msg(np.where(np.arange(N) == 3, math.nan, R.default_pos))
    if case == "missing joint":
        return state_msg(R.default_pos[:-1], names=NAMES[:-1])
    msg = state_msg(R.default_pos)
    msg.imu.orientation.w = 0.0  # e.g. an IMU that never filled it in
    return msg


@pytest.mark.parametrize("case", ["nan joint", "missing joint", "zero quaternion"])
def test_unusable_states_are_ignored_and_do_not_feed_the_watchdog(case):
    b = Bench(command_timeout_s=0.1).activate()  # (the commands answer no usable state: rejected, see above)
    t_miss = b.h.now_ns
    for _ in range(4):
        b.h.feed("state", _bad_state(case))
        b.h.feed("command", command_msg(R.default_pos))
        b.h.advance(DT)
    first = next(m for m in b.sent if m.header.stamp_ns >= t_miss and is_damping(m))
    assert first.header.stamp_ns - t_miss == 2 * DT_NS and "robot state stale" in b.node.reason
    np.testing.assert_array_equal(fields(first)["position"], R.default_pos)  # the last usable q
    assert b.node.bad_states == 4


def test_estop_latches_until_an_explicit_reset():
    b = Bench().activate(cmd=R.default_pos + 0.1)
    mark = len(b.sent)
    b.h.feed("estop", EStop(engage=True, reason="button"))
    assert len(b.sent) == mark + 1 and is_damping(b.sent[-1])  # at once, not at the next tick
    assert b.statuses[-1].mode == Mode.ESTOP and b.statuses[-1].reason == "e-stop engaged: button"
    b.step(50, cmd=R.default_pos + 0.1)  # fresh state and commands do not clear it
    b.h.feed("estop", EStop())  # neither does a message without reset
    b.node.deactivate()  # nor a restart of the node
    b.node.activate()
    b.step(5, cmd=R.default_pos + 0.1)
    assert b.node.mode == Mode.ESTOP
    assert all(is_damping(m) for m in b.sent[mark:])
    b.step(3, state=False)
    b.h.feed("estop", EStop(reset=True))  # refused: the robot state is stale
    assert b.node.mode == Mode.ESTOP
    b.h.feed("estop", EStop(engage=True, reset=True))  # engage wins
    b.step(1, cmd=R.default_pos + 0.1)
    assert b.node.mode == Mode.ESTOP
    b.h.feed("estop", EStop(reset=True, reason="checked"))
    assert b.node.mode == Mode.SOFT_START
    b.step(round(0.2 / DT) + 1, cmd=R.default_pos + 0.1)
    assert b.node.mode == Mode.ACTIVE and b.sent[-1].source == POLICY


@pytest.mark.parametrize(("roll", "pitch"), [(1.2, 0.0), (0.0, -1.2), (-2.5, 0.3)])
def test_attitude_trip_latches_until_reset_while_upright(roll, pitch):
    b = Bench().activate()
    b.step(5, roll=0.95, pitch=-0.95, cmd=R.default_pos)  # within the 1 rad limit
    assert b.node.mode == Mode.ACTIVE
    mark = len(b.sent)
    b.h.feed("state", state_msg(R.default_pos, roll, pitch))
    assert b.node.mode == Mode.DAMPING and "attitude trip" in b.node.reason
    assert is_damping(b.sent[mark])
    b.step(20, cmd=R.default_pos)  # upright again with commands: still latched
    assert b.node.mode == Mode.DAMPING and all(is_damping(m) for m in b.sent[mark:])
    b.step(1, roll=roll, pitch=pitch, cmd=R.default_pos)
    b.h.feed("estop", EStop(reset=True))  # refused while tilted
    assert b.node.mode == Mode.DAMPING
    b.step(1, cmd=R.default_pos)
    b.h.feed("estop", EStop(reset=True))
    assert b.node.mode == Mode.SOFT_START
    b.step(round(0.2 / DT) + 1, cmd=R.default_pos)
    assert b.node.mode == Mode.ACTIVE


def test_base_height_trip_with_the_robot_level_latches_until_reset():
    """Folded legs, base 0.12 m up, no tilt: the attitude check cannot see it; the height check damps."""
    b = Bench().activate()
    b.step(10, base_z=0.30, cmd=R.default_pos)
    assert b.node.mode == Mode.ACTIVE and b.node.base_height == pytest.approx(0.30)
    b.step(1, base_z=0.16, cmd=CROUCH)  # low, but above the 0.15 m minimum
    b.step(5, base_z=0.12, cmd=CROUCH)  # below it for 4 periods (0.08 s) when the 5th state comes
    assert b.node.mode == Mode.ACTIVE
    mark = len(b.sent)
    b.step(1, base_z=0.12, cmd=CROUCH)  # 0.10 s below the minimum: min_base_height_s
    assert b.node.mode == Mode.DAMPING and is_damping(b.sent[mark])
    status = b.statuses[-1]
    assert status.mode == Mode.DAMPING and status.fault == Fault.FAULT_BASE_HEIGHT
    assert status.reason == "fall: base 0.12 m above z = 0 (base pose, no height scan) for 0.10 s (minimum 0.15 m)"
    b.step(20, base_z=0.30, cmd=R.default_pos)  # standing again with commands: still latched
    assert b.node.mode == Mode.DAMPING and all(is_damping(m) for m in b.sent[mark:])
    b.h.feed("estop", EStop(reset=True))  # a low base does not block the reset (a fallen robot must get up)
    assert b.node.mode == Mode.SOFT_START
    b.step(round(0.2 / DT) + 1, base_z=0.10, cmd=R.default_pos)  # lying during the soft start: not armed
    assert b.node.mode == Mode.ACTIVE and b.statuses[-1].fault == Fault.FAULT_NONE


def test_base_height_comes_from_the_height_scan_when_there_is_one():
    """On a 0.3 m deck the base z says 0.42 m; the scan says 0.12 m above the deck, which is what counts."""
    b = Bench().activate()
    b.step(10, base_z=0.05, scan=0.30, cmd=R.default_pos)  # in a pit below z = 0, standing: fine
    assert b.node.mode == Mode.ACTIVE and b.node.base_height == pytest.approx(0.30, abs=1e-6)
    b.step(10, base_z=0.42, scan=0.12, cmd=CROUCH)
    assert b.node.mode == Mode.DAMPING and b.statuses[-1].fault == Fault.FAULT_BASE_HEIGHT
    assert "fall: base 0.12 m above the ground under it (height scan)" in b.node.reason
    # the centre cells (within 0.1 m of the base) decide, whatever the terrain around is
    c = Bench().activate()
    c.h.feed("height_scan", scan_msg(0.30, around=0.05))
    c.step(1, base_z=0.30, cmd=R.default_pos)
    assert c.node.base_height == pytest.approx(0.30, abs=1e-6)
    c.h.feed("height_scan", scan_msg(0.10, shape=(10, 16)))  # even sizes: the 2 x 2 cells around the base
    c.step(1, base_z=0.30, cmd=R.default_pos)
    assert c.node.base_height == pytest.approx(0.10, abs=1e-6)
    # a look-ahead grid (centre 0.4 m ahead): the cells around the base, not the grid's middle, decide
    c.h.feed("height_scan", scan_msg(0.20, around=0.45, center_x=0.4))
    c.step(1, base_z=0.30, cmd=R.default_pos)
    assert c.node.base_height == pytest.approx(0.20, abs=1e-6)
    # a stale scan (older than state_timeout_s) gives way to the base pose
    c.step(3, base_z=0.31, cmd=R.default_pos)
    assert c.node.base_height == pytest.approx(0.31) and c.node.mode == Mode.ACTIVE


def test_ground_span_takes_the_base_height_over_the_lower_ground_at_either_end():
    """Astride a 0.35 m step edge: 0.10 m over the upper deck under the base, 0.45 m over the lower
    deck 0.25 m behind. Without ground_span that trips; with it (the parkour trainer's fall) it
    does not, and a base that is low over both ends still trips."""

    def astride(under: float, behind: float, ahead: float = 0.2) -> HeightScan:
        msg = scan_msg(under, around=ahead)
        heights = to_numpy(msg.heights).copy()
        heights[:, :7] = behind - msg.offset  # the columns behind the base's (column 8 of 17)
        set_array(msg.heights, heights, np.float32)
        return msg

    for span, tripped in ((0.0, True), (0.25, False)):
        b = Bench(ground_span=span).activate()
        for _ in range(10):
            b.h.feed("height_scan", astride(0.10, 0.45))
            b.step(1, base_z=0.45, cmd=R.default_pos)
        assert (b.node.mode == Mode.DAMPING) is tripped, span
        assert b.node.base_height == pytest.approx(0.45 if span else 0.10, abs=1e-6)
    low = Bench(ground_span=0.25).activate()
    for _ in range(10):
        low.h.feed("height_scan", astride(0.10, 0.12, ahead=0.10))
        low.step(1, base_z=0.45, cmd=R.default_pos)
    assert low.node.mode == Mode.DAMPING and low.node.base_height == pytest.approx(0.12, abs=1e-6)


def test_base_height_check_is_off_without_base_pose_or_scan_and_with_zero_minimum():
    b = Bench().activate()
    b.step(20, cmd=CROUCH)  # a real robot's state: no base pose, and no scan
    assert b.node.mode == Mode.ACTIVE and b.node.base_height is None
    z = Bench(min_base_height=0.0).activate()
    z.step(20, base_z=0.02, cmd=CROUCH)
    assert z.node.mode == Mode.ACTIVE


def test_fall_limits_come_from_the_robot_description_unless_the_graph_sets_them(tmp_path):
    """go2.yaml's ``fall:`` (0.15 m, 1 rad) is the default; another description's limits apply as
    written, and the graph's parameters win over both."""
    import yaml

    assert (R.fall_min_base_height, R.fall_max_tilt) == (0.15, 1.0)
    raw = yaml.safe_load(R.source.read_text())
    raw["fall"] = {"min_base_height": 0.25, "max_tilt": 0.5}
    path = tmp_path / "tall_go2.yaml"
    path.write_text(yaml.safe_dump(raw))
    tall = Bench(robot=str(path)).activate()
    tall.step(10, base_z=0.22, cmd=CROUCH)  # fine for go2.yaml, a fall for this description
    assert tall.node.mode == Mode.DAMPING and tall.node.reason.endswith("(minimum 0.25 m)")
    tilted = Bench(robot=str(path)).activate()
    tilted.step(1, roll=0.6, cmd=R.default_pos)
    assert tilted.node.mode == Mode.DAMPING and "(limit 0.5 rad)" in tilted.node.reason
    overridden = Bench(robot=str(path), min_base_height=0.1, attitude_limit=1.0).activate()
    overridden.step(10, base_z=0.22, roll=0.6, cmd=CROUCH)
    assert overridden.node.mode == Mode.ACTIVE


def _bad_scan(case: str) -> HeightScan:
    """A scan whose centre reads 0.10 m, made unusable as ``case`` says."""
    msg = scan_msg(0.10)
    if case == "flat array":
        set_array(msg.heights, to_numpy(msg.heights).reshape(-1), np.float32)
    elif case == "no resolution":
        msg.resolution = 0.0
    else:  # bytes that do not fill the shape
        msg.heights.data = msg.heights.data[:-4]
    return msg


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("flat array", "ignored height scan: shape"),
        ("no resolution", "ignored height scan: shape"),
        ("short data", "ignored height scan: malformed"),
    ],
)
def test_unusable_height_scans_are_ignored_and_counted(case, kind):
    b = Bench().activate()
    b.h.feed("height_scan", _bad_scan(case))
    b.step(10, base_z=0.30, cmd=R.default_pos)
    assert b.node.mode == Mode.ACTIVE and b.node.problems == {kind: 1}
    assert b.node.base_height == pytest.approx(0.30)


def test_status_fault_names_each_cause_and_a_normal_end_is_no_fault():
    b = Bench().activate()
    b.step(5)  # states, no commands
    assert (b.statuses[-1].mode, b.statuses[-1].fault) == (Mode.DAMPING, Fault.FAULT_COMMANDS_STALE)
    b.h.advance(0.1)  # no state either: still the first fault
    assert b.statuses[-1].fault == Fault.FAULT_COMMANDS_STALE
    quiet = Bench().activate()
    quiet.h.advance(0.1)  # nothing at all: the state is checked first
    assert (quiet.statuses[-1].mode, quiet.statuses[-1].fault) == (Mode.DAMPING, Fault.FAULT_STATE_STALE)
    b.step(2, cmd=R.default_pos)
    assert (b.statuses[-1].mode, b.statuses[-1].fault) == (Mode.SOFT_START, Fault.FAULT_NONE)
    b.h.feed("estop", EStop(engage=True))
    assert (b.statuses[-1].mode, b.statuses[-1].fault) == (Mode.ESTOP, Fault.FAULT_ESTOP)
    b.h.stop()  # deactivated while latched: the fault stays named
    assert (b.statuses[-1].mode, b.statuses[-1].fault) == (Mode.ESTOP, Fault.FAULT_ESTOP)
    s = Bench().activate()
    s.step(1, roll=1.2, cmd=R.default_pos)
    assert (s.statuses[-1].mode, s.statuses[-1].fault) == (Mode.DAMPING, Fault.FAULT_ATTITUDE)
    n = Bench().activate()
    n.h.stop()  # deactivated while ACTIVE: damping, but no fault
    assert (n.statuses[-1].mode, n.statuses[-1].fault, n.statuses[-1].reason) == (
        Mode.DAMPING,
        Fault.FAULT_NONE,
        "safety node deactivated",
    )


def test_operator_wins_while_fresh_then_the_policy_resumes():
    b = Bench().activate()
    policy, operator = R.default_pos + 0.1, R.default_pos - 0.1
    b.step(2, cmd=policy)
    mark = len(b.sent)
    b.step(10, cmd=policy, operator=operator)
    during = b.sent[mark + 1 :]  # the first period's policy command went out before the operator's
    assert during and all(m.source == OPERATOR for m in during)
    assert all(np.allclose(fields(m)["position"], operator) for m in during)
    assert b.statuses[-1].reason == "forwarding operator commands"
    mark = len(b.sent)
    b.step(5, cmd=policy)  # the operator goes quiet
    resumed = next(i for i, m in enumerate(b.sent[mark:]) if m.source == POLICY)
    assert resumed <= 3  # within the command timeout, holding the operator's last target meanwhile
    assert all(np.allclose(fields(m)["position"], operator) for m in b.sent[mark : mark + resumed])
    assert b.node.mode == Mode.ACTIVE and b.modes[-1] == Mode.ACTIVE
    assert b.statuses[-1].reason == "forwarding policy commands"


def test_deactivate_sends_damping_last():
    b = Bench().activate(cmd=R.default_pos + 0.1)
    b.step(1, q=CROUCH, cmd=R.default_pos + 0.1)
    b.h.stop()
    assert is_damping(b.sent[-1])
    np.testing.assert_array_equal(fields(b.sent[-1])["position"], CROUCH)
    assert b.statuses[-1].mode == Mode.DAMPING and "deactivated" in b.statuses[-1].reason


def test_status_heartbeat_and_counters():
    b = Bench(status_hz=2.0).activate()
    before = len(b.statuses)
    b.step(round(1.0 / DT), cmd=R.default_pos)
    assert len(b.statuses) - before == 2  # nothing changed: two heartbeats in one second
    b.h.feed("command", command_msg(BAD_COMMANDS["nan kd"]["position"], kd=BAD_COMMANDS["nan kd"]["kd"]))
    b.step(round(0.5 / DT), cmd=R.default_pos + 5.0)
    b.h.advance(0.5)  # commands stop: DAMPING, and its status carries the counters
    assert b.statuses[-1].mode == Mode.DAMPING
    assert (b.statuses[-1].rejected, b.statuses[-1].clamped) == (1, 25)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"soft_limit_margin": 1.0}, "closes FL_calf_joint's range"),
        ({"command_timeout_s": 0.02}, "command_timeout_s = 0.02 s must exceed the control period"),
        ({"robot": "spot"}, "unknown robot 'spot'"),
    ],
)
def test_bad_configuration_is_refused(params, message):
    with pytest.raises(ParamError, match=message):
        NodeHarness(Safety, **params).start()


# -- fault injection in whole graphs ---------------------------------------------------------------


class RecordingRobot(LoggingRobot):
    """LoggingRobot whose joints keep settling towards their targets while it publishes no states."""

    def tick(self) -> None:
        if not self.muted():
            super().tick()
        else:
            self.q += self.gain * (self.target - self.q)


class ScriptedPolicy(Node):
    """Answers each state with default pose + ``offset``; from ``fault_after_s`` on, misbehaves as told."""

    kind = "policy"
    fault = Param(str, "none", "what goes wrong", choices=("none", "nan", "silent", "raise"))
    fault_after_s = Param(float, 1.0, "when it starts going wrong", unit="s")
    offset = Param(float, 0.1, "added to every default joint position", unit="rad")
    state = Input(RobotState)
    joint_command = Output(JointCommand)

    def on_state(self, msg: RobotState) -> None:
        faulty = self.fault != "none" and self.now_ns() >= round(self.fault_after_s * 1e9)
        if faulty and self.fault == "silent":
            return
        if faulty and self.fault == "raise":
            raise RuntimeError("policy blew up")
        names = list(msg.joints.name)
        target = R.default_pos[R.indices(names)] + self.offset
        if faulty:
            target[4] = math.nan
        cmd = command_msg(target, names=names, seq=msg.header.seq)
        cmd.observation_stamp_ns, cmd.robot_id = msg.header.stamp_ns, msg.robot_id  # the state it answers
        self.joint_command.publish(cmd)


class StatusLog(Node):
    """Records every SafetyStatus (output ports bound to an executor keep no ``sent`` history)."""

    kind = "recorder"
    status = Input(SafetyStatus, queue=100)

    def on_configure(self) -> None:
        self.got: list[SafetyStatus] = []

    def on_status(self, msg: SafetyStatus) -> None:
        self.got.append(msg)


def run_graph(duration: float = 2.0, policy: dict | None = None, robot: dict | None = None) -> Executor:
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {  # the log first: shutdown deactivates in reverse order, so it sees safety's last status
                "log": {"class": StatusLog, "inputs": {"status": "safety/status"}},
                "robot": {
                    "class": RecordingRobot,
                    "params": robot or {},
                    "inputs": {"command": "safety/joint_command"},
                },
                "policy": {"class": ScriptedPolicy, "params": policy or {}, "inputs": {"state": "robot/state"}},
                "safety": {
                    "class": Safety,
                    "params": {"soft_start_s": 0.5},
                    "inputs": {"state": "robot/state", "command": "policy/joint_command"},
                },
            },
        }
    )
    ex = Executor(build_graph(graph))
    assert ex.run(duration_s=duration, handle_signals=False) == 0
    assert ex.clock.now_ns() == round(duration * 1e9)  # the graph ran to the end
    return ex


def check_hal_commands(received: list[tuple[int, JointCommand]], max_gap_ns: int = 2 * DT_NS) -> None:
    """Every command the HAL saw: finite, within the soft limits if stiff, no gap over ``max_gap_ns``."""
    times = [t for t, _ in received]
    assert max(np.diff(times)) <= max_gap_ns
    for _, m in received:
        f = fields(m)
        assert all(np.all(np.isfinite(v)) for v in f.values())
        if np.any(f["kp"] > 0):
            assert np.all((f["position"] >= LOWER) & (f["position"] <= UPPER))


def test_graph_closed_loop_soft_starts_then_follows_the_policy():
    ex = run_graph(1.5)
    robot, safety = ex.nodes["robot"], ex.nodes["safety"]
    check_hal_commands(robot.received, max_gap_ns=DT_NS)
    np.testing.assert_allclose(robot.q, R.default_pos + 0.1, atol=1e-6)
    assert robot.rejected == 0 and safety.rejected == 0
    sources = [m.source for _, m in robot.received]
    first_policy = sources.index(POLICY)
    assert set(sources[:first_policy]) == {SAFETY} and robot.received[first_policy][0] >= 500_000_000
    modes = [s.mode for s in ex.nodes["log"].got]
    assert Mode.DAMPING not in modes[:-1] and modes[-1] == Mode.DAMPING  # damped only by the shutdown
    assert ex.nodes["log"].got[-1].fault == Fault.FAULT_NONE  # which is no fault
    t_last, last = robot.received[-1]
    assert is_damping(last) and t_last == 1_500_000_000  # the HAL's last command: damping at shutdown


@pytest.mark.parametrize("fault", ["nan", "silent", "raise"])
def test_graph_policy_fault_damps_within_two_periods_and_the_graph_keeps_running(fault):
    ex = run_graph(2.0, policy={"fault": fault, "fault_after_s": 1.0})
    robot, safety = ex.nodes["robot"], ex.nodes["safety"]
    check_hal_commands(robot.received)
    after = [(t, m) for t, m in robot.received if t >= 1_000_000_000]
    t_damp = next(t for t, m in after if is_damping(m))
    assert t_damp - 1_000_000_000 <= 2 * DT_NS  # the first bad or missing command was due at 1.0 s
    before_damp = [m for t, m in after if t < t_damp]
    assert all(m.source == SAFETY and np.allclose(fields(m)["position"], R.default_pos + 0.1) for m in before_damp)
    damped = [(t, m) for t, m in after if t >= t_damp]
    assert all(is_damping(m) for _, m in damped)
    assert [t for t, _ in damped] == list(range(t_damp, 2_000_000_001, DT_NS))  # one per period, to the end
    np.testing.assert_allclose(robot.q, R.default_pos + 0.1, atol=1e-6)  # damped where it stood
    assert robot.rejected == 0
    trips = [s for s in ex.nodes["log"].got if s.mode == Mode.DAMPING]
    assert "commands stale" in trips[0].reason and trips[-1].reason == "safety node deactivated"
    assert trips[0].fault == trips[-1].fault == Fault.FAULT_COMMANDS_STALE  # still in the fault at the end
    assert safety.rejected == (50 if fault == "nan" else 0)  # a NaN every period from 1.0 s to 1.98 s
    if fault == "raise":
        assert len(ex.failures) == 4 and ex.restarts["policy"] == 3  # restarted 3 times, then stopped
        assert "RuntimeError: policy blew up" in ex.failures[0][2]


def test_graph_state_loss_damps_within_two_periods():
    ex = run_graph(1.5, robot={"mute_after_s": 1.0})
    robot, safety = ex.nodes["robot"], ex.nodes["safety"]
    check_hal_commands(robot.received)
    t_damp = next(t for t, m in robot.received if t >= 1_000_000_000 and is_damping(m))
    assert t_damp - 1_000_000_000 <= 2 * DT_NS
    damped = [(t, m) for t, m in robot.received if t >= t_damp]
    assert all(is_damping(m) for _, m in damped)
    assert [t for t, _ in damped] == list(range(t_damp, 1_500_000_001, DT_NS))
    trips = [s for s in ex.nodes["log"].got if s.mode == Mode.DAMPING]
    assert "robot state stale" in trips[0].reason and safety.rejected == 0
    assert trips[0].fault == trips[-1].fault == Fault.FAULT_STATE_STALE


# -- the hot path gives what the step-by-step code gives ----------------------------------------------


def _state_outcome(node: Safety, read) -> tuple:
    ok = read()
    q = None if node.q is None else node.q.tobytes()
    return ok, q, node.tilt, node.state_ref, node.bad_states, dict(node.problems)


def test_fast_state_read_gives_exactly_what_the_checked_read_gives():
    fast = NodeHarness(Safety, robot="go2").start().node
    checked = NodeHarness(Safety, robot="go2").start().node
    rng = np.random.default_rng(5)
    for step in range(400):
        names = [NAMES, NAMES[::-1], NAMES[4:] + NAMES[:4]][step % 3]
        q = rng.uniform(-1, 1, N)
        problem = rng.integers(0, 12)
        if problem == 0:
            q[3] = math.nan
        elif problem == 1:
            q[0] = 1e308  # finite: a sum overflows, the checked path decides
            q[1] = 1e308
        msg = state_msg(q, roll=rng.uniform(-1, 1), pitch=rng.uniform(-1, 1), names=names)
        msg.header.stamp_ns, msg.header.seq = int(rng.integers(0, 2**50)), step
        if problem == 2:
            msg.imu.orientation.w *= 1.5  # not a unit quaternion
        elif problem == 3:
            set_array(msg.joints.position, q.astype(np.float32))
        elif problem == 4:
            del msg.joints.name[-1]
        elif problem == 5:
            msg.joints.position.shape[:] = [N + 1]
        msg = RobotState.FromString(msg.SerializeToString())
        got = _state_outcome(fast, lambda msg=msg: fast._read_state(msg, fast.now_ns()))
        assert got == _state_outcome(checked, lambda msg=msg: checked._read_state_checked(msg, checked.now_ns())), step
    assert fast.bad_states > 20 and len(fast._state_wire.orders) == 3


def _reference_limit(node: Safety, values: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Safety's limits one array at a time, as they were first written: the output and the clamp kinds."""
    r = node.description
    position_in, velocity, effort, kp_in, kd_in = values
    kp = np.minimum(kp_in, node.kp_max)
    reach = node.stop_torque_fraction * r.effort_limit / np.maximum(kp, 1e-9)
    reach = np.where(kp > 0, np.minimum(reach, np.pi), 0.0)
    position = np.clip(position_in, node.lower - reach, node.upper + reach)
    stepped = np.clip(position, ref - node.max_step, ref + node.max_step)
    out = np.stack(
        [
            stepped,
            np.clip(velocity, -r.velocity_limit, r.velocity_limit),
            np.clip(effort, -r.effort_limit, r.effort_limit),
            kp,
            np.minimum(kd_in, node.kd_max),
        ]
    )
    pairs = [("position beyond soft limit", position_in, position), ("target step beyond max_step", position, stepped)]
    pairs += [
        (f"{kind}", before, after)
        for kind, before, after in zip(
            ("velocity beyond limit", "effort beyond limit", "kp beyond cap", "kd beyond cap"),
            values[1:],
            out[1:],
            strict=True,
        )
    ]
    return out, [f"clamped {kind}" for kind, before, after in pairs if (before != after).any()]


def test_forwarding_limits_give_exactly_what_the_step_by_step_limits_give():
    h = NodeHarness(Safety, robot="go2", soft_start_s=0.0).start()
    node, sent = h.node, h.outputs["joint_command"]
    h.feed("state", state_msg(R.default_pos))
    h.advance(DT)
    h.feed("command", command_msg(R.default_pos))
    h.advance(DT)
    assert node.mode == Mode.ACTIVE
    parser, rng, clamps = CommandParser.for_robot(R), np.random.default_rng(11), 0
    for step in range(300):
        names = [NAMES, NAMES[::-1]][step % 2]
        spread = [0.05, 0.05, 0.3, 3.0][step % 4]
        wide = 1.5 if step % 4 == 3 else 0.9  # beyond the limits and caps, or within them
        arrays = {
            "velocity": rng.uniform(-wide, wide, N) * R.velocity_limit,
            "effort": rng.uniform(-wide, wide, N) * R.effort_limit,
            "kp": rng.uniform(0, 2 * wide, N) * R.kp,
            "kd": rng.uniform(0, 2 * wide, N) * R.kd,
        }
        arrays = {k: v for k, v in arrays.items() if rng.random() < 0.7}
        msg = command_msg(R.default_pos + rng.uniform(-spread, spread, N), names=names, seq=step + 1, **arrays)
        ref = node.target.values[0].copy()
        problems = dict(node.problems)
        want, kinds = _reference_limit(node, parser.columns(msg)[0], ref)
        h.feed("state", state_msg(R.default_pos, seq=step + 1))
        h.feed("command", msg)
        got = np.stack(list(fields(sent[-1]).values()))
        assert got.tobytes() == want.tobytes(), step
        changed = {k for k, v in node.problems.items() if v != problems.get(k, 0)}
        assert changed == set(kinds), step
        clamps += bool(kinds)
    assert node.clamped == clamps and 50 < clamps < 300
