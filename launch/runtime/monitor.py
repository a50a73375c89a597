"""The launcher's run monitor: each safety trip said once, a summary at the end, the exit code.

``krabgraph launch`` attaches a ``RunMonitor`` to its executor. It observes, in-process, every
``SafetyStatus`` output and the first HAL's ``RobotState`` output (``OutputPort.observe``: after the
message is sent, unchanged, so it alters no byte of any topic):

- A safety node entering DAMPING or ESTOP for a fault (``SafetyStatus.fault`` set) is reported at
  once as one ERROR line naming the node, the mode and the reason; heartbeats repeating it are not.
  A recovery (a non-latched fault that clears) is one INFO line.
- ``finish`` logs a summary: graph time, the distance the base travelled (the horizontal path of the
  HAL's base pose sampled every ``PATH_SAMPLE_S`` of graph time, so a gait's sway does not count;
  unknown without a base pose), on a course the obstacles passed (the HAL's ``course_progress``), the
  safety trips, the node failures, and how the run ended.
- Exit code: the executor's when nonzero; else ``FAULT_EXIT_CODE`` (3) when a safety node was in a
  fault as the run ended (before the shutdown's own damping); else 0.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from krabgraph.msgs import RobotState, SafetyStatus

if TYPE_CHECKING:
    from krabgraph.launch.runtime.executor import Executor

log = logging.getLogger("krabgraph.launch")

FAULT_EXIT_CODE = 3
PATH_SAMPLE_S = 0.5  # the base's path is measured between positions this far apart in graph time
FAULTED_MODES = frozenset({SafetyStatus.Mode.DAMPING, SafetyStatus.Mode.ESTOP})
_F = SafetyStatus.Fault
LATCHED = frozenset({_F.FAULT_ATTITUDE, _F.FAULT_BASE_HEIGHT, _F.FAULT_ESTOP})  # cleared only by an EStop reset


@dataclass(frozen=True)
class Trip:
    """A safety node entering a fault: when (graph time), which node, mode, fault and reason."""

    t_ns: int
    node: str
    mode: str
    fault: int
    reason: str

    @property
    def fault_name(self) -> str:
        return SafetyStatus.Fault.Name(self.fault).removeprefix("FAULT_").lower().replace("_", " ")

    def describe(self) -> str:
        return f"t={self.t_ns * 1e-9:.2f} s {self.node} {self.mode} ({self.fault_name}): {self.reason}"


class RunMonitor:
    """Watches one executor's safety statuses and robot state; see the module docstring."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.trips: list[Trip] = []
        self.faulted: dict[str, Trip] = {}  # safety node -> the fault it is in now
        self.modes: dict[str, str] = {}  # safety node -> its latest mode before shutdown
        self.path_m = 0.0  # horizontal path length of the base, up to the last sample
        self.states = 0
        self._start: tuple[float, float] | None = None
        self._sample: tuple[int, float, float] | None = None  # graph time, x, y of the last path sample
        self._last: tuple[float, float] | None = None  # the latest position
        hal_state = None
        self.hal = None  # the first HAL node (for its course_progress, if any)
        for node in executor.nodes.values():
            for port in node.output_ports().values():
                if port.spec.msg_type is SafetyStatus:
                    port.observe(partial(self._on_status, node.name))
                elif port.spec.msg_type is RobotState and node.kind == "hal" and hal_state is None:
                    hal_state, self.hal = port, node
        if hal_state is not None:
            hal_state.observe(self._on_state)

    def _on_status(self, node: str, msg: SafetyStatus) -> None:
        mode = SafetyStatus.Mode.Name(msg.mode)
        if not self.executor.stopping:
            self.modes[node] = mode
        current = self.faulted.get(node)
        if msg.mode in FAULTED_MODES and msg.fault != SafetyStatus.Fault.FAULT_NONE:
            if current is not None and current.fault == msg.fault:
                return
            trip = self.faulted[node] = Trip(msg.header.stamp_ns, node, mode, msg.fault, msg.reason)
            self.trips.append(trip)
            until = "until an EStop reset (latched)" if msg.fault in LATCHED else "until the fault clears"
            log.error(
                "SAFETY TRIP at t=%.2f s: %s is %s (%s): %s. The robot is damped %s; a run ending so exits %d",
                trip.t_ns * 1e-9,
                node,
                mode,
                trip.fault_name,
                msg.reason,
                until,
                FAULT_EXIT_CODE,
            )
        elif current is not None:
            del self.faulted[node]
            log.info("%s recovered at t=%.2f s: %s (%s)", node, msg.header.stamp_ns * 1e-9, mode, msg.reason)

    def _on_state(self, msg: RobotState) -> None:
        if not msg.has_base:
            return
        t, x, y = msg.header.stamp_ns, msg.base.position.x, msg.base.position.y
        if self._sample is None:
            self._start, self._sample = (x, y), (t, x, y)
        elif t - self._sample[0] >= PATH_SAMPLE_S * 1e9:
            self.path_m += math.hypot(x - self._sample[1], y - self._sample[2])
            self._sample = (t, x, y)
        self._last = (x, y)
        self.states += 1

    @property
    def distance_m(self) -> float | None:
        """The base's horizontal path so far (m), None without a base pose."""
        if self._sample is None or self._last is None:
            return None
        return self.path_m + math.hypot(self._last[0] - self._sample[1], self._last[1] - self._sample[2])

    def finish(self, code: int) -> int:
        """Log the summary; return the launcher's exit code (see the module docstring)."""
        ex = self.executor
        failures = Counter(name for name, _, _ in ex.failures)
        if code == 1 and not (self.states or self.modes or failures):
            return code  # start-up failed: nothing ran, the error is already said
        exit_code = code or (FAULT_EXIT_CODE if self.faulted else 0)
        parts = [f"{ex.clock.now_ns() * 1e-9:.2f} s of graph time"]
        distance = self.distance_m
        if distance is not None and self._start is not None and self._last is not None:
            net = math.hypot(self._last[0] - self._start[0], self._last[1] - self._start[1])
            parts.append(f"{distance:.2f} m travelled ({net:.2f} m from the start)")
        else:
            parts.append("distance unknown (the HAL's state has no base pose)")
        progress = getattr(self.hal, "course_progress", None)
        if progress is not None:
            passed, total, finished = progress
            parts.append(f"obstacles passed {passed}/{total}" + (", finish line crossed" if finished else ""))
        parts.append(f"{len(self.trips)} safety trip{'s' * (len(self.trips) != 1)}")
        if failures:
            parts.append("node failures: " + ", ".join(f"{n} {c}" for n, c in failures.items()))
        else:
            parts.append("no node failures")
        if self.faulted:
            ending = "ended in a fault: " + ", ".join(
                f"{t.node} {t.mode} ({t.fault_name}) since t={t.t_ns * 1e-9:.2f} s" for t in self.faulted.values()
            )
        elif self.modes:
            ending = "ended with " + ", ".join(f"{n} {m}" for n, m in self.modes.items())
        else:
            ending = "ended (no safety node)"
        level = logging.ERROR if exit_code else logging.INFO
        log.log(level, "summary: %s; %s; exit code %d", ", ".join(parts), ending, exit_code)
        for i, trip in enumerate(self.trips, 1):
            log.log(level, "  safety trip %d: %s", i, trip.describe())
        return exit_code


__all__ = ["FAULT_EXIT_CODE", "RunMonitor", "Trip"]
