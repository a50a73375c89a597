"""Unitree Go2 DDS types, the LowCmd CRC, the loopback configuration, and real DDS on loopback."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from krabgraph.nodes.go2 import crc as crc_mod
from krabgraph.nodes.go2.dds import LOWCMD_TOPIC, dds_config, open_participant
from krabgraph.nodes.go2.idl import LowCmd_, LowState_

DOMAIN = 100 + os.getpid() % 100  # per test process, so parallel runs do not meet


def unitree_crc32_core(words: list[int]) -> int:
    """Unitree's crc32_core as described in its SDK, bit by bit (the slow reference)."""
    crc, poly = 0xFFFFFFFF, 0x04C11DB7
    for word in words:
        for bit in range(31, -1, -1):
            top = crc & 0x80000000
            crc = (crc << 1) & 0xFFFFFFFF
            if top:
                crc ^= poly
            if (word >> bit) & 1:
                crc ^= poly
    return crc


def random_low_cmd(rng: np.random.Generator) -> LowCmd_:
    cmd = LowCmd_()
    cmd.head = [0xFE, 0xEF]
    cmd.level_flag = 0xFF
    cmd.sn = [int(v) for v in rng.integers(0, 2**32, 2)]
    cmd.bandwidth = int(rng.integers(0, 2**16))
    for m in cmd.motor_cmd:
        m.mode = int(rng.integers(0, 2))
        m.q, m.dq, m.tau, m.kp, m.kd = (float(np.float32(v)) for v in rng.normal(0, 10, 5))
        m.reserve = [int(v) for v in rng.integers(0, 2**32, 3)]
    cmd.bms_cmd.off = 1
    cmd.wireless_remote = [int(v) for v in rng.integers(0, 256, 40)]
    cmd.led = [int(v) for v in rng.integers(0, 256, 12)]
    cmd.fan = [3, 4]
    cmd.gpio = 7
    cmd.reserve = 123456
    return cmd


# -- C layout and CRC ------------------------------------------------------------------------------
# The layouts written independently as struct formats from the C rules (natural alignment, 4-byte
# aligned nested structs): LowCmd 812 bytes, LowState 1180 bytes.
LOW_CMD_FMT = "<2BBB2I2IH2x" + "B3x5f3I" * 20 + "B3B" + "40B12B2BB" + "x" + "II"
LOW_STATE_FMT = "<2BBB2I2IH2x" + "4f3f3f3fB3x" + "B3x7fB3xI2I" * 20 + "4BiH2B2B15H" + "4h4hI40BB3xfBB2xff4HII"


def low_cmd_values(cmd: LowCmd_) -> list:
    v = [*cmd.head, cmd.level_flag, cmd.frame_reserve, *cmd.sn, *cmd.version, cmd.bandwidth]
    for m in cmd.motor_cmd:
        v += [m.mode, m.q, m.dq, m.tau, m.kp, m.kd, *m.reserve]
    v += [cmd.bms_cmd.off, *cmd.bms_cmd.reserve, *cmd.wireless_remote, *cmd.led, *cmd.fan, cmd.gpio]
    return [*v, cmd.reserve, cmd.crc]


def random_low_state(rng: np.random.Generator) -> LowState_:
    s = LowState_()
    s.head, s.level_flag, s.sn, s.bandwidth = [0xFE, 0xEF], 0xFF, [1, 2], 3
    f32 = lambda n: [float(np.float32(v)) for v in rng.normal(0, 5, n)]  # noqa: E731
    imu = s.imu_state
    imu.quaternion, imu.gyroscope, imu.accelerometer, imu.rpy, imu.temperature = f32(4), f32(3), f32(3), f32(3), 40
    for i, m in enumerate(s.motor_state):
        m.mode, m.temperature, m.lost, m.reserve = 1, 30 + i, 1000 + i, [i, 2 * i]
        m.q, m.dq, m.ddq, m.tau_est, m.q_raw, m.dq_raw, m.ddq_raw = f32(7)
    b = s.bms_state
    b.version_high, b.version_low, b.status, b.soc, b.current, b.cycle = 1, 2, 3, 90, -1200, 17
    b.bq_ntc, b.mcu_ntc, b.cell_vol = [25, 26], [27, 28], list(range(3600, 3615))
    s.foot_force, s.foot_force_est, s.tick = [1, -2, 300, -400], [5, 6, 7, 8], 123456789
    s.wireless_remote = [int(v) for v in rng.integers(0, 256, 40)]
    s.bit_flag, s.adc_reel, s.temperature_ntc1, s.temperature_ntc2 = 9, 1.5, 33, 34
    s.power_v, s.power_a, s.fan_frequency, s.reserve, s.crc = 28.5, -3.25, [1, 2, 3, 4], 11, 0xABCDEF
    return s


def low_state_values(s: LowState_) -> list:
    v = [*s.head, s.level_flag, s.frame_reserve, *s.sn, *s.version, s.bandwidth]
    imu = s.imu_state
    v += [*imu.quaternion, *imu.gyroscope, *imu.accelerometer, *imu.rpy, imu.temperature]
    for m in s.motor_state:
        v += [m.mode, m.q, m.dq, m.ddq, m.tau_est, m.q_raw, m.dq_raw, m.ddq_raw, m.temperature, m.lost, *m.reserve]
    b = s.bms_state
    v += [b.version_high, b.version_low, b.status, b.soc, b.current, b.cycle, *b.bq_ntc, *b.mcu_ntc, *b.cell_vol]
    v += [*s.foot_force, *s.foot_force_est, s.tick, *s.wireless_remote, s.bit_flag, s.adc_reel]
    v += [s.temperature_ntc1, s.temperature_ntc2, s.power_v, s.power_a, *s.fan_frequency, s.reserve, s.crc]
    return v


def test_c_layouts_have_unitree_sizes_and_field_offsets():
    assert struct.calcsize(LOW_CMD_FMT) == crc_mod.LOW_CMD_LAYOUT.itemsize == 812
    assert struct.calcsize(LOW_STATE_FMT) == crc_mod.LOW_STATE_LAYOUT.itemsize == 1180
    cmd = random_low_cmd(np.random.default_rng(1))
    cmd.crc = 0xDEADBEEF
    assert crc_mod.c_layout(cmd, crc_mod.LOW_CMD_LAYOUT) == struct.pack(LOW_CMD_FMT, *low_cmd_values(cmd))
    state = random_low_state(np.random.default_rng(2))
    assert crc_mod.c_layout(state, crc_mod.LOW_STATE_LAYOUT) == struct.pack(LOW_STATE_FMT, *low_state_values(state))


def test_crc32_mpeg2_check_value():
    # The catalogued check value of CRC-32/MPEG-2 over the ASCII digits 1..9.
    assert crc_mod.crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_low_cmd_crc_is_unitrees_crc32_core_over_all_words_but_the_last():
    rng = np.random.default_rng(7)
    for _ in range(3):
        cmd = random_low_cmd(rng)
        words = np.frombuffer(crc_mod.c_layout(cmd, crc_mod.LOW_CMD_LAYOUT), dtype="<u4")
        assert len(words) == 203
        expected = unitree_crc32_core([int(w) for w in words[:-1]])
        assert crc_mod.low_cmd_crc(cmd) == expected
        cmd.crc = 0x12345678  # the crc field itself is not covered
        assert crc_mod.low_cmd_crc(cmd) == expected
        cmd.motor_cmd[11].kp += 1.0  # any payload change changes it
        assert crc_mod.low_cmd_crc(cmd) != expected


def test_idl_types_carry_unitree_dds_type_names():
    assert LowCmd_.__idl__.idl_transformed_typename == "unitree_go::msg::dds_::LowCmd_"
    assert LowState_.__idl__.idl_transformed_typename == "unitree_go::msg::dds_::LowState_"
    assert len(LowCmd_().motor_cmd) == 20 and len(LowState_().foot_force) == 4


def test_crc_survives_the_wire_round_trip():
    cmd = random_low_cmd(np.random.default_rng(3))
    cmd.crc = crc_mod.low_cmd_crc(cmd)
    back = LowCmd_.deserialize(cmd.serialize())
    assert back.crc == cmd.crc == crc_mod.low_cmd_crc(back)


# -- configuration ---------------------------------------------------------------------------------
def test_loopback_config_disables_multicast_and_peers_localhost():
    xml = dds_config("lo")
    assert "address='127.0.0.1'" in xml and "<AllowMulticast>false</AllowMulticast>" in xml
    assert "<Peer Address='127.0.0.1'/>" in xml
    assert dds_config("") == dds_config("127.0.0.1") == xml
    assert "name='lo'" not in xml


def test_robot_interface_config_and_unknown_interface():
    assert "address='192.168.123.99'" in dds_config("192.168.123.99")
    assert dds_config("lo", config_xml="<CycloneDDS/>") == "<CycloneDDS/>"
    with pytest.raises(ValueError, match="not found"):
        dds_config("no-such-nic0")


def test_one_network_configuration_per_domain_and_process():
    a = open_participant(DOMAIN, "lo")
    try:
        with pytest.raises(RuntimeError, match="another network configuration"):
            open_participant(DOMAIN, "lo", config_xml=dds_config("lo").replace("32", "31"))
        b = open_participant(DOMAIN, "127.0.0.1")  # same configuration: shares the domain
        b.close()
    finally:
        a.close()


# -- real DDS on loopback --------------------------------------------------------------------------
def udp_sockets(pid: int) -> list[tuple[str, int]]:
    """(local address, port) of every UDP socket of process ``pid``, from ``ss -uanp``."""
    out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, check=True).stdout
    socks = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            addr, port = local.rsplit(":", 1)
            socks.append((addr.strip("[]"), int(port)))
    return socks


def test_lowcmd_crosses_dds_on_loopback_only():
    pub, sub = open_participant(DOMAIN, "lo"), open_participant(DOMAIN, "lo")
    try:
        writer = pub.writer(LOWCMD_TOPIC, LowCmd_)
        reader = sub.reader(LOWCMD_TOPIC, LowCmd_)
        cmd = random_low_cmd(np.random.default_rng(5))
        cmd.crc = crc_mod.low_cmd_crc(cmd)
        got = []
        deadline = time.monotonic() + 5.0
        while not got and time.monotonic() < deadline:
            writer.write(cmd)
            time.sleep(0.02)
            got = reader.take(N=4)
        assert got, "no LowCmd arrived within 5 s"
        assert got[-1].crc == cmd.crc == crc_mod.low_cmd_crc(got[-1])
        socks = udp_sockets(os.getpid())
        assert socks, "ss found no UDP socket of this process"
        # Cyclone binds its unicast receive sockets to the wildcard address (hard-coded); everything
        # else, in particular every socket it sends from, is bound to loopback. No IPv6 sockets.
        base = 7400 + 250 * DOMAIN
        for addr, port in socks:
            assert addr in ("127.0.0.1", "0.0.0.0"), (addr, port)
            if addr == "0.0.0.0":
                assert base <= port < base + 250, f"wildcard socket outside domain {DOMAIN}'s ports: {port}"
        assert any(addr == "127.0.0.1" for addr, _ in socks)
    finally:
        sub.close()
        pub.close()
    with open("/proc/net/igmp") as f:  # groups in network byte order read as a host integer: 239.x = ......EF
        assert not re.search(r"\b[0-9A-F]{6}EF\b", f.read().upper()), "joined a 239.x.x.x (DDS) multicast group"


def test_cdr_packer_sends_exactly_what_cyclone_would():
    from krabgraph.nodes.go2.cdr import CdrPacker
    from krabgraph.nodes.go2.crc import LOW_STATE_LAYOUT, record_to_sample
    from krabgraph.nodes.go2.dds import LOWSTATE_TOPIC

    p = open_participant(DOMAIN, "lo")
    try:
        writer = p.writer(LOWSTATE_TOPIC, LowState_, reliable=False)
        packer = CdrPacker(writer, LowState_, LOW_STATE_LAYOUT, lambda r: record_to_sample(r, LowState_))
        assert packer.ok
        state = random_low_state(np.random.default_rng(11))
        record = np.frombuffer(crc_mod.c_layout(state, LOW_STATE_LAYOUT), dtype=LOW_STATE_LAYOUT).reshape(())
        expected = state.serialize()
        assert packer.pack(record) == expected.ljust((len(expected) + 3) & ~3, b"\0")
        back = LowState_.deserialize(packer.pack(record))
        assert back.motor_state[7].q == state.motor_state[7].q and list(back.foot_force) == [1, -2, 300, -400]
    finally:
        p.close()


EXCHANGE = """
import sys, time
import numpy as np
from krabgraph.nodes.go2.dds import LOWCMD_TOPIC, open_participant
from krabgraph.nodes.go2.idl import LowCmd_
a, b = open_participant(int(sys.argv[1]), "lo"), open_participant(int(sys.argv[1]), "lo")
w, r = a.writer(LOWCMD_TOPIC, LowCmd_), b.reader(LOWCMD_TOPIC, LowCmd_, depth=100)
got, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 1.5:
    w.write(LowCmd_())
    time.sleep(0.01)
    got += len(r.take(N=100))
b.close(); a.close()
print("received", got)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_every_datagram_goes_to_loopback(tmp_path):
    """strace every send of two loopback participants: destinations are 127.0.0.1, except Cyclone's
    start-up probe of loopback multicast (one datagram to 239.255.0.1 sent out of 127.0.0.1 with TTL 0)."""
    trace = tmp_path / "trace"
    cmd = ["strace", "-f", "-qq", "-e", "trace=sendto,sendmsg,sendmmsg,setsockopt", "-o", str(trace),
           sys.executable, "-c", EXCHANGE, str(DOMAIN)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split()[-1]) > 50  # the exchange worked
    lines = trace.read_text().splitlines()
    sends = [ln for ln in lines if re.search(r"\bsend(to|msg|mmsg)\(", ln) and "AF_INET" in ln]
    assert len(sends) > 100
    assert not [ln for ln in sends if "AF_INET6" in ln]
    dests = [re.search(r'sin_addr=inet_addr\("([0-9.]+)"\)', ln).group(1) for ln in sends]
    probes = [ln for ln, d in zip(sends, dests, strict=True) if d != "127.0.0.1"]
    assert {d for d in dests if d != "127.0.0.1"} <= {"239.255.0.1"}
    for probe in probes:  # the probe's socket was pinned to loopback with TTL 0 first
        pid, fd = re.match(r"(\d+)\s+send\w*\((\d+),", probe).groups()
        before = lines[: lines.index(probe)]
        opts = [ln for ln in before if ln.startswith(pid) and f"setsockopt({fd}, SOL_IP, IP_MULTICAST" in ln]
        assert any("IP_MULTICAST_IF, [16777343]" in ln for ln in opts), opts  # 127.0.0.1
        assert any('IP_MULTICAST_TTL, "\\0"' in ln for ln in opts), opts
    joins = [ln for ln in lines if "IP_ADD_MEMBERSHIP" in ln]
    assert all('imr_interface=inet_addr("127.0.0.1")' in ln for ln in joins), joins
