"""graphs/walk_split.yaml under the supervisor (`krabgraph launch`), in real time, two processes.

Ground truth comes from a recorder node placed in the robot process (hal/state, the velocity
schedule, what safety sent the HAL, safety's status), read back from its MCAP file.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from krabgraph.launch.runtime.security import create_keys
from krabgraph.launch.runtime.wire import Decoder
from krabgraph.msgs import CommandSource, JointCommand, RobotState, SafetyStatus, VelocityCommand, to_numpy
from krabgraph.nodes.record.mcapio import read_recording

pytest.importorskip("mujoco")

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
OVERLAY = """\
extends: {base}
processes:
  brain: {{host: {brain}}}
base_port: {port}
nodes:
  rec:
    class: recorder
    process: robot
    params: {{path: {mcap}, compression: none}}
    inputs: {{topics: [hal/state, command/cmd_vel, safety/joint_command, safety/status]}}
"""


def overlay(tmp_path: Path, brain_host: str, *, curve: bool) -> tuple[Path, Path]:
    mcap = tmp_path / "robot.mcap"
    port = 21000 + (os.getpid() * 7) % 20000
    text = OVERLAY.format(base=GRAPHS / "walk_split.yaml", brain=brain_host, port=port, mcap=mcap)
    if curve:
        create_keys(tmp_path / "keys", "graph")  # the secret half 0600: check refuses one open to others
        text += "security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}\n"
    path = tmp_path / "split.yaml"
    path.write_text(text)
    return path, mcap


def decoded(mcap: Path, topic: str, cls):
    dec = Decoder(cls)
    return [(t, dec.decode(frame)) for top, t, frame in read_recording(mcap, [topic]).messages if top == topic]


STATUS = ("--set", "hal.status_period_s=0.5")


def test_split_walk_over_tcp_with_curve(tmp_path, launch):
    graph, mcap = overlay(tmp_path, "127.0.0.2", curve=True)  # another host string: tcp, not ipc
    run = launch(str(graph), *STATUS, "--duration", "12.5")
    code = run.wait(timeout=40)
    text = run.log()
    assert code == 0, text
    assert "exported on tcp://127.0.0.1:" in text and "exported on tcp://127.0.0.2:" in text and "ipc://" not in text
    states = decoded(mcap, "hal/state", RobotState)
    cmds = decoded(mcap, "command/cmd_vel", VelocityCommand)
    # The 0.5 m/s phase on the robot's graph clock, from the schedule as published.
    phase = [m.header.stamp_ns for _, m in cmds if abs(m.vx - 0.5) < 1e-9]
    assert phase, "no 0.5 m/s command recorded"
    end = max(phase)
    rows = np.array([(m.header.stamp_ns, m.base.linear_velocity.x, m.base.position.z) for _, m in states])
    window = rows[(rows[:, 0] > end - 5e9) & (rows[:, 0] <= end)]
    assert len(window) > 200  # 50 Hz state for 5 s
    vx, lowest = window[:, 1].mean(), rows[rows[:, 0] <= end, 2].min()
    print(f"split walk over tcp+CURVE: vx {vx:.3f} m/s over the last 5 s of the 0.5 m/s phase; "
          f"lowest base up to its end {lowest:.3f} m")  # fmt: skip
    assert abs(vx - 0.5) < 0.1
    assert lowest > 0.2  # no fall


def test_killed_brain_is_reported_and_the_robot_damps_then_sigterm_stops_all(tmp_path, launch):
    graph, mcap = overlay(tmp_path, "127.0.0.1", curve=False)  # same host: ipc
    run = launch(str(graph), *STATUS)
    brain = int(run.wait_for(r"started process 'brain' \(pid (\d+)\)", 20).group(1))
    robot = int(run.wait_for(r"started process 'robot' \(pid (\d+)\)", 20).group(1))
    run.wait_for(r"SOFT_START -> ACTIVE", 30)
    time.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(brain, signal.SIGKILL)
    run.wait_for(rf"process 'brain' \(pid {brain}\) killed by signal SIGKILL; still running: robot", 5)
    run.wait_for(r"\[robot\] krabgraph.safety: ACTIVE -> DAMPING: commands stale", 5)
    assert time.monotonic() - killed_at < 5
    time.sleep(0.5)
    assert run.proc.poll() is None  # the robot keeps running, damped
    os.kill(run.proc.pid, signal.SIGTERM)
    code = run.wait(timeout=8)
    assert code == 1, run.log()  # the brain was killed
    # the robot process ended damped (commands stale): it says so and exits with the fault code
    text = "".join(run.lines)
    assert re.search(r"process 'robot' \(pid \d+\) exited with code 3 \(its run ended in a safety fault\)", text)
    assert text.count("[robot] krabgraph.launch: SAFETY TRIP at t=") == 1
    with pytest.raises(ProcessLookupError):
        os.kill(robot, 0)
    modes = [m.mode for _, m in decoded(mcap, "safety/status", SafetyStatus)]
    assert SafetyStatus.Mode.ACTIVE in modes
    assert SafetyStatus.Mode.DAMPING in modes[modes.index(SafetyStatus.Mode.ACTIVE) :]
    sent = [m for _, m in decoded(mcap, "safety/joint_command", JointCommand)]
    # After the policy's last command: damping (kp 0) from safety, every control period.
    damping = [m for m in sent if m.source == CommandSource.SAFETY and to_numpy(m.kp).size and not to_numpy(m.kp).any()]
    assert len(damping) >= 10
