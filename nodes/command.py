"""Scripted velocity commands for demos and tests."""

from __future__ import annotations

from krabgraph.launch import Node, Output, Param
from krabgraph.launch.errors import ParamError
from krabgraph.msgs import VelocityCommand


class ScriptedVelocity(Node):
    """Plays a velocity schedule, then holds zero.

    ``schedule`` is a list of ``[duration_s, vx, vy, yaw_rate]`` phases (m/s, m/s, rad/s), played
    in order from activation; after the last phase the command is zero.
    """

    kind = "source"
    schedule = Param(list, [[5.0, 0.5, 0.0, 0.0]], "phases [duration_s, vx, vy, yaw_rate]", unit="s, m/s, rad/s")
    rate_hz = Param(float, 50.0, "publication rate", unit="Hz", gt=0)

    cmd_vel = Output(VelocityCommand)

    def on_configure(self) -> None:
        self.phases: list[tuple[float, float, float, float]] = []
        for i, phase in enumerate(self.schedule):
            ok = isinstance(phase, list) and len(phase) == 4 and all(isinstance(v, (int, float)) for v in phase)
            if not ok or phase[0] <= 0:
                raise ParamError(f"{self.name}: schedule[{i}] = {phase!r}; expected [duration_s > 0, vx, vy, yaw_rate]")
            self.phases.append(tuple(float(v) for v in phase))

    def on_activate(self) -> None:
        self.t0_ns = self.now_ns()
        self.create_timer(1.0 / self.rate_hz, self.tick)
        self.tick()

    def command_at(self, t: float) -> tuple[float, float, float]:
        """The (vx, vy, yaw_rate) scheduled ``t`` seconds after activation."""
        for duration, vx, vy, wz in self.phases:
            if t < duration:
                return vx, vy, wz
            t -= duration
        return 0.0, 0.0, 0.0

    def tick(self) -> None:
        vx, vy, wz = self.command_at((self.now_ns() - self.t0_ns) * 1e-9)
        self.cmd_vel.publish(VelocityCommand(vx=vx, vy=vy, yaw_rate=wz, source="schedule"))
