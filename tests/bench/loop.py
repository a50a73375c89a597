"""Control-loop overhead: HAL → policy → safety → HAL through the executor, with nothing to compute.

A null HAL (no physics) publishes a Go2 ``RobotState`` (12 joints, IMU) from a 1 kHz wall-clock
timer; a null policy reads the joint positions and answers with a ``JointCommand`` holding the
default pose; the real ``Safety`` node (soft start off) validates, limits and forwards it; the HAL
reads the command's positions. One sample is the wall time from the HAL's timer callback starting
to the HAL receiving the command: message building, 4 deliveries (state to policy and safety,
command to safety, safety's command to the HAL), serialization and the safety checks. A second row
replaces Safety by a pass-through node (copy and republish) to show the transport and dispatch alone.
Targets: the Safety loop's p99 ≤ 100 µs, and its p50 ≤ 1.5× the pass-through loop's.
"""

from __future__ import annotations

import time

import numpy as np

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.msgs import CommandSource, JointCommand, RobotState, set_array, to_numpy
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.safety import Safety

from . import placement
from .stats import Row, interleaved, summarize

RATE_HZ = 1000.0
WARMUP = 100  # iterations while Safety goes WAITING → SOFT_START → ACTIVE, not counted
TARGET_US = 100.0
TARGET_RATIO = 1.5  # Safety's loop ≤ 1.5× the pass-through loop at p50: forwarding costs little more than a copy


class NullHal(Node):
    """Publishes a fixed Go2 state every tick and times how long until a command comes back."""

    kind = "hal"
    rate_hz = Param(float, RATE_HZ, "", gt=0)
    count = Param(int, 20_000, "", ge=1)
    command = Input(JointCommand, triggers=False)  # times the loop; publishes nothing
    state = Output(RobotState)

    def on_configure(self) -> None:
        robot = load_robot("go2")
        self.q = np.array(robot.default_pos, dtype=np.float64)
        self.zeros = np.zeros(robot.num_joints)
        self.template = RobotState()
        self.template.joints.name.extend(robot.joint_names)
        self.template.imu.orientation.w = 1.0

    def on_activate(self) -> None:
        self.lat: list[int] = []
        self.t0 = 0
        self.create_timer(1.0 / self.rate_hz, self.tick)

    def tick(self) -> None:
        self.t0 = time.perf_counter_ns()
        msg = RobotState()
        msg.CopyFrom(self.template)
        set_array(msg.joints.position, self.q)
        set_array(msg.joints.velocity, self.zeros)
        set_array(msg.joints.effort, self.zeros)
        self.state.publish(msg)

    def on_command(self, msg: JointCommand) -> None:
        to_numpy(msg.position)
        if self.t0:  # the first command after a tick (Safety may send its own while starting)
            self.lat.append(time.perf_counter_ns() - self.t0)
            self.t0 = 0
            if len(self.lat) == self.count:
                self.request_stop()


class NullPolicy(Node):
    """Reads the joint positions and answers every state with the default pose."""

    kind = "policy"
    state = Input(RobotState)
    joint_command = Output(JointCommand)

    def on_configure(self) -> None:
        robot = load_robot("go2")
        self.target = np.array(robot.default_pos, dtype=np.float64)
        self.template = JointCommand(name=robot.joint_names, source=CommandSource.POLICY)
        set_array(self.template.kp, robot.kp)
        set_array(self.template.kd, robot.kd)

    def on_state(self, msg: RobotState) -> None:
        to_numpy(msg.joints.position)
        cmd = JointCommand()
        cmd.CopyFrom(self.template)
        cmd.observation_stamp_ns = msg.header.stamp_ns
        cmd.observation_seq = msg.header.seq
        set_array(cmd.position, self.target)
        self.joint_command.publish(cmd)


class PassThrough(Node):
    """Copies each command and publishes it (the safety node's place, without its checks)."""

    kind = "safety"
    command = Input(JointCommand)
    joint_command = Output(JointCommand)

    def on_command(self, msg: JointCommand) -> None:
        out = JointCommand()
        out.CopyFrom(msg)
        self.joint_command.publish(out)


def loop_times(count: int, safety: type[Node]) -> np.ndarray:
    """Per-iteration wall time (µs) of ``count`` loops after the warmup."""
    n = count + WARMUP
    nodes: dict = {
        "hal": {"class": NullHal, "params": {"count": n}, "inputs": {"command": "safety/joint_command"}},
        "policy": {"class": NullPolicy, "inputs": {"state": "hal/state"}},
        "safety": {"class": safety, "inputs": {"command": "policy/joint_command"}},
    }
    if safety is Safety:
        nodes["safety"]["params"] = {"soft_start_s": 0.0}
        nodes["safety"]["inputs"]["state"] = "hal/state"
    ex = Executor(build_graph(graph_from_dict({"clock": "wall", "nodes": nodes}, name="bench_loop")))
    ex.run(duration_s=n / RATE_HZ * 3 + 5, handle_signals=False)
    if ex.failures:
        raise RuntimeError(f"control loop failed: {ex.failures[0][2]}")
    lat = ex.nodes["hal"].lat
    if len(lat) < n:
        raise RuntimeError(f"control loop: {len(lat)} of {n} iterations completed")
    return np.array(lat[WARMUP:], dtype=np.float64) / 1e3


def run(count: int, repeats: int) -> list[Row]:
    where = f"one thread, core {placement.main_core()}; HAL timer at {RATE_HZ:.0f} Hz, wall clock"
    runs = interleaved(
        {"safety": lambda: loop_times(count, Safety), "pass": lambda: loop_times(count, PassThrough)}, repeats
    )
    real = summarize(
        "loop", "hal → policy → Safety → hal (null HAL and policy, real Safety node)", runs["safety"], placement=where
    )
    bare = summarize(
        "loop",
        "hal → policy → pass-through → hal (null nodes: transport and dispatch only)",
        runs["pass"],
        placement=where,
    )
    met = real.p99 <= TARGET_US
    ratio = real.p50 / bare.p50
    ratio_met = ratio <= TARGET_RATIO
    real.note = (
        f"per loop iteration; Safety's checks ≈ {real.p50 - bare.p50:.0f} µs of the p50, "
        f"{ratio:.2f}× the pass-through loop (p50), target ≤ {TARGET_RATIO}×: {'met' if ratio_met else 'MISSED'}; "
        f"target p99 ≤ {TARGET_US:.0f} µs: {'met' if met else 'MISSED'}"
    )
    if not met and bare.p99 > TARGET_US:
        real.note += f" (the pass-through loop alone: p99 {bare.p99:.0f} µs)"
    real.extra = {"target_met": met, "ratio_p50": ratio, "ratio_target_met": ratio_met}
    bare.note = "the same loop with Safety replaced by a copy-and-republish node"
    return [real, bare]
