"""The HAL contract: one command parser with one meaning, shared by Safety and every HAL; publish order;
status line; `check` warns for a backend that ignores gains."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import astuple

import numpy as np
import pytest

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.launch.cli.main import main
from krabgraph.msgs import CommandSource, JointCommand, RobotState, set_array, to_numpy
from krabgraph.nodes.demo import FakeRobot
from krabgraph.nodes.hal import CommandError, CommandParser, Hal
from krabgraph.nodes.isaac.adapter import IsaacAdapter
from krabgraph.nodes.isaac.hal import IsaacHal
from krabgraph.nodes.isaac.standin import StandInIsaacEnv
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.safety import Safety

GO2 = load_robot("go2")
NAMES = list(GO2.joint_names)
N = len(NAMES)
FIX = "commands must name every joint of 'go2' exactly once"


def command(names: list[str], position, **extra) -> JointCommand:
    msg = JointCommand(name=names, source=CommandSource.POLICY)
    set_array(msg.position, np.asarray(position, dtype=np.float64))
    for key, values in extra.items():
        set_array(getattr(msg, key), np.asarray(values, dtype=np.float64))
    return msg


def nan_at(key: str, j: int, value: float = math.nan) -> np.ndarray:
    values = np.ones(N)
    values[j] = value
    return values


P = GO2.default_pos
# name -> (command, exact CommandError message)
BAD = {
    "no names": (command([], []), f"no joint names; {FIX} ({', '.join(NAMES)})"),
    "unknown": (
        command([*NAMES[:-1], "tail_joint"], P),
        f"unknown joint(s) ['tail_joint'], missing joint(s) ['RR_calf_joint']; {FIX}",
    ),
    "missing": (command(NAMES[:-1], P[:-1]), f"missing joint(s) ['RR_calf_joint']; {FIX}"),
    "subset": (command(NAMES[:2], P[:2]), f"missing joint(s) {NAMES[2:]}; {FIX}"),
    "repeated": (command([*NAMES[:-1], NAMES[1]], P), f"repeated joint(s) ['{NAMES[1]}']; {FIX}"),
    "short position": (
        command(NAMES, P[:-1]),
        "position: expected 12 values (one per joint, in the order of `name`), got 11",
    ),
    "no position": (command(NAMES, []), "position: expected 12 values (one per joint, in the order of `name`), got 0"),
    "short kd": (
        command(NAMES, P, kd=[0.5] * 3),
        "kd: expected 12 values (one per joint, in the order of `name`), "
        "got 3; or leave it empty for the description's gains",
    ),
    "long velocity": (
        command(NAMES, P, velocity=np.zeros(13)),
        "velocity: expected 12 values (one per joint, in the order of `name`), got 13; or leave it empty for 0",
    ),
    "nan position": (command(NAMES, nan_at("position", 4)), f"position of {NAMES[4]} is nan; values must be finite"),
    "inf effort": (
        command(NAMES, P, effort=nan_at("effort", 0, -math.inf)),
        f"effort of {NAMES[0]} is -inf; values must be finite",
    ),
    "nan kd": (command(NAMES, P, kd=nan_at("kd", 11)), f"kd of {NAMES[11]} is nan; values must be finite"),
    "negative kp": (command(NAMES, P, kp=nan_at("kp", 7, -5.0)), f"kp of {NAMES[7]} is -5.0; gains must be >= 0"),
    "negative kd": (command(NAMES, P, kd=-np.ones(N)), f"kd of {NAMES[0]} is -1.0; gains must be >= 0"),
}


# -- the parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD))
def test_parser_names_each_problem_exactly(case):
    msg, message = BAD[case]
    with pytest.raises(CommandError) as err:
        CommandParser.for_robot(GO2).parse(msg)
    assert str(err.value) == message


def test_parser_refuses_a_malformed_array():
    msg = command(NAMES, P)
    msg.kp.data = b"\x00" * 5  # 5 bytes of FLOAT64
    msg.kp.dtype = msg.position.dtype
    msg.kp.shape.extend([12])
    with pytest.raises(CommandError) as err:
        CommandParser.for_robot(GO2).parse(msg)
    assert str(err.value).startswith("kp: ") and err.value.kind == "malformed array"


def test_parser_maps_by_name_and_fills_empty_columns_with_defaults():
    parser = CommandParser.for_robot(GO2)
    order = NAMES[::-1]
    t = parser.parse(command(order, np.arange(N, dtype=float)[::-1] * 0.1))
    np.testing.assert_array_equal(t.position, np.arange(N) * 0.1)  # description order
    np.testing.assert_array_equal(t.velocity, np.zeros(N))
    np.testing.assert_array_equal(t.effort, np.zeros(N))
    np.testing.assert_array_equal(t.kp, GO2.kp)
    np.testing.assert_array_equal(t.kd, GO2.kd)
    assert not t.gains_given
    t2 = parser.parse(command(order, np.zeros(N), kp=np.arange(N, dtype=float)))
    np.testing.assert_array_equal(t2.kp, np.arange(N)[::-1])
    assert t2.gains_given
    t2.kp[:] = -1.0  # targets are the caller's: the parser's defaults are not shared
    np.testing.assert_array_equal(parser.parse(command(NAMES, P)).kp, GO2.kp)


# -- the same command, the same verdict everywhere ---------------------------------------------------


def _safety_verdicts(msgs: list[JointCommand], caplog) -> list[str]:
    """The rejection text Safety logs for each message (one Safety per message: no rate limiting)."""
    out = []
    for msg in msgs:
        h = NodeHarness(Safety, robot="go2").start()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="krabgraph.safety"):
            h.feed("command", msg)
        assert h.node.rejected == 1
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected")]
        out.append(line.split(": policy: ", 1)[1])
    return out


def _hal_verdicts(h: NodeHarness, msgs: list[JointCommand], caplog) -> list[str]:
    out = []
    for k, msg in enumerate(msgs, start=1):
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            h.feed("command", msg)
        assert h.node.rejected == k
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected joint command")]
        out.append(re.fullmatch(r"rejected joint command \((.*)\); keeping the last valid targets", line)[1])
    return out


def _state(q: np.ndarray) -> RobotState:
    msg = RobotState()
    msg.joints.name.extend(NAMES)
    set_array(msg.joints.position, np.asarray(q, dtype=np.float64))
    msg.imu.orientation.w = 1.0
    return msg


def _forwarded_by_safety() -> JointCommand:
    """A command Safety forwards (ACTIVE, from the policy): kp 30, default pose + 0.05 rad, shuffled in."""
    h = NodeHarness(Safety, robot="go2", soft_start_s=0.0).start()
    h.feed("state", _state(GO2.default_pos))
    h.feed("command", command(NAMES[::-1], (GO2.default_pos + 0.05)[::-1], kp=np.full(N, 30.0)))
    sent = h.outputs["joint_command"][-1]
    assert sent.source == CommandSource.POLICY
    return sent


BAD_MSGS = [BAD[k][0] for k in BAD]
BAD_TEXT = [BAD[k][1] for k in BAD]


def test_safety_rejects_each_bad_command_with_the_parser_message(caplog):
    assert _safety_verdicts(BAD_MSGS, caplog) == BAD_TEXT


def test_mujoco_hal_rejects_what_safety_rejects_and_accepts_what_it_forwards(caplog):
    pytest.importorskip("mujoco")
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.0).start()
    h.feed("command", _forwarded_by_safety())
    assert h.node.rejected == 0 and h.node.executing == "policy"
    before = h.node.sim._cmd.q.copy()
    assert _hal_verdicts(h, BAD_MSGS, caplog) == BAD_TEXT
    np.testing.assert_array_equal(h.node.sim._cmd.q, before)  # the last valid targets stay
    np.testing.assert_allclose(before, GO2.default_pos + 0.05)


def test_fake_robot_rejects_what_safety_rejects_and_accepts_what_it_forwards(caplog):
    h = NodeHarness(FakeRobot, joints=NAMES).start()
    h.feed("command", _forwarded_by_safety())
    assert h.node.rejected == 0
    # The fake robot has no description: its parser says "fake_robot" where Safety says "go2".
    want = [t.replace("'go2'", "'fake_robot'") for t in BAD_TEXT]
    assert _hal_verdicts(h, BAD_MSGS, caplog) == want
    np.testing.assert_allclose(h.node.target, GO2.default_pos + 0.05)


class StandInIsaacHal(IsaacHal):
    """IsaacHal on the stand-in Isaac Lab environment (no Isaac Sim here; see test_isaac_hal.py)."""

    def make_adapter(self, description):
        env = StandInIsaacEnv()
        return IsaacAdapter(env, feet=description.foot_geoms, observation_group=self.lab_observation_group)


def test_isaac_hal_rejects_the_same_problems(caplog):
    anymal = load_robot("anymal_d")
    h = NodeHarness(StandInIsaacHal, status_period_s=0.0).start()
    names = list(anymal.joint_names)
    msgs = [command(names[:-1], anymal.default_pos[:-1]), command(names, [math.nan] * 12)]
    want = [
        f"missing joint(s) ['{names[-1]}']; commands must name every joint of 'anymal_d' exactly once",
        f"position of {names[0]} is nan; values must be finite",
    ]
    assert _hal_verdicts(h, msgs, caplog) == want
    safety = NodeHarness(Safety, robot="anymal_d").start()
    with caplog.at_level(logging.ERROR):
        for msg in msgs:
            safety.feed("command", msg)
    assert safety.node.rejected == 2 and all(w in caplog.text for w in want)
    h.feed("command", command(names[::-1], anymal.default_pos[::-1], kp=np.full(12, 80.0)))
    assert h.node.rejected == 2 and h.node._pending  # accepted; its gains ignored, said once
    assert caplog.text.count("kp/kd are ignored: the task's actuator models stay in charge") == 1


def test_go2_hal_rejects_what_safety_rejects_and_sends_what_it_forwards(caplog):
    pytest.importorskip("cyclonedds")
    from krabgraph.nodes.go2.dds import LOWCMD_TOPIC, open_participant
    from krabgraph.nodes.go2.hal import Go2Hal
    from krabgraph.nodes.go2.idl import LowCmd_

    domain = 100 + (os.getpid() + 61) % 100
    peer = open_participant(domain, "lo")
    reader = peer.reader(LOWCMD_TOPIC, LowCmd_, depth=50)
    h = NodeHarness(Go2Hal, domain_id=domain, status_period_s=0.0)
    try:
        h.start()
        time.sleep(0.3)
        assert _hal_verdicts(h, BAD_MSGS, caplog) == BAD_TEXT
        assert not [s for s in reader.take(N=50) if hasattr(s, "motor_cmd")]  # nothing sent for them
        h.feed("command", _forwarded_by_safety())
        assert h.node.rejected == len(BAD_MSGS)
        deadline, got = time.monotonic() + 5.0, []
        while not got and time.monotonic() < deadline:
            got = [s for s in reader.take(N=50) if hasattr(s, "motor_cmd")]
            time.sleep(0.02)
        assert got, "the forwarded command never reached the robot"
        slot = int(GO2.motor_index[0])
        assert got[-1].motor_cmd[slot].q == pytest.approx(GO2.default_pos[0] + 0.05, abs=1e-6)
        assert got[-1].motor_cmd[slot].kp == pytest.approx(30.0)
    finally:
        h.stop()
        peer.close()


# -- publish order, status line ---------------------------------------------------------------------


def test_mujoco_hal_publishes_clock_then_scan_then_state_at_one_instant():
    pytest.importorskip("mujoco")
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.0)
    order: list[tuple[str, int]] = []
    for key, port in h.node.output_ports().items():
        port.bind(lambda msg, key=key: order.append((key, msg.header.stamp_ns)))
    h.start()
    h.advance(0.04)
    assert order == [(k, t) for t in (0, 20_000_000, 40_000_000) for k in ("clock", "height_scan", "state")]


def test_status_line_reports_time_backend_rtf_rejections_and_the_command_executed(caplog):
    pytest.importorskip("mujoco")
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.5).start()
    h.feed("command", command(NAMES, P))  # a policy command with the description's gains
    h.feed("command", command(NAMES[:3], P[:3]))  # rejected
    with caplog.at_level(logging.INFO, logger="krabgraph.mujoco_hal"):
        h.advance(0.5)
        h.feed("command", command(NAMES, P, kp=np.zeros(N)))  # kp = 0: damping
        h.advance(0.5)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t=")]
    pattern = (
        r"t=  0\.50s  x= *-?\d+\.\d\dm y= *-?\d+\.\d\dm z=\d\.\d\dm  1 s mean: vx= *-?\d\.\d\dm/s vy= *-?\d\.\d\dm/s "
        r"yaw rate= *-?\d\.\d\drad/s  rtf=\d+\.\d  rejected=1  cmd=policy"
    )
    assert len(lines) == 2 and re.fullmatch(pattern, lines[0]), lines
    assert lines[1].startswith("t=  1.00s") and lines[1].endswith("rejected=1  cmd=DAMPING")


def test_status_line_is_off_with_a_zero_period(caplog):
    with caplog.at_level(logging.INFO):
        h = NodeHarness(FakeRobot, joints=["a"], status_period_s=0.0).start()
        h.advance(2.0)
    assert not [r for r in caplog.records if r.getMessage().startswith("t=")]


# -- gains -----------------------------------------------------------------------------------------


def test_a_backend_that_ignores_gains_says_so_in_check_and_once_at_run_time(capsys, caplog):
    (problem,) = IsaacHal.check_params(IsaacHal.validate_params({}))
    assert problem.warning and "IsaacHal ignores JointCommand kp/kd (the task's actuator models stay in charge)" in (
        problem.message
    )
    assert Hal.check_params({}) == [] and FakeRobot.check_params({}) == []
    assert main(["check", "parkour_isaac"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*parkour_isaac\.yaml:\d+: node 'hal': IsaacHal ignores JointCommand kp/kd", err), err
    assert main(["check", "walk"]) == 0
    assert "ignores JointCommand kp/kd" not in capsys.readouterr().err  # MuJoCo honours gains


def test_gains_are_honoured_by_mujoco():
    pytest.importorskip("mujoco")
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.0).start()
    q = to_numpy(h.outputs["state"][-1].joints.position)
    h.feed("command", command(NAMES, q + 0.1, kp=np.full(N, 10.0), kd=np.zeros(N)))
    h.advance(0.0025)  # one physics step from the same state: tau = kp * 0.1
    np.testing.assert_allclose(h.node.sim.joint_torque(q, np.zeros(N)), 1.0, atol=1e-9)


# -- the parser's fast path ---------------------------------------------------------------------------


def _verdict(fn) -> tuple:
    """What the parser made of a command: its values and gains flag, or the error's kind and text."""
    try:
        values, gains_given = fn()
    except CommandError as exc:
        return ("error", exc.kind, str(exc))
    return ("ok", values.dtype.str, values.shape, values.tobytes(), gains_given)


def _random_command(rng: np.random.Generator, step: int) -> JointCommand:
    """Commands in a few name orders and column sets, now and then with one problem of each kind."""
    order = [NAMES, NAMES[::-1], NAMES[6:] + NAMES[:6]][step % 3]
    msg = JointCommand(name=order, source=CommandSource.POLICY, observation_seq=step)
    msg.header.stamp_ns = int(rng.integers(0, 2**62)) >> int(rng.integers(0, 60))  # headers of every length
    msg.header.seq = step
    present = [k for k in ("velocity", "effort", "kp", "kd") if rng.random() < 0.6]
    columns = {"position": rng.uniform(-2, 2, N), **{k: rng.uniform(0, 30, N) for k in present}}
    problem = rng.integers(0, 16)
    key = list(columns)[int(rng.integers(0, len(columns)))]
    if problem == 0:
        columns[key][int(rng.integers(0, N))] = math.nan
    elif problem == 1:
        columns[key][int(rng.integers(0, N))] = -math.inf
    elif problem == 2 and key in ("kp", "kd"):
        columns[key][3] = -0.5
    elif problem == 3:
        columns[key][5] = 1e308  # finite; sums overflow: the fast path's test is only a shortcut
        columns[key][6] = 1e308
    elif problem == 4:
        columns[key][2] = -0.0
    for k, values in columns.items():
        set_array(getattr(msg, k), values, np.float32 if problem == 5 and k == key else np.float64)
    if problem == 6:
        msg.position.shape[:] = [3, 4]
    elif problem == 7:
        msg.velocity.shape[:] = [N + 1]
    elif problem == 8:
        del msg.kd.shape[:]
    elif problem == 9:
        set_array(msg.effort, np.zeros(0))  # present but empty
    elif problem == 10:
        msg.ClearField("position")
    elif problem == 11:
        msg.name[0] = "tail_joint"
    elif problem == 12:
        msg.name.append("tail_joint")
    return msg


def test_fast_parse_gives_exactly_what_the_checked_parse_gives():
    fast, rng = CommandParser.for_robot(GO2), np.random.default_rng(3)
    verdicts = []
    for step in range(600):
        msg = JointCommand.FromString(_random_command(rng, step).SerializeToString())
        reference = CommandParser.for_robot(GO2)  # never learns an order: always the checked path
        got = _verdict(lambda msg=msg: fast.columns(msg))
        assert got == _verdict(lambda msg=msg, ref=reference: ref._columns_checked(msg)), step
        parsed = _verdict(lambda msg=msg: (np.stack(astuple(fast.parse(msg))[:5]), fast.parse(msg).gains_given))
        assert parsed == got, step
        verdicts.append(got[0] if got[0] == "ok" else got[1])
    assert verdicts.count("ok") > 300 and len(set(verdicts)) >= 4
    assert len(fast._wire.orders) == 3
