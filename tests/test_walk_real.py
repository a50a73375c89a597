"""Acceptance: graphs/walk_real.yaml (go2_hal) end to end against the DDS robot emulator, in real time.

The emulator (MuJoCo behind rt/lowcmd + rt/lowstate) runs in its own process; the graph runs in
this one on the wall clock; they meet over Cyclone DDS on loopback. The Go2 must walk as in the
MuJoCo graph (tests/test_walk_graph.py): the same schedule and targets, measured on the
emulator's ground truth (base velocity in the body frame). About 28 s of wall time.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds")
pytest.importorskip("mujoco")

from krabgraph.launch import Executor, Input, Node, build_graph, load_graph
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.msgs import RobotState, SafetyStatus, VelocityCommand
from krabgraph.nodes.go2.emulator import load_truth

DOMAIN = 100 + (os.getpid() + 13) % 100
ACTIVE = SafetyStatus.Mode.ACTIVE


class Probe(Node):
    """Records the velocity schedule and the safety mode (monotonic wall time), and the HAL's states."""

    kind = "recorder"
    cmd = Input(VelocityCommand, queue=8)
    safety = Input(SafetyStatus, queue=8)
    state = Input(RobotState)

    def on_configure(self) -> None:
        self.cmds: list[tuple[float, float, float, float]] = []
        self.modes: list[tuple[float, int]] = []
        self.states = 0
        self.has_base: set[bool] = set()

    def on_cmd(self, m: VelocityCommand) -> None:
        self.cmds.append((time.monotonic(), m.vx, m.vy, m.yaw_rate))

    def on_safety(self, m: SafetyStatus) -> None:
        self.modes.append((time.monotonic(), m.mode))

    def on_state(self, m: RobotState) -> None:
        self.states += 1
        self.has_base.add(m.has_base)


def start_emulator(truth: Path, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "krabgraph.nodes.go2.emulator", "--domain-id", str(DOMAIN),
            "--truth", str(truth), "--status-period", "5"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready and "ready" in proc.stdout.readline():
            return proc
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the emulator did not start:\n{log.read_text()}")


def udp_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, check=True).stdout
    socks = []
    for line in out.splitlines():
        for pid in pids:
            if f"pid={pid}," in line:
                addr, port = line.split()[3].rsplit(":", 1)
                socks.append((pid, addr.strip("[]"), int(port)))
    return socks


def first_time(cmds: np.ndarray, column: int, value: float) -> float:
    hits = cmds[np.isclose(cmds[:, column], value)]
    assert len(hits), f"the schedule never commanded {value} in column {column}"
    return float(hits[0, 0])


def test_walk_real_walks_the_go2_emulator_over_dds(tmp_path):
    truth_path, log = tmp_path / "truth.csv", tmp_path / "emulator.log"
    emulator = start_emulator(truth_path, log)
    sockets: list[tuple[int, str, int]] = []
    try:
        decl = load_graph("walk_real", sets=[f"hal.domain_id={DOMAIN}", "hal.status_period_s=0"])
        assert decl.clock.mode == "wall"
        decl.nodes["probe"] = NodeDecl(
            "probe", Probe, inputs={"cmd": "command/cmd_vel", "safety": "safety/status", "state": "hal/state"},
            locs={"node": Loc("test")},
        )  # fmt: skip
        ex = Executor(build_graph(decl))
        sampler = threading.Timer(8.0, lambda: sockets.extend(udp_sockets({os.getpid(), emulator.pid})))
        sampler.start()
        assert ex.run(duration_s=24.3, handle_signals=False) == 0
        sampler.join()
        assert not ex.failures, ex.failures
    finally:
        emulator.send_signal(signal.SIGINT)
        try:
            out, _ = emulator.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            emulator.kill()
            raise
    summary = dict(kv.split("=") for kv in out.split("done:")[-1].split())
    hal, probe = ex.nodes["hal"], ex.nodes["probe"]
    truth = load_truth(truth_path)  # t_monotonic_s, sim_time_s, x, y, z, vx_body, vy_body, yaw_rate
    cmds = np.array(probe.cmds)

    # the schedule as the graph played it: stand 2 s, 0.5 m/s 8 s, 1.0 m/s 8 s, turn at 1 rad/s (6.3 s of 8)
    t_slow, t_fast, t_turn = first_time(cmds, 1, 0.5), first_time(cmds, 1, 1.0), first_time(cmds, 3, 1.0)
    assert t_fast - t_slow == pytest.approx(8.0, abs=0.05) and t_turn - t_fast == pytest.approx(8.0, abs=0.05)

    def window(t0: float, t1: float) -> np.ndarray:
        rows = truth[(truth[:, 0] >= t0) & (truth[:, 0] < t1)]
        assert len(rows) > 0.9 * 50 * (t1 - t0), f"too few ground-truth rows in [{t0}, {t1})"
        return rows

    slow, fast, turn = window(t_fast - 5, t_fast), window(t_turn - 5, t_turn), window(t_turn + 1, t_turn + 6)
    figures = {
        "vx at 0.5": slow[:, 5].mean(), "vx at 1.0": fast[:, 5].mean(), "yaw rate at 1.0": turn[:, 7].mean(),
        "speed while turning": np.hypot(turn[:, 5], turn[:, 6]).mean(),
    }  # fmt: skip
    print("walk_real on the emulator:", {k: round(float(v), 3) for k, v in figures.items()}, summary)
    assert figures["vx at 0.5"] == pytest.approx(0.5, abs=0.1)
    assert figures["vx at 1.0"] == pytest.approx(1.0, abs=0.1)
    assert figures["yaw rate at 1.0"] == pytest.approx(1.0, abs=0.1)
    assert figures["speed while turning"] < 0.2
    walking = truth[(truth[:, 0] >= t_slow) & (truth[:, 0] < t_turn + 6)]
    assert walking[:, 4].min() > 0.2  # never fell
    assert np.hypot(*(walking[-1, 2:4] - walking[0, 2:4])) > 5.0  # it went somewhere

    # the safety node was ACTIVE from the end of its 2 s soft start to the end of the schedule: no stale
    # state or command over DDS tripped it (its last DAMPING comes with the graph's shutdown)
    modes = [m for t, m in probe.modes if t_slow + 0.5 <= t < t_turn + 6]
    assert len(modes) > 20 and set(modes) == {ACTIVE}, probe.modes
    # the HAL: one state per 20 ms, no ground truth, nothing rejected; the emulator: every LowCmd's CRC valid
    assert probe.states == pytest.approx(24.3 / 0.02, rel=0.05) and probe.has_base == {False}
    assert hal.rejected == 0 and hal.write_errors == 0
    assert summary["crc_rejected"] == "0" and summary["invalid_rejected"] == "0"
    assert int(summary["lowcmd_ok"]) >= 0.95 * 50 * 22

    # DDS stayed on loopback: sockets bound to 127.0.0.1, or Cyclone's wildcard receive sockets
    # (hard-coded INADDR_ANY) on this domain's ports; no IPv6; no multicast group joined
    assert {pid for pid, _, _ in sockets} == {os.getpid(), emulator.pid}, sockets
    base = 7400 + 250 * DOMAIN
    for pid, addr, port in sockets:
        assert addr == "127.0.0.1" or (addr == "0.0.0.0" and base <= port < base + 250), (pid, addr, port)
    with open("/proc/net/igmp") as f:  # 239.x.x.x groups print as ......EF
        assert not re.search(r"\b[0-9A-F]{6}EF\b", f.read().upper())
