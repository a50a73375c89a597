"""Graph clocks: wall (monotonic), simulated (lockstep) and followed (from a Clock topic)."""

from __future__ import annotations

import time


class WallClock:
    """Monotonic time since the graph started."""

    mode = "wall"

    def __init__(self) -> None:
        self._t0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return time.monotonic_ns() - self._t0


class SimClock:
    """Virtual time advanced by the executor to the next timer deadline (lockstep).

    ``real_time_factor`` None runs as fast as possible; 1.0 paces sim time to wall time.
    """

    mode = "sim"

    def __init__(self, real_time_factor: float | None = None) -> None:
        self.t_ns = 0
        self.real_time_factor = real_time_factor

    def now_ns(self) -> int:
        return self.t_ns


class TopicClock:
    """Time read from ``Clock`` messages published by an external simulator."""

    mode = "topic"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.t_ns = 0

    def now_ns(self) -> int:
        return self.t_ns
