"""The real-robot HAL (go2_hal) against a scripted DDS peer on loopback: mapping by name, CRC, staleness."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import JointCommand, RobotState, set_array, to_numpy
from krabgraph.nodes.go2.crc import low_cmd_crc, low_state_crc
from krabgraph.nodes.go2.dds import LOWCMD_TOPIC, LOWSTATE_TOPIC, open_participant
from krabgraph.nodes.go2.hal import Go2Hal
from krabgraph.nodes.go2.idl import LowCmd_, LowState_
from krabgraph.nodes.go2.motors import POS_STOP, VEL_STOP, MotorMap
from krabgraph.nodes.robots import load_robot

DOMAIN = 100 + (os.getpid() + 37) % 100
GO2 = load_robot("go2")


@pytest.fixture
def robot():
    """A scripted robot on DDS: writes LowState, reads LowCmd (keeps the 50 newest)."""
    peer = open_participant(DOMAIN, "lo")
    peer.state_writer = peer.writer(LOWSTATE_TOPIC, LowState_, reliable=False)
    peer.cmd_reader = peer.reader(LOWCMD_TOPIC, LowCmd_, depth=50)
    yield peer
    peer.close()


@pytest.fixture
def hal():
    h = NodeHarness(Go2Hal, name="hal", domain_id=DOMAIN, status_period_s=0.0)
    yield h
    h.stop()


def low_state(crc: bool = True) -> LowState_:
    """Motor slot s reads q = 0.1 s, dq = -s, tau = 0.5 s; foot forces FR, FL, RR, RL = 100, 5, 50, 0."""
    s = LowState_()
    for slot, m in enumerate(s.motor_state):
        m.q, m.dq, m.tau_est = 0.1 * slot, -1.0 * slot, 0.5 * slot
    s.imu_state.quaternion = [0.9, 0.1, 0.2, 0.3]
    s.imu_state.gyroscope = [0.01, 0.02, 0.03]
    s.imu_state.accelerometer = [0.1, 0.2, 9.8]
    s.foot_force = [100, 5, 50, 0]
    if crc:
        s.crc = low_state_crc(s)
    return s


def pump_until(hal: NodeHarness, robot, sample: LowState_ | None, port: str = "state", timeout: float = 5.0) -> int:
    """Publish ``sample`` and tick the HAL (20 ms of graph time) until ``port`` has output; return ticks."""
    deadline = time.monotonic() + timeout
    ticks = 0
    while not hal.outputs[port] and time.monotonic() < deadline:
        if sample is not None:
            robot.state_writer.write(sample)
        time.sleep(0.01)
        hal.advance(0.02)
        ticks += 1
    return ticks


def test_state_is_mapped_by_motor_index_not_position(hal, robot):
    hal.start()
    pump_until(hal, robot, low_state())
    assert hal.outputs["state"], "the HAL published no RobotState within 5 s"
    msg: RobotState = hal.outputs["state"][-1]
    names = list(msg.joints.name)
    assert names == list(GO2.joint_names)
    q, dq, tau = (to_numpy(a) for a in (msg.joints.position, msg.joints.velocity, msg.joints.effort))
    for i, name in enumerate(names):
        slot = GO2.motor_index[GO2.index(name)]
        assert q[i] == pytest.approx(0.1 * slot, abs=1e-6), name
        assert dq[i] == pytest.approx(-slot, abs=1e-6) and tau[i] == pytest.approx(0.5 * slot, abs=1e-6)
    # FL_hip_joint is first in the description but motor slot 3 on the robot
    assert names[0] == "FL_hip_joint" and q[0] == pytest.approx(0.3, abs=1e-6)
    o = msg.imu.orientation
    assert (o.w, o.x, o.y, o.z) == pytest.approx((0.9, 0.1, 0.2, 0.3), abs=1e-6)
    assert msg.imu.linear_acceleration.z == pytest.approx(9.8, abs=1e-5)
    assert msg.imu.angular_velocity.y == pytest.approx(0.02, abs=1e-7)
    c = msg.contacts
    assert list(c.name) == ["FL", "FR", "RL", "RR"]
    assert list(c.in_contact) == [False, True, False, True]  # FL 5, FR 100, RL 0, RR 50 vs threshold 10
    assert to_numpy(c.force)[:, 2].tolist() == [5.0, 100.0, 0.0, 50.0]
    assert msg.has_base is False and not msg.HasField("base")
    assert hal.outputs["clock"] and hal.outputs["clock"][-1].sim_time_ns == msg.header.stamp_ns


def joint_command(names: list[str], position: np.ndarray, kp: float | None = None) -> JointCommand:
    cmd = JointCommand(name=names)
    set_array(cmd.position, position)
    if kp is not None:
        set_array(cmd.kp, np.full(len(names), kp))
        set_array(cmd.kd, np.full(len(names), 0.7))
    return cmd


def read_cmds(robot, timeout: float = 5.0, want: int = 1) -> list[LowCmd_]:
    got: list[LowCmd_] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += [s for s in robot.cmd_reader.take(N=50) if hasattr(s, "motor_cmd")]
        time.sleep(0.01)
    return got


def test_command_goes_to_motor_slots_by_name_with_a_valid_crc(hal, robot):
    hal.start()
    time.sleep(0.3)  # discovery
    names = list(reversed(GO2.joint_names))  # any order: mapped by name
    position = np.array([0.01 * (i + 1) for i in range(len(names))])
    deadline = time.monotonic() + 5.0
    got = []
    while not got and time.monotonic() < deadline:
        hal.feed("command", joint_command(names, position, kp=25.0))
        got = read_cmds(robot, timeout=0.1)
    assert got, "no LowCmd reached the robot within 5 s"
    cmd = got[-1]
    assert cmd.crc == low_cmd_crc(cmd)
    assert list(cmd.head) == [0xFE, 0xEF] and cmd.level_flag == 0xFF
    for name, q in zip(names, position, strict=True):
        m = cmd.motor_cmd[int(GO2.motor_index[GO2.index(name)])]
        assert m.mode == 0x01 and m.q == pytest.approx(q, abs=1e-6), name
        assert m.kp == pytest.approx(25.0) and m.kd == pytest.approx(0.7) and m.dq == 0.0 and m.tau == 0.0
    for unused in cmd.motor_cmd[12:]:
        assert unused.kp == 0.0 and unused.kd == 0.0 and unused.q == pytest.approx(POS_STOP, rel=1e-6)
        assert unused.dq == pytest.approx(VEL_STOP)
    assert hal.node.rejected == 0


def test_default_gains_and_rejected_commands(hal, robot):
    hal.start()
    time.sleep(0.3)
    names = list(GO2.joint_names)
    hal.feed("command", joint_command(names[:-1], np.zeros(11)))  # a joint missing: nothing is sent
    hal.feed("command", joint_command([*names[:-1], "tail_joint"], np.zeros(12)))
    bad = joint_command(names, np.zeros(12))
    set_array(bad.kp, np.full(12, -1.0))
    hal.feed("command", bad)
    assert hal.node.rejected == 3
    assert read_cmds(robot, timeout=0.3) == []
    hal.feed("command", joint_command(names, np.asarray(GO2.default_pos)))  # empty gains: the description's
    got = read_cmds(robot)
    assert got
    slot = int(GO2.motor_index[GO2.index("RR_calf_joint")])
    assert got[-1].motor_cmd[slot].kp == pytest.approx(GO2.kp[GO2.index("RR_calf_joint")])
    assert got[-1].motor_cmd[slot].q == pytest.approx(-1.5)


def test_no_state_without_lowstate_and_commands_are_never_echoed(hal, robot):
    hal.start()
    names = list(GO2.joint_names)
    for _ in range(20):
        hal.feed("command", joint_command(names, np.full(12, 0.123)))
        time.sleep(0.005)
        hal.advance(0.02)
    assert hal.outputs["state"] == [] and hal.outputs["clock"] == []
    assert read_cmds(robot), "the commands themselves did go out"


def test_state_crc_check_drops_corrupt_samples(robot):
    h = NodeHarness(Go2Hal, name="hal", domain_id=DOMAIN, status_period_s=0.0, check_state_crc=True)
    try:
        h.start()
        corrupt = low_state()
        corrupt.motor_state[0].q += 1.0  # content changed after the crc was computed
        pump_until(h, robot, corrupt, timeout=1.0)
        assert h.outputs["state"] == [] and h.node.crc_errors > 0
        pump_until(h, robot, low_state())
        assert h.outputs["state"], "a sample with a valid crc passed"
    finally:
        h.stop()


def test_refuses_a_simulated_clock():
    h = NodeHarness(Go2Hal, name="hal", domain_id=DOMAIN)
    h.clock.mode = "sim"  # what the node sees as its clock_mode
    with pytest.raises(RuntimeError, match="wall clock"):
        h.start()


def test_motor_map_derives_foot_slots_from_leg_joints():
    m = MotorMap(GO2)
    assert dict(zip(m.foot_names, m.foot_slots.tolist(), strict=True)) == {"FL": 1, "FR": 0, "RL": 3, "RR": 2}
    assert m.slots.tolist() == [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]


def test_without_cyclonedds_the_hal_fails_with_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cyclonedds.domain", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"needs the Python package 'cyclonedds'.*robot"):
        NodeHarness(Go2Hal, domain_id=DOMAIN).start()
