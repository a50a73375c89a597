"""The Go2 DDS emulator: real MuJoCo behind rt/lowcmd + rt/lowstate on loopback DDS."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds")
pytest.importorskip("mujoco")

from krabgraph.nodes.go2.crc import low_cmd_crc, low_state_crc
from krabgraph.nodes.go2.dds import LOWCMD_TOPIC, LOWSTATE_TOPIC, open_participant
from krabgraph.nodes.go2.emulator import Go2Emulator
from krabgraph.nodes.go2.idl import LowCmd_, LowState_
from krabgraph.nodes.go2.motors import POS_STOP, VEL_STOP, MotorMap
from krabgraph.nodes.robots import load_robot

DOMAIN = 100 + (os.getpid() + 71) % 100
GO2 = load_robot("go2")


@pytest.fixture
def emulator():
    emu = Go2Emulator(domain_id=DOMAIN)
    yield emu
    emu.close()


@pytest.fixture
def peer():
    p = open_participant(DOMAIN, "lo")
    p.cmd_writer = p.writer(LOWCMD_TOPIC, LowCmd_)
    p.state_reader = p.reader(LOWSTATE_TOPIC, LowState_, depth=2000)
    yield p
    p.close()


def make_cmd(q: dict[str, float], kp: float = 30.0, kd: float = 1.0, mode: int = 0x01) -> LowCmd_:
    m = MotorMap(GO2)
    t = m.targets(list(q), np.array(list(q.values())), kp=np.full(len(q), kp), kd=np.full(len(q), kd))
    t.mode[:] = mode
    cmd = m.fill_low_cmd(LowCmd_(), t)
    cmd.crc = low_cmd_crc(cmd)
    return cmd


def deliver(emu: Go2Emulator, peer, cmd: LowCmd_, counter: str, timeout: float = 5.0) -> None:
    """Write ``cmd`` until the emulator's ``counter`` goes up (bounded)."""
    before = getattr(emu, counter)
    deadline = time.monotonic() + timeout
    while getattr(emu, counter) == before and time.monotonic() < deadline:
        peer.cmd_writer.write(cmd)
        time.sleep(0.01)
        emu.poll_commands()
    assert getattr(emu, counter) > before, f"{counter} did not change within {timeout} s"


def test_bad_crc_is_rejected_and_a_good_command_sets_pd_targets_by_slot(emulator, peer):
    sim = emulator.sim
    q = {name: float(v) for name, v in zip(GO2.joint_names, GO2.default_pos, strict=True)}
    q["FR_hip_joint"] = 0.3
    bad = make_cmd(q, kp=40.0)
    bad.crc ^= 1
    deliver(emulator, peer, bad, "crc_rejected")
    i = GO2.index("FR_hip_joint")
    assert sim._cmd.q[i] == 0.0 and sim._cmd.kp[i] == GO2.kp[i]  # still the default hold
    deliver(emulator, peer, make_cmd(q, kp=40.0, kd=1.5), "commands")
    assert sim._cmd.q[i] == pytest.approx(0.3, abs=1e-6)
    assert np.allclose(sim._cmd.kp, 40.0) and np.allclose(sim._cmd.kd, 1.5)
    assert emulator.crc_rejected == 1 or emulator.crc_rejected >= 1


def test_motor_off_and_stop_values_disable_terms(emulator, peer):
    q = {name: 0.5 for name in GO2.joint_names}
    deliver(emulator, peer, make_cmd(q, mode=0x00), "commands")
    assert np.all(emulator.sim._cmd.kp == 0) and np.all(emulator.sim._cmd.kd == 0)
    cmd = make_cmd(q, kp=20.0, kd=2.0)
    for m in cmd.motor_cmd[:12]:
        m.q, m.dq = POS_STOP, VEL_STOP
    cmd.crc = low_cmd_crc(cmd)
    deliver(emulator, peer, cmd, "commands")
    assert np.all(emulator.sim._cmd.kp == 0) and np.all(emulator.sim._cmd.kd == 0)
    assert np.all(emulator.sim._cmd.q == 0) and np.all(emulator.sim._cmd.qd == 0)


def test_lowstate_at_500_hz_in_real_time_with_valid_crc(emulator, peer):
    time.sleep(0.3)  # discovery
    t = threading.Thread(target=emulator.run, kwargs={"duration_s": 2.0, "status_period_s": 0.0})
    t0 = time.monotonic()
    t.start()
    t.join(timeout=10.0)
    wall = time.monotonic() - t0
    samples = [s for s in peer.state_reader.take(N=5000) if hasattr(s, "motor_state")]
    assert wall == pytest.approx(2.0, abs=0.3)
    # paced to the wall clock: never ahead of it; behind only by what a CPU-starved loop skipped (counted)
    assert emulator.sim.time <= 2.0 + 0.01
    assert emulator.sim.time + emulator.skipped_s == pytest.approx(2.0, abs=0.05)
    assert 0.8 * 1000 <= emulator.states <= 1000 + 1  # 500 Hz
    assert len(samples) >= 0.9 * emulator.states  # best-effort on loopback: (almost) all arrive
    last = samples[-1]
    assert last.crc == low_state_crc(last)
    st = emulator.sim.read_state()
    m = MotorMap(GO2)
    q = [last.motor_state[int(s)].q for s in m.slots]
    assert np.allclose(q, st.q, atol=0.02)  # standing still under the default hold
    imu = last.imu_state
    assert imu.quaternion[0] == pytest.approx(1.0, abs=0.02) and imu.accelerometer[2] == pytest.approx(9.81, abs=0.5)
    assert all(f > 10 for f in last.foot_force), last.foot_force  # four feet on the ground, N
    assert last.tick == pytest.approx(2000, abs=60)
