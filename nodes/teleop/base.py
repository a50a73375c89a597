"""The common part of teleop nodes: limits, the deadman and the publishing timer."""

from __future__ import annotations

from krabgraph.launch import Node, Output, Param
from krabgraph.msgs import VelocityCommand


class TeleopNode(Node):
    """Publishes the operator's velocity set-point at ``rate_hz``, zero when the deadman trips.

    Subclasses read their device in ``poll()`` (called on every tick, must not block), call
    ``touch()`` for each sign of operator presence and set ``self.target`` = (vx m/s, vy m/s,
    yaw rate rad/s); values are clipped to ``max_vx``, ``max_vy``, ``max_yaw``. Without a
    ``touch()`` for ``deadman_s`` the published command is zero and the set-point is reset to zero.
    """

    kind = "teleop"
    source_name = "teleop"  # VelocityCommand.source
    rate_hz = Param(float, 50.0, "publication rate", unit="Hz", gt=0)
    deadman_s = Param(float, 1.0, "zero velocity after this long without operator input", unit="s", gt=0)
    max_vx = Param(float, 1.0, "largest forward/backward speed", unit="m/s", ge=0)
    max_vy = Param(float, 0.5, "largest sideways speed", unit="m/s", ge=0)
    max_yaw = Param(float, 1.0, "largest yaw rate", unit="rad/s", ge=0)

    cmd_vel = Output(VelocityCommand)

    def on_activate(self) -> None:
        self.target = (0.0, 0.0, 0.0)
        self.last_input_ns: int | None = None
        self.deadman_tripped = False
        self.create_timer(1.0 / self.rate_hz, self.tick)

    def poll(self) -> None:
        """Read pending device input (override; never block)."""

    def touch(self) -> None:
        """Operator input happened now: refreshes the deadman."""
        self.last_input_ns = self.now_ns()
        self.deadman_tripped = False

    def clip(self, vx: float, vy: float, wz: float) -> tuple[float, float, float]:
        def lim(v: float, m: float) -> float:
            return max(-m, min(m, float(v)))

        return lim(vx, self.max_vx), lim(vy, self.max_vy), lim(wz, self.max_yaw)

    @property
    def alive(self) -> bool:
        """Whether operator input arrived within ``deadman_s``."""
        return self.last_input_ns is not None and (self.now_ns() - self.last_input_ns) * 1e-9 <= self.deadman_s

    def tick(self) -> None:
        self.poll()
        if not self.alive:
            if not self.deadman_tripped and self.target != (0.0, 0.0, 0.0):
                self.log.warning("deadman: no operator input for %.2f s, velocity set to zero", self.deadman_s)
            self.deadman_tripped = True
            self.target = (0.0, 0.0, 0.0)
        vx, vy, wz = self.clip(*self.target)
        self.cmd_vel.publish(VelocityCommand(vx=vx, vy=vy, yaw_rate=wz, source=self.source_name))

    def on_deactivate(self) -> None:
        self.target = (0.0, 0.0, 0.0)
        self.cmd_vel.publish(VelocityCommand(source=self.source_name))


__all__ = ["TeleopNode"]
