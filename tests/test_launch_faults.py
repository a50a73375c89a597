"""Falls and faults are visible: the base height trip in MuJoCo, the launcher's one-time trip line, its
summary, and the exit code of `krabgraph launch` (3 when the run ends in a safety fault)."""

from __future__ import annotations

import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from krabgraph.launch import (
    Executor,
    GraphError,
    Input,
    Node,
    Output,
    Param,
    build_graph,
    graph_from_dict,
    load_and_build,
    load_graph,
)
from krabgraph.launch.cli.main import main
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.launch.runtime.monitor import FAULT_EXIT_CODE, RunMonitor
from krabgraph.msgs import JointCommand, RobotState, SafetyStatus, set_array, to_numpy
from krabgraph.nodes.demo import FakeRobot, HoldPose
from krabgraph.nodes.rotations import roll_pitch
from krabgraph.nodes.safety import Safety

ROOT = Path(__file__).resolve().parents[1]
Mode, Fault = SafetyStatus.Mode, SafetyStatus.Fault
FOLDED = [0.0, 1.5, -2.7] * 4  # thighs up, calves folded: the Go2 sinks onto its belly, level
FOLD_GRAPH = """\
extends: {walk}
nodes:
  policy: null          # a "policy" that folds the legs once safety hands over
  fold:
    class: hold_pose
    params: {{target: {target}}}
    inputs: {{state: hal/state}}
    outputs: {{joint_command: policy/joint_command}}
"""


class Probe(Node):
    """Base height and tilt of every state; every safety status; what the HAL was sent."""

    kind = "recorder"
    state = Input(RobotState, queue=8)
    status = Input(SafetyStatus, queue=64)
    sent = Input(JointCommand, queue=8)

    def on_configure(self) -> None:
        self.rows: list[tuple[float, float, float]] = []  # t, base z, max |roll|, |pitch|
        self.statuses: list[SafetyStatus] = []
        self.sent_kp: list[tuple[float, float]] = []  # t, largest kp

    def on_state(self, m: RobotState) -> None:
        o = m.base.orientation
        self.rows.append((m.header.stamp_ns * 1e-9, m.base.position.z, max(map(abs, roll_pitch(o.w, o.x, o.y, o.z)))))

    def on_status(self, m: SafetyStatus) -> None:
        self.statuses.append(m)

    def on_sent(self, m: JointCommand) -> None:
        self.sent_kp.append((self.now(), float(to_numpy(m.kp).max())))


def test_folded_legs_in_mujoco_trip_the_base_height_check_while_the_tilt_stays_small():
    pytest.importorskip("mujoco")
    decl = load_graph("walk", clock="sim", sets=["hal.status_period_s=0"])
    del decl.nodes["policy"]
    loc = {"node": Loc("test")}
    decl.nodes["fold"] = NodeDecl(
        "fold", HoldPose, params={"target": FOLDED}, inputs={"state": "hal/state"},
        outputs={"joint_command": "policy/joint_command"}, locs=loc,
    )  # fmt: skip
    decl.nodes["probe"] = NodeDecl(
        "probe",
        Probe,
        inputs={"state": "hal/state", "status": "safety/status", "sent": "safety/joint_command"},
        locs=loc,
    )
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=4.0, handle_signals=False) == 0
    probe = ex.nodes["probe"]
    rows = np.array(probe.rows)
    trips = [s for s in probe.statuses if s.fault != Fault.FAULT_NONE]
    assert trips and trips[0].mode == Mode.DAMPING and trips[0].fault == Fault.FAULT_BASE_HEIGHT
    assert re.fullmatch(
        r"fall: base 0\.1[0-4] m above the ground under it \(height scan\) for 0\.10 s \(minimum 0\.15 m\)",
        trips[0].reason,
    ), trips[0].reason
    t_trip = trips[0].header.stamp_ns * 1e-9
    active = [s.header.stamp_ns * 1e-9 for s in probe.statuses if s.mode == Mode.ACTIVE]
    assert 2.0 <= active[0] < t_trip < active[0] + 0.5  # within half a second of handing over to the fold
    assert rows[:, 2].max() < 0.25  # never tilted anywhere near the 1 rad attitude limit
    assert rows[rows[:, 0] >= t_trip, 1].max() < 0.15 and rows[-1, 1] < 0.15  # down, and stays down
    assert all(kp == 0 for t, kp in probe.sent_kp if t > t_trip)  # damped from the trip on
    assert all(s.fault == Fault.FAULT_BASE_HEIGHT for s in probe.statuses if s.header.stamp_ns * 1e-9 >= t_trip)


def test_launch_exits_3_after_a_fall_and_says_so_once_then_sums_up(tmp_path):
    pytest.importorskip("mujoco")
    graph = tmp_path / "fold.yaml"
    graph.write_text(FOLD_GRAPH.format(walk=ROOT / "graphs" / "walk.yaml", target=FOLDED))
    proc = subprocess.run(
        [sys.executable, "-m", "krabgraph", "launch", str(graph), "--clock", "sim", "--duration", "4"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    err = proc.stderr
    assert proc.returncode == FAULT_EXIT_CODE == 3, err[-3000:]
    trips = [line for line in err.splitlines() if "SAFETY TRIP" in line]
    assert len(trips) == 1, err[-3000:]  # once, though damping goes on for ~1.7 s with status heartbeats
    assert re.search(
        r"ERROR krabgraph\.launch: SAFETY TRIP at t=2\.\d\d s: safety is DAMPING \(base height\): fall: base 0\.1\d m "
        r"above the ground under it \(height scan\).*damped until an EStop reset \(latched\); "
        r"a run ending so exits 3",
        trips[0],
    ), trips[0]
    # the HAL's status line says what it executes: the policy's commands, then damping
    status = [line for line in err.splitlines() if "krabgraph.hal: t=" in line]
    assert [line.rsplit("cmd=", 1)[1] for line in status] == ["safety", "policy", "DAMPING"]
    summary = [line for line in err.splitlines() if "summary:" in line]
    assert len(summary) == 1, err[-3000:]
    assert re.search(
        r"ERROR krabgraph\.launch: summary: 4\.00 s of graph time, "
        r"\d+\.\d\d m travelled \(\d+\.\d\d m from the start\), 1 safety trip, no node failures; "
        r"ended in a fault: safety DAMPING \(base height\) since t=2\.\d\d s; exit code 3$",
        summary[0],
    ), summary[0]
    assert re.search(
        r"ERROR krabgraph\.launch:   safety trip 1: t=2\.\d\d s safety DAMPING \(base height\): fall: ", err
    )
    assert err.rstrip().endswith("stopped (exit code 3)")


def test_launch_of_a_normal_run_exits_0_with_a_summary(caplog):
    pytest.importorskip("mujoco")
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        code = main(["launch", "walk", "--clock", "sim", "--duration", "3", "--set", "hal.status_period_s=0"])
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "krabgraph.launch"]
    assert not [line for line in lines if "SAFETY TRIP" in line]
    (summary,) = [line for line in lines if line.startswith("summary:")]
    m = re.fullmatch(
        r"summary: 3\.00 s of graph time, (\d+\.\d\d) m travelled \((\d+\.\d\d) m from the start\), 0 safety trips, "
        r"no node failures; ended with safety ACTIVE; exit code 0",
        summary,
    )
    assert m, summary
    # 2 s of soft start (it settles 0.16 m backwards), then 1 s accelerating towards 0.5 m/s
    assert 0.2 < float(m[2]) < float(m[1]) < 1.0


def test_walk_feeds_the_height_scan_to_safety_and_walk_real_disconnects_it(write_graph):
    assert load_and_build("walk").nodes["safety"].inputs["height_scan"] == "hal/height_scan"
    assert "height_scan" not in load_and_build("walk_real").nodes["safety"].inputs  # go2_hal has no scan
    # without the disconnection, the real HAL leaves the input on a topic nothing publishes
    bare = write_graph(f"extends: {ROOT / 'graphs' / 'walk.yaml'}\nnodes:\n  hal: {{class: go2_hal}}\n")
    with pytest.raises(GraphError, match="input 'height_scan' is wired to topic 'hal/height_scan', which nothing"):
        load_and_build(bare)


class Stutter(Node):
    """Answers each state with the Go2's stand, except while ``quiet_from_s <= t < quiet_to_s``."""

    kind = "policy"
    quiet_from_s = Param(float, 1.0, "silent from", unit="s")
    quiet_to_s = Param(float, 2.0, "silent until", unit="s")
    state = Input(RobotState)
    joint_command = Output(JointCommand)

    def on_state(self, msg: RobotState) -> None:
        if self.quiet_from_s <= self.now() < self.quiet_to_s:
            return
        cmd = JointCommand(name=list(msg.joints.name), robot_id=msg.robot_id, observation_seq=msg.header.seq)
        cmd.observation_stamp_ns = msg.header.stamp_ns  # the state it answers: safety forwards only such commands
        set_array(cmd.position, np.array([0.0, 0.8, -1.5] * 4))
        self.joint_command.publish(cmd)


def _stutter_run(duration_s: float, caplog) -> tuple[int, list[logging.LogRecord], RunMonitor]:
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {
                "robot": {"class": FakeRobot, "inputs": {"command": "safety/joint_command"}},
                "policy": {"class": Stutter, "inputs": {"state": "robot/state"}},
                "safety": {
                    "class": Safety,
                    "params": {"soft_start_s": 0.5},
                    "inputs": {"state": "robot/state", "command": "policy/joint_command"},
                },
            },
        }
    )
    ex = Executor(build_graph(graph))
    monitor = RunMonitor(ex)
    with caplog.at_level(logging.INFO, logger="krabgraph.launch"):
        code = monitor.finish(ex.run(duration_s=duration_s, handle_signals=False))
    return code, [r for r in caplog.records if r.name == "krabgraph.launch"], monitor


def test_a_fault_that_clears_is_said_once_and_recovered_and_the_run_exits_0(caplog):
    code, records, monitor = _stutter_run(3.0, caplog)
    assert code == 0
    trips = [r for r in records if "SAFETY TRIP" in r.getMessage()]
    assert len(trips) == 1 and trips[0].levelno == logging.ERROR  # one line for a second of damping
    assert "safety is DAMPING (commands stale): commands stale" in trips[0].getMessage()
    assert "until the fault clears" in trips[0].getMessage()
    assert [r.getMessage().split(":")[0] for r in records if "recovered" in r.getMessage()] == [
        "safety recovered at t=2.00 s"
    ]
    assert [t.t_ns for t in monitor.trips] == [1_020_000_000]  # 2 periods after the last valid command (0.98 s)
    summary = next(r for r in records if r.getMessage().startswith("summary:"))
    assert summary.levelno == logging.INFO
    assert summary.getMessage() == (
        "summary: 3.00 s of graph time, distance unknown (the HAL's state has no base pose), 1 safety trip, "
        "no node failures; ended with safety ACTIVE; exit code 0"
    )


def test_a_run_stopped_while_damped_exits_3_and_an_executor_error_wins(caplog):
    code, records, monitor = _stutter_run(1.5, caplog)  # stops in the silence
    assert code == FAULT_EXIT_CODE and list(monitor.faulted) == ["safety"]
    assert records[-2].getMessage().endswith("exit code 3") and records[-2].levelno == logging.ERROR
    assert monitor.finish(1) == 1  # a node's stop_graph (1) or a loop crash (2) keeps its own code
    assert math.isclose(monitor.executor.clock.now_ns() * 1e-9, 1.5)
