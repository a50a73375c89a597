"""Scripted velocity commands for demos and tests."""

from __future__ import annotations

import math
from typing import Any

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.checks import ParamProblem
from krabgraph.launch.api.errors import ParamError
from krabgraph.launch.api.params import TIME_LIMITS
from krabgraph.msgs import RobotState, VelocityCommand
from krabgraph.nodes.rotations import yaw_of

Phase = tuple[float, float, float, float]


def parse_schedule(schedule: list[Any]) -> tuple[list[Phase], list[str]]:
    """The phases of a schedule, and one message per malformed phase."""
    phases, problems = [], []
    longest = TIME_LIMITS["s"][1]
    for i, phase in enumerate(schedule):
        numbers = isinstance(phase, list) and len(phase) == 4
        numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in phase)
        if not numbers or not all(math.isfinite(v) for v in phase) or not 0 < phase[0] <= longest:
            problems.append(
                f"schedule[{i}] = {phase!r}; expected [duration_s > 0, vx, vy, yaw_rate]: 4 finite numbers, "
                f"duration_s <= {longest:g} s"
            )
        else:
            phases.append(tuple(float(v) for v in phase))
    return phases, problems


class ScriptedVelocity(Node):
    """Plays a velocity schedule, then holds zero.

    ``schedule`` is a list of ``[duration_s, vx, vy, yaw_rate]`` phases (m/s, m/s, rad/s), played
    in order from activation; after the last phase the command is zero.

    With ``heading_gain`` > 0 and ``state`` wired, the yaw rate also holds a heading, as stage-2
    policies are trained (go2_parkour): while the scheduled command is not zero, yaw rate += clip(
    ``heading_gain`` x (heading* - yaw), +-``heading_max``), the yaw from the IMU orientation and
    heading* the yaw when the robot last stood still, turned by the scheduled yaw rate since.

    Dynamic (``krabgraph param set``): a new ``schedule`` plays from the moment it is set;
    ``heading_gain`` and ``heading_max`` apply from the next tick. (Velocity commands reach the robot
    through the policy and the safety node, whose limits stay fixed.)
    """

    kind = "source"
    schedule = Param(
        list, [[5.0, 0.5, 0.0, 0.0]], "phases [duration_s, vx, vy, yaw_rate]; set at run time: plays from then",
        unit="s, m/s, rad/s", dynamic=True,
    )  # fmt: skip
    rate_hz = Param(float, 50.0, "publication rate", unit="Hz", gt=0)
    heading_gain = Param(
        float, 0.0, "yaw rate per rad of heading error; 0 = no heading hold", unit="1/s", ge=0, dynamic=True
    )
    heading_max = Param(float, 1.0, "largest heading-holding yaw rate", unit="rad/s", gt=0, dynamic=True)

    cmd_vel = Output(VelocityCommand)
    state = Input(RobotState, required=False, doc="IMU orientation, for the heading hold (heading_gain > 0)")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        return [ParamProblem("schedule", p) for p in parse_schedule(params["schedule"])[1]]

    def on_configure(self) -> None:
        self.phases, problems = parse_schedule(self.schedule)
        if problems:
            raise ParamError(f"{self.name}: {problems[0]}")

    def on_activate(self) -> None:
        self.t0_ns = self.now_ns()
        self.heading: float | None = None  # heading* (rad); None until a state while standing still
        self.last_ns = self.t0_ns
        self.create_timer(1.0 / self.rate_hz, self.tick)
        self.tick()

    def on_param_set(self, name: str, value: Any) -> None:
        """A new ``schedule`` is checked like the graph file's, then played from now."""
        if name != "schedule":
            return
        phases, problems = parse_schedule(value)
        if problems:
            raise ParamError(f"{self.name}: {problems[0]}")
        self.phases = phases
        if self.lifecycle == "active":
            self.t0_ns = self.now_ns()

    def command_at(self, t: float) -> tuple[float, float, float]:
        """The (vx, vy, yaw_rate) scheduled ``t`` seconds after activation."""
        for duration, vx, vy, wz in self.phases:
            if t < duration:
                return vx, vy, wz
            t -= duration
        return 0.0, 0.0, 0.0

    def tick(self) -> None:
        now = self.now_ns()
        vx, vy, wz = self.command_at((now - self.t0_ns) * 1e-9)
        dt, self.last_ns = (now - self.last_ns) * 1e-9, now
        if self.heading_gain > 0:
            wz = self.hold_heading(vx, vy, wz, dt)
        self.cmd_vel.publish(VelocityCommand(vx=vx, vy=vy, yaw_rate=wz, source="schedule"))

    def hold_heading(self, vx: float, vy: float, wz: float, dt: float) -> float:
        """The scheduled yaw rate ``wz`` plus the heading hold's correction (see the class doc)."""
        m = self.state.latest
        if m is None or not m.HasField("imu"):
            return wz
        o = m.imu.orientation
        yaw = yaw_of(o.w, o.x, o.y, o.z)
        if not math.isfinite(yaw):
            return wz
        if vx == vy == wz == 0.0 or self.heading is None:
            self.heading = yaw
            return wz
        self.heading = math.remainder(self.heading + wz * dt, math.tau)
        error = math.remainder(self.heading - yaw, math.tau)
        return wz + min(self.heading_max, max(-self.heading_max, self.heading_gain * error))
