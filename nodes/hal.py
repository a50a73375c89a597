"""The HAL contract: one ``Hal`` base owns timing, publishing and command parsing; backends hold only
backend code (after ros2_control's hardware interface: the framework owns the loop, the backend
implements ``read`` and ``write``).

A backend implements:

- ``open()`` (on configure): load the robot description into ``self.description``, start the
  simulator or connect to the robot. ``control_period()`` and ``command_parser()`` default to the
  description's ``control_dt`` and joints/gains.
- ``start()`` (on activate, before the first publication): reset the simulation, zero counters.
- ``advance(until_ns)``: simulators step up to graph time ``until_ns`` (called before every read).
- ``read()`` → ``RobotSnapshot`` of now, or None when there is nothing new (nothing is published).
- ``write(targets)``: apply ``JointTargets`` the one parser has validated (every joint, description
  order); they stay until the next valid command.
- ``sim_time_ns()`` for ``clock_source = "sim"``, ``publish_sensors()`` for height scans and the
  like, ``status_text()`` for the backend's part of the status line.

and declares its capabilities as class data: ``honours_gains`` (False: command kp/kd have no effect,
and ``krabgraph check`` warns) and ``clock_source`` ("sim": simulated time, published by ``clock`` with
a measured real-time factor, a first state at activation; "wall": the robot runs in real time,
``clock`` carries graph time with factor 1, and a state only when the robot sent one).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, ClassVar

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.checks import ParamProblem
from krabgraph.msgs import Clock, CommandSource, JointCommand, RobotState, SafetyStatus, VelocityCommand
from krabgraph.nodes.hal_io import CommandError, CommandParser, JointTargets, RobotSnapshot, fill_robot_state

REPORTS_PER_KIND = 16  # distinct rejection messages logged per kind of problem; further ones are counted
SOURCE_NAMES = {CommandSource.POLICY: "policy", CommandSource.OPERATOR: "operator", CommandSource.SAFETY: "safety"}
FAULT_TEXT_CHARS = 60  # the safety node's fault reason on the status line is cut to this length


class Hal(Node):
    """Base of every HAL node: control timer, clock → sensors → state, status line, command parsing.

    Every ``control_period()`` (the robot description's ``control_dt``) the node advances the
    backend to the graph clock, reads it and publishes, at one instant, ``clock`` first, then the
    backend's sensors (height scan...), ``state`` last: a node woken by the state already has the
    sensors of the same instant. ``command`` (JointCommand) is parsed with the one meaning
    (``CommandParser``: every joint exactly once, by name, any order; empty velocity/effort/kp/kd
    mean 0, 0 and the description's gains); an invalid one is counted in ``rejected`` and
    ``problems`` (by kind), each distinct message is logged once (at most ``REPORTS_PER_KIND`` per
    kind), and the last valid targets stay. Every ``status_period_s`` one status line is logged
    (dynamic: ``krabgraph param set hal.status_period_s 5`` reschedules it, 0 stops it).

    Every state carries ``robot_id`` (``<node name>#<random hex>``, drawn at each configure, so two
    copies of one graph on a host never share it): policies copy it into their commands and the
    safety node forwards only commands carrying its robot's. A command carrying another, non-empty
    id is rejected here too (kind "robot"); an empty one (tools, old recordings) is accepted.
    """

    kind = "hal"
    honours_gains: ClassVar[bool] = True  # False: JointCommand kp/kd have no effect (check warns)
    gains_note: ClassVar[str] = ""  # why gains are ignored, for the warning
    clock_source: ClassVar[str] = "sim"  # "sim" | "wall" (see the module docstring)

    status_period_s = Param(
        float, 1.0, "log a one-line status (backend, real-time factor, rejections, command executed); 0 = off",
        unit="s", ge=0, dynamic=True,
    )  # fmt: skip
    command = Input(JointCommand, queue=0, triggers=False, doc="joint targets by name; stored, applied by the backend")
    velocity_command = Input(
        VelocityCommand, required=False, triggers=False, doc="the operator's velocity command, shown in the status line"
    )
    safety_status = Input(
        SafetyStatus,
        queue=4,  # only the latest is shown; a short queue: a mode change and a heartbeat at one instant drop nothing
        required=False,
        triggers=False,
        doc="the safety node's mode (and fault), shown in the status line",
    )
    state = Output(RobotState)
    clock = Output(Clock)

    # -- checks -------------------------------------------------------------------------------
    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        """A backend that ignores command gains is reported (a warning: the graph still runs)."""
        if cls.honours_gains:
            return []
        why = f" ({cls.gains_note})" if cls.gains_note else ""
        return [
            ParamProblem(
                "",
                f"{cls.__name__} ignores JointCommand kp/kd{why}: gains sent by the policy or safety node "
                "have no effect",
                warning=True,
            )
        ]

    # -- backend interface (override) -------------------------------------------------------
    def open(self) -> None:
        """Configure the backend; set ``self.description`` (or override ``control_period``/``command_parser``)."""
        raise NotImplementedError

    def control_period(self) -> float:
        """Seconds between two ticks."""
        return self.description.control_dt

    def command_parser(self) -> CommandParser:
        """The parser of commands for this robot."""
        return CommandParser.for_robot(self.description)

    def start(self) -> None:
        """Activation, before the first state (``self.t0_ns`` is the graph time of activation)."""

    def extra_timers(self) -> None:
        """Create the backend's own timers (after the control timer, before the status timer)."""

    def advance(self, until_ns: int) -> None:
        """Simulators: step up to graph time ``until_ns``."""

    def read(self) -> RobotSnapshot | None:
        """The robot now, or None when there is nothing new to publish."""
        raise NotImplementedError

    def write(self, targets: JointTargets) -> None:
        """Apply validated targets (every joint, description order) until the next ones."""
        raise NotImplementedError

    def sim_time_ns(self) -> int:
        """Simulated time since activation (``clock_source = "sim"``)."""
        return self.now_ns() - self.t0_ns

    def publish_sensors(self, snap: RobotSnapshot, stamp_ns: int) -> None:
        """Publish the backend's sensor messages of this instant (between clock and state)."""

    def status_text(self) -> str:
        """The backend's part of the status line."""
        return ""

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self) -> None:
        self.rejected = 0  # invalid commands since configure
        self.problems: dict[str, int] = {}  # invalid commands per kind of problem (CommandError.kind)
        self._shown: dict[str, int] = {}  # rejection messages logged per kind
        self.robot_id = f"{self.name}#{secrets.token_hex(6)}"  # this instance, in every state it publishes
        self.open()
        self.parser = self.command_parser()
        self.control_dt = self.control_period()

    def on_activate(self) -> None:
        self.t0_ns = self.now_ns()
        self.executing = "none"  # the last valid command's source, or DAMPING (kp = 0)
        self.rtf = 0.0
        self.start()
        self._rtf_mark = (time.monotonic(), self._sim_ns())  # (wall s, sim ns) where the window starts
        if self.clock_source == "sim":
            self.publish()
        self.create_timer(self.control_dt, self.tick)
        self.extra_timers()
        self._status_timer = None
        self._schedule_status()

    def on_param_set(self, name: str, value: Any) -> None:
        """``status_period_s`` applies at once while active: the status timer is made again (0: none)."""
        if name == "status_period_s" and self.lifecycle == "active":
            self._schedule_status()

    def _schedule_status(self) -> None:
        if self._status_timer is not None:
            self._status_timer.cancel()
        period = self.status_period_s
        self._status_timer = self.create_timer(period, self.log_status) if period > 0 else None

    # -- the loop -------------------------------------------------------------------------------
    def tick(self) -> None:
        """The control timer: advance, then publish."""
        self.advance(self.now_ns())
        self.publish()

    def publish(self) -> None:
        """Clock, sensors, state: one instant, in this order (same-thread delivery follows it)."""
        snap = self.read()
        if snap is None:
            return
        now = self.now_ns()
        self._update_rtf()
        if self.clock is not None and self.clock.wanted:  # (a HAL without a clock output sets it None)
            msg = Clock(sim_time_ns=self._sim_ns(), real_time_factor=self.rtf)
            msg.header.stamp_ns = now
            self.clock.publish(msg)
        self.publish_sensors(snap, now)
        state = fill_robot_state(RobotState(), snap, stamp_ns=now)
        state.robot_id = self.robot_id
        self.state.publish(state)

    def _sim_ns(self) -> int:
        return self.sim_time_ns() if self.clock_source == "sim" else self.now_ns()

    def _update_rtf(self) -> None:
        """Simulated seconds per wall second over windows of at least 1 s (the first: since activation)."""
        if self.clock_source != "sim":
            self.rtf = 1.0
            return
        sim, wall = self._sim_ns(), time.monotonic()
        wall0, sim0 = self._rtf_mark
        if wall - wall0 >= 1.0:
            self.rtf = (sim - sim0) * 1e-9 / (wall - wall0)
            self._rtf_mark = (wall, sim)
        elif sim0 == 0 and wall > wall0:
            self.rtf = sim * 1e-9 / (wall - wall0)

    # -- commands -------------------------------------------------------------------------------
    def on_command(self, msg: JointCommand) -> None:
        try:
            targets = self.parser.parse(msg)
        except CommandError as exc:
            self.rejected += 1
            self._reject(exc)
            return
        robot_id = msg.robot_id
        if robot_id and robot_id != self.robot_id:
            self.rejected += 1
            self._reject(CommandError(f"command for robot {robot_id[:64]!r}, this is {self.robot_id!r}", "robot"))
            return
        if targets.gains_given and not self.honours_gains:
            why = f": {self.gains_note}" if self.gains_note else ""
            self.log_once(logging.WARNING, f"JointCommand kp/kd are ignored{why}")
        damping = np.count_nonzero(targets.kp) == 0  # (ndarray.any goes through a Python wrapper: 3x the cost)
        self.executing = "DAMPING" if damping else SOURCE_NAMES.get(msg.source, "unspecified")
        self.write(targets)

    def _reject(self, exc: CommandError) -> None:
        """Count ``exc`` by kind; log each distinct message, at most ``REPORTS_PER_KIND`` per kind (a
        hostile publisher varies its messages without end: log lines and memory stay bounded)."""
        kind = exc.kind
        self.problems[kind] = self.problems.get(kind, 0) + 1
        text = f"rejected joint command ({exc}); keeping the last valid targets"
        shown = self._shown.get(kind, 0)
        if shown < REPORTS_PER_KIND:
            logged = self.log_once(logging.ERROR, text)
        elif shown == REPORTS_PER_KIND:  # the first new message past the cap says so, once per kind
            further = "further rejected joint commands (%s) are counted in problems[%r], not logged"
            logged = self.log_once(logging.ERROR, further, kind, kind, key=text)
        else:
            return
        if logged:
            self._shown[kind] = shown + 1

    # -- logging --------------------------------------------------------------------------------
    def log_status(self) -> None:
        """One line a person can follow in a headless run; with ``safety_status`` wired, the safety node's
        mode comes before the command executed (``safety ACTIVE``; with a fault, its reason, shortened);
        with ``velocity_command`` wired, the line ends with the command in effect (what the robot is asked
        to do, beside what it does)."""
        wanted = self.velocity_command.latest
        asked = f"  asked vx={wanted.vx:.2f} vy={wanted.vy:.2f} yaw rate={wanted.yaw_rate:.2f}" if wanted else ""
        self.log.info(
            "t=%6.2fs  %s  rtf=%.1f  rejected=%d%s  cmd=%s%s",
            self._sim_ns() * 1e-9 if self.clock_source == "sim" else (self.now_ns() - self.t0_ns) * 1e-9,
            self.status_text(),
            self.rtf,
            self.rejected,
            safety_text(self.safety_status.latest),
            self.executing,
            asked,
        )


def safety_text(status: SafetyStatus | None) -> str:
    """``  safety ACTIVE``, ``  safety DAMPING (attitude trip: roll ...)`` with a fault latched; '' without status."""
    if status is None:
        return ""
    mode = SafetyStatus.Mode.Name(status.mode) if status.mode in SafetyStatus.Mode.values() else str(status.mode)
    if status.fault == SafetyStatus.Fault.FAULT_NONE:
        return f"  safety {mode}"
    fault = SafetyStatus.Fault.Name(status.fault) if status.fault in SafetyStatus.Fault.values() else str(status.fault)
    reason = " ".join(status.reason.split()) or fault.removeprefix("FAULT_").lower()
    if len(reason) > FAULT_TEXT_CHARS:
        reason = reason[: FAULT_TEXT_CHARS - 1].rstrip() + "…"
    return f"  safety {mode} ({reason})"


__all__ = ["SOURCE_NAMES", "CommandError", "CommandParser", "Hal", "JointTargets", "RobotSnapshot", "safety_text"]
