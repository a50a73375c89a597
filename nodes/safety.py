"""The safety node: the only path from policies and operators to the HAL, identical in sim and on the robot."""

from __future__ import annotations

import logging
import math
import struct
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from typing import Any

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.errors import ParamError
from krabgraph.msgs import (
    ArrayError,
    CommandSource,
    EStop,
    HeightScan,
    JointCommand,
    JointState,
    RobotState,
    SafetyStatus,
    set_array,
    to_numpy,
)
from krabgraph.msgs.arrays import NamedColumns, tuple_getter
from krabgraph.nodes.hal_io import COLUMNS, CommandError, CommandParser, few
from krabgraph.nodes.robots import RobotError, load_robot
from krabgraph.nodes.rotations import roll_pitch


class Mode(IntEnum):
    """SafetyStatus.Mode as plain ints: protobuf enum attribute lookups cost ~0.5 µs each."""

    MODE_UNSPECIFIED = SafetyStatus.Mode.MODE_UNSPECIFIED
    WAITING = SafetyStatus.Mode.WAITING
    SOFT_START = SafetyStatus.Mode.SOFT_START
    ACTIVE = SafetyStatus.Mode.ACTIVE
    DAMPING = SafetyStatus.Mode.DAMPING
    ESTOP = SafetyStatus.Mode.ESTOP


class Fault(IntEnum):
    """SafetyStatus.Fault as plain ints: why the robot is damped."""

    NONE = SafetyStatus.Fault.FAULT_NONE
    STATE_STALE = SafetyStatus.Fault.FAULT_STATE_STALE
    COMMANDS_STALE = SafetyStatus.Fault.FAULT_COMMANDS_STALE
    ATTITUDE = SafetyStatus.Fault.FAULT_ATTITUDE
    BASE_HEIGHT = SafetyStatus.Fault.FAULT_BASE_HEIGHT
    ESTOP = SafetyStatus.Fault.FAULT_ESTOP


POLICY, OPERATOR, SAFETY = int(CommandSource.POLICY), int(CommandSource.OPERATOR), int(CommandSource.SAFETY)
# Module constants: a class attribute of an Enum costs a lookup through EnumType (~0.3 µs) each time.
MODE_UNSPECIFIED, WAITING, SOFT_START, ACTIVE, DAMPING, ESTOP = (
    Mode.MODE_UNSPECIFIED, Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE, Mode.DAMPING, Mode.ESTOP,
)  # fmt: skip
MODE_NAMES = {int(m): SafetyStatus.Mode.Name(m) for m in Mode}
SOURCE_NAMES = {POLICY: "policy", OPERATOR: "operator"}
RECENT_STATES = 16  # states remembered for binding commands to them (more than max_answer_age_s holds)
WATCH_DIVISIONS = 4  # watchdog checks per control period: a trip is seen within a quarter period


@dataclass(slots=True)
class Target:
    """One full joint command in the robot description's joint order: ``values`` FLOAT64 ``[5, n]``,
    rows position (rad), velocity (rad/s), effort (N·m), kp (N·m/rad), kd (N·m·s/rad). One array, so
    each limit is one NumPy call for all five."""

    values: np.ndarray
    source: int = SAFETY
    observation_stamp_ns: int = 0
    observation_seq: int = 0


class Safety(Node):
    """Validates, limits and watchdogs joint commands on their way to the HAL; damps the robot on any fault.

    All limits come from the robot description (``robot``). Modes (``SafetyStatus.Mode``):

    - WAITING: no valid robot state yet; sends damping.
    - SOFT_START: from the first state (and after every recovery) ramps from the measured joint
      positions to the default pose over ``soft_start_s`` with the description's kp/kd, then holds
      the pose until a fresh valid command exists, then ACTIVE.
    - ACTIVE: forwards validated commands, clamped. A fresh operator command wins over the policy's.
    - DAMPING: kp = 0, kd = ``damping_kd``, position = measured q, velocity = effort = 0.
    - ESTOP: damping, latched.

    Output timing: a valid command is forwarded the moment it arrives (no added latency). A timer at
    the description's control rate checks the watchdogs and sends the mode's command: outside ACTIVE
    (damping, the ramp) on every tick, so the HAL gets one per control period even from a silent
    policy; in ACTIVE a repeat of the last output (source SAFETY) on a tick with nothing forwarded
    since the previous one, so a late or rejected command leaves a gap of at most 2 periods.

    Validation: the HAL contract's one parser (``krabgraph.nodes.hal_io.CommandParser``, the one
    every HAL uses, so a forwarded command is one every HAL accepts): every joint of the robot
    exactly once (any order, mapped by name) with a finite ``position`` per joint;
    ``velocity``/``effort``/``kp``/``kd`` either empty (0, 0 and the description's gains) or one
    finite value per joint, gains >= 0. Anything else is rejected (counted, one log line per kind of problem per
    ``log_interval_s``) and the last output is held. On forwarding, kp/kd are capped at
    ``max_kp_scale``/``max_kd_scale`` times the description's; positions are clamped to the soft
    limits (hard limits shrunk by ``soft_limit_margin``) widened by ``s = stop_torque_fraction ·
    effort_limit / kp`` (at most π), so a target beyond a limit presses the joint into its stop with at
    most that fraction of its rated effort — trained policies do this on purpose (go2_walk at 1 m/s
    commands calf targets up to 1.17 rad beyond the range on 60% of ticks; clamping them to the range
    halves its speed) — then to ``max_step`` from the last output target (go2_walk's largest step
    while walking: 1.37 rad, p99 0.82 rad); velocity and effort at the description's limits. Every
    clamp is counted.

    Binding (policy commands): a command must answer one of this robot's recent states, or it is
    rejected (counted, logged as above) and feeds no watchdog: its ``robot_id`` is the one of this
    robot's states ("rejected another robot"), its ``observation_seq`` and ``observation_stamp_ns`` are
    those of one of the last ``RECENT_STATES`` valid states ("rejected unknown state": a stale sequence,
    a made-up or replayed one), that state arrived at most ``max_answer_age_s`` ago ("rejected stale
    state") and has not been answered already ("rejected repeated answer"). This robot is the
    ``robot_id`` of the valid states: while they are fresh a state with another id is ignored
    ("ignored robot state: another robot"); after a state timeout the next valid state's id is taken
    (a restarted HAL). Operator commands are not bound: they are set-points a person chose, not answers
    to a state (validation, limits and the watchdog apply); only a non-empty ``robot_id`` must match.

    Faults and latching:

    - Watchdogs (graph clock): no valid state for ``state_timeout_s``, or in ACTIVE no valid command
      for ``command_timeout_s`` while a state received since the last valid policy command has
      waited more than ``command_timeout_s`` minus one control period -> DAMPING. (Commands that
      stop because the states stopped are the state watchdog's: a gap in the robot's states never
      trips the command watchdog.) Rejected commands do not feed the watchdog. Not latched: once the
      state is fresh and a valid command has arrived after the trip, SOFT_START again. Both are
      checked on every state, command and control tick, the command watchdog also
      ``WATCH_DIVISIONS`` times per period, so it damps at most a quarter period after its timeout:
      with the default ``command_timeout_s`` (1.75 control periods, 35 ms at 50 Hz) the first
      damping command goes out at most 2 control periods after the last valid command whatever the
      policy's latency (in lockstep exactly 2), and an answer may come up to 0.75 periods later than
      the previous one without a trip (a skipped answer is a 2-period gap: in real time it damps,
      and the robot soft-starts again once commands are back).
    - Attitude: |roll| or |pitch| of the IMU orientation above ``attitude_limit`` -> DAMPING, latched.
    - Base height (a fall that leaves the base level, e.g. legs folded onto a deck): in ACTIVE, the
      base lower than ``min_base_height`` above the ground under it for ``min_base_height_s`` ->
      DAMPING, latched. The height is the median of the ``height_scan`` cells within one resolution
      of the base (value + offset = base z - ground z; a look-ahead grid's ``center`` is honoured),
      or, with ``ground_span`` > 0, over the lower of the ground there and at +- ``ground_span`` along
      the heading (the median of the cells within one resolution of each end), as the trainer's fall,
      while a scan is fresh (``state_timeout_s``); without one, the base z of ``RobotState.base``
      (simulators: ground truth) over a ground at z = 0; with neither (a real robot without a scan)
      the check is off. Not armed before ACTIVE,
      so a robot may stand up from lying down during SOFT_START.
    - E-stop: ``engage`` -> ESTOP, latched.
    - Latches survive deactivation; only an ``EStop`` with ``reset`` (and not ``engage``) clears them,
      and only while the state is fresh and the robot is within the attitude limit; it clears all of
      them and restarts with SOFT_START.

    ``status.fault`` names the fault while DAMPING or ESTOP (``FAULT_NONE`` otherwise, and for the
    damping sent on deactivation unless a fault was active then).

    Generated commands (damping, ramp, repeats) carry ``source = SAFETY`` and the stamp/seq of the
    latest robot state; forwarded ones carry POLICY or OPERATOR (by input port) and the command's own
    observation stamp/seq; all carry this robot's ``robot_id`` (the HAL rejects another one).
    ``status`` is published on every mode or reason change and at ``status_hz``.
    Deactivation sends one last damping command.
    """

    kind = "safety"
    robot = Param(str, "go2", "robot description name or path: joints, limits, gains, control period")
    soft_limit_margin = Param(float, 0.05, "soft limits: this far inside the hard joint limits", unit="rad", ge=0)
    stop_torque_fraction = Param(
        float,
        1.0,
        "a target beyond a soft limit may press the joint into it with at most this fraction of its "
        "rated effort (kp·overshoot); 0 keeps targets within the soft limits",
        ge=0,
        le=1,
    )
    max_step = Param(float, 2.0, "largest change of a joint target from the last output target", unit="rad", gt=0)
    max_kp_scale = Param(float, 2.0, "kp cap, as a multiple of the description's kp", ge=0)
    max_kd_scale = Param(float, 2.0, "kd cap, as a multiple of the description's kd", ge=0)
    damping_kd = Param(float, 1.0, "velocity gain of damping (kp = 0)", unit="N·m·s/rad", gt=0)
    command_timeout_s = Param(
        float, None, "a command older than this is stale (ACTIVE -> DAMPING); default: 1.75 control periods",
        unit="s", gt=0,
    )  # fmt: skip
    max_answer_age_s = Param(
        float, None, "a policy command must answer a state received at most this long ago; default: 3 control "
        "periods", unit="s", gt=0,
    )  # fmt: skip
    state_timeout_s = Param(float, 0.05, "a robot state older than this is stale (-> DAMPING)", unit="s", gt=0)
    attitude_limit = Param(
        float, None, "|roll| or |pitch| above this -> DAMPING, latched; default: the robot's fall.max_tilt",
        unit="rad", gt=0,
    )  # fmt: skip
    min_base_height = Param(
        float, None, "in ACTIVE, base lower than this above the ground -> DAMPING, latched; 0 = off; "
        "default: the robot's fall.min_base_height", unit="m", ge=0,
    )  # fmt: skip
    min_base_height_s = Param(float, 0.1, "how long the base must stay below min_base_height to trip", unit="s", ge=0)
    ground_span = Param(
        float, 0.0, "> 0: the base height is over the lowest ground of the scan at +- this along the heading "
        "too (a base astride a step edge or over a hurdle is not a fall), as the parkour trainer's fall",
        unit="m", ge=0,
    )  # fmt: skip
    soft_start_s = Param(float, 2.0, "ramp duration from the measured pose to the default pose", unit="s", ge=0)
    status_hz = Param(float, 2.0, "heartbeat rate of status (also sent on every change)", unit="Hz", gt=0)
    log_interval_s = Param(float, 5.0, "at most one log line per kind of problem per interval", unit="s", gt=0)

    state = Input(RobotState, doc="joint positions by name and IMU orientation")
    command = Input(JointCommand, doc="the policy's joint command")
    operator = Input(JointCommand, required=False, doc="operator joint command; wins over the policy while fresh")
    estop = Input(EStop, required=False, doc="engage latches ESTOP; reset clears it")
    height_scan = Input(HeightScan, required=False, doc="terrain around the base: its height above the ground")
    joint_command = Output(JointCommand, doc="the command the HAL executes, every joint, description order")
    status = Output(SafetyStatus, doc="mode, reason and counters")

    # -- lifecycle ----------------------------------------------------------------------------
    def on_configure(self) -> None:
        try:
            r = self.description = load_robot(self.robot)
        except RobotError as exc:
            raise ParamError(f"{self.name}: {exc}") from None
        self.n = r.num_joints
        self.names = list(r.joint_names)
        self.known = frozenset(self.names)
        self._index_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._centre_cache: dict[tuple[Any, ...], np.ndarray] = {}
        self._scan_cells: dict[tuple[Any, ...], tuple[np.dtype, np.ndarray, int, int]] = {}  # see on_height_scan
        self.parser = CommandParser.for_robot(r)
        # The hot path reads from these, computed once: the states' joint positions straight from
        # the wire (per name order, the gather to description order), the output's constant bytes,
        # per kp the limits of a forwarded command, and the parameters in the units compared.
        self._state_wire = NamedColumns(JointState, ("position",))
        self._template = JointCommand(name=self.names)  # FLOAT64 [n] arrays: each send fills in the data
        for key in COLUMNS:
            set_array(getattr(self._template, key), np.zeros(self.n))
        self._wire, self._wire_rows = self._command_wire()
        self._bounds: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._unpack_q = struct.Struct(f"<{self.n}d").unpack
        self._row_bytes = 8 * self.n
        self._step = np.full(self.n, self.max_step)  # _limit's step bounds: ref -+ max_step, written per call
        self._step_lo, self._step_hi = np.empty(self.n), np.empty(self.n)
        # the defaults in control periods: damping at most 2 periods after the last valid command
        self.command_timeout = 1.75 * r.control_dt if self.command_timeout_s is None else self.command_timeout_s
        self.max_answer_age = 3 * r.control_dt if self.max_answer_age_s is None else self.max_answer_age_s
        self._state_timeout_ns = self.state_timeout_s * 1e9
        self._command_timeout_ns = round(self.command_timeout * 1e9)
        self._answer_wait_ns = max(0, self._command_timeout_ns - round(r.control_dt * 1e9))
        self._max_answer_age_ns = round(self.max_answer_age * 1e9)
        self._forwarding = {s: f"forwarding {name} commands" for s, name in SOURCE_NAMES.items()}
        # fall limits: the graph's parameters, else the robot description's
        self.max_tilt = r.fall_max_tilt if self.attitude_limit is None else self.attitude_limit
        self.min_height = r.fall_min_base_height if self.min_base_height is None else self.min_base_height
        self.lower = r.pos_lower + self.soft_limit_margin
        self.upper = r.pos_upper - self.soft_limit_margin
        if np.any(self.lower >= self.upper):
            j = int(np.argmax(self.lower >= self.upper))
            raise ParamError(
                f"{self.name}: soft_limit_margin {self.soft_limit_margin} rad closes {self.names[j]}'s range"
            )
        for key, value in (("command_timeout_s", self.command_timeout), ("state_timeout_s", self.state_timeout_s)):
            if value <= r.control_dt:
                raise ParamError(f"{self.name}: {key} = {value} s must exceed the control period ({r.control_dt} s)")
        self.default = np.clip(r.default_pos, self.lower, self.upper)
        self.kp_max = r.kp * self.max_kp_scale
        self.kd_max = r.kd * self.max_kd_scale
        self.period_ns = round(r.control_dt * 1e9)
        self.rejected = 0  # commands rejected since configure
        self.clamped = 0  # forwarded commands changed by a limit
        self.bad_states = 0
        self.problems: dict[str, int] = {}  # count per kind of rejection or clamp
        self.estop_reason = ""  # non-empty: e-stop latched
        self.attitude_reason = ""  # non-empty: attitude trip latched
        self.height_reason = ""  # non-empty: base height trip latched

    def on_activate(self) -> None:
        self.mode: int = MODE_UNSPECIFIED
        self.reason = ""
        self.fault: int = Fault.NONE
        self.base_height: float | None = None  # m above the ground under the base (latest state), if known
        self.low_since_ns: int | None = None  # graph time the base went below min_base_height (ACTIVE)
        self.scan_height: float | None = None  # base height from the latest usable height scan
        self.scan_ns = 0  # graph time of that scan
        self.q: np.ndarray | None = None  # measured joint positions (description order)
        self.tilt = (0.0, 0.0)  # roll, pitch (rad) of the latest state
        self.state_ns = 0  # graph time of the latest valid state
        self.state_ref = (0, 0)  # header stamp and seq of the latest valid state
        self.robot_id: str | None = None  # robot_id of the valid states: this robot
        self._recent: dict[int, list[int]] = {}  # seq -> [stamp, graph time received, answered] of recent states
        self._recent_order: deque[int] = deque()  # their seqs, oldest first
        self.fresh: dict[int, int] = {}  # source -> graph time of its latest valid command
        self._unanswered_ns: int | None = None  # arrival of the first state since the last valid policy command
        self.target: Target | None = None  # the last output
        self.trip_ns = 0
        self.ramp_t0_ns = 0
        self.ramp_q0 = self.default
        self._sent_since_tick = False
        self._sent_ns = -1  # graph time of the last output
        self._set_mode(WAITING, "no robot state yet")
        self._update()
        self.create_timer(self.description.control_dt, self.tick)
        self.create_timer(1.0 / self.status_hz, self.publish_status)
        self.create_timer(self.description.control_dt / WATCH_DIVISIONS, self.watch)

    def on_deactivate(self) -> None:
        if self.mode not in (DAMPING, ESTOP):
            self.fault = Fault.NONE  # a normal end: damping, but no fault
        self.mode = ESTOP if self.estop_reason else DAMPING
        self.reason = "safety node deactivated"
        self.log.warning("deactivated: sending a last damping command")
        self.publish_status()
        self._send(self._damping())

    # -- inputs -------------------------------------------------------------------------------
    def on_state(self, msg: RobotState) -> None:
        robot_id = msg.robot_id
        if robot_id != self.robot_id and not self._may_adopt(robot_id):
            return
        now = self.now_ns()  # one graph time for the whole callback
        if not self._read_state(msg, now):
            return
        if robot_id != self.robot_id:
            if self.robot_id is not None:
                self.log.warning("robot states now come from %r (was %r)", robot_id, self.robot_id)
            self.robot_id = robot_id
            self._recent.clear()
            self._recent_order.clear()
        stamp, seq = self.state_ref
        self._remember(seq, stamp, now)
        if self._unanswered_ns is None:
            self._unanswered_ns = now
        roll, pitch = self.tilt
        if not self.attitude_reason and max(abs(roll), abs(pitch)) > self.max_tilt:
            self.attitude_reason = (
                f"attitude trip: roll {roll:+.2f} rad, pitch {pitch:+.2f} rad (limit {self.max_tilt} rad)"
            )
        self._check_height(msg, now)
        self._update(now)

    def on_height_scan(self, msg: HeightScan) -> None:
        """Keep the base's height above the ground from the scan's centre cells (checked with the next state)."""
        heights = msg.heights
        key = (heights.dtype, *heights.shape, len(heights.data), msg.resolution, msg.center_x, msg.center_y)
        fast = self._scan_cells.get(key)  # a grid seen valid: (dtype, [rows, k] flat indices)
        if fast is not None:  # a handful of cells per row: Python floats beat NumPy's per-call cost
            dtype, rows, lo, hi = fast
            height = -math.inf
            for row in np.frombuffer(heights.data, dtype=dtype)[rows].tolist():
                if not math.isfinite(sum(row)):  # a NaN or inf among them: the checked path says what to do
                    break
                row.sort()
                median = row[lo] / 2 + row[hi] / 2  # as _median; the base, then either end: the larger
                if median > height:
                    height = median
            else:
                self.scan_height = height + msg.offset
                self.scan_ns = self.now_ns()
                return
        self._scan_height_checked(msg, key)

    def _scan_height_checked(self, msg: HeightScan, key: tuple[Any, ...]) -> None:
        """``on_height_scan`` one step at a time, with the checks and logs: the reference of its fast path,
        which it teaches a grid whose centre (and ends) have the same number of cells."""
        try:
            heights = to_numpy(msg.heights)
        except (ArrayError, ValueError) as exc:
            self._count_and_log(logging.ERROR, "ignored height scan: malformed", str(exc))
            return
        if heights.ndim != 2 or heights.size == 0 or not msg.resolution > 0:
            text = f"heights of shape {heights.shape} at resolution {msg.resolution}; expected [n_y, n_x], > 0"
            self._count_and_log(logging.ERROR, "ignored height scan: shape", text)
            return
        n_y, n_x = heights.shape
        base_x = round((n_x - 1) / 2 - msg.center_x / msg.resolution, 3)
        base_y = round((n_y - 1) / 2 - msg.center_y / msg.resolution, 3)
        flat = heights.reshape(-1)
        rows = [self._centre_cells(heights.shape, base_x, base_y)]
        if self.ground_span > 0:  # lower ground at either end of the base: the larger base height
            span = self.ground_span / msg.resolution
            rows += [
                self._centre_cells(heights.shape, end_x, base_y)
                for end_x in (round(base_x - span, 3), round(base_x + span, 3))
            ]
        if len({r.size for r in rows}) == 1 and rows[0].size:
            if len(self._scan_cells) >= 24:  # a publisher that changes its grid every message
                self._scan_cells.clear()
            k = rows[0].size
            self._scan_cells[key] = (heights.dtype, np.stack(rows), (k - 1) // 2, k // 2)
        height = _median(flat[rows[0]])
        if height is None:
            return
        for cells in rows[1:]:
            end = _median(flat[cells])
            if end is not None and end > height:
                height = end
        self.scan_height = height + msg.offset
        self.scan_ns = self.now_ns()

    def _may_adopt(self, robot_id: str) -> bool:
        """Whether a state of ``robot_id`` (not this robot's) may become this robot's: only when there is
        no fresh state of this robot (none yet, or a restarted HAL); else it is ignored and counted."""
        if self.q is None or self.now_ns() - self.state_ns > self._state_timeout_ns:
            return True
        self.bad_states += 1
        text = f"state of robot {robot_id[:64]!r} while this robot {self.robot_id!r} is publishing"
        self._count_and_log(logging.ERROR, "ignored robot state: another robot", text)
        return False

    def _remember(self, seq: int, stamp_ns: int, now: int) -> None:
        """Keep a valid state's seq and stamp (the last ``RECENT_STATES``) for binding commands to it."""
        recent, order = self._recent, self._recent_order
        entry = recent.get(seq)
        if entry is not None and entry[0] == stamp_ns:  # the same state again: its first arrival counts
            return
        if entry is None:
            if len(order) >= RECENT_STATES:
                del recent[order.popleft()]
            order.append(seq)
        recent[seq] = [stamp_ns, now, 0]

    def _answers_recent_state(self, msg: JointCommand, now: int) -> bool:
        """Whether policy command ``msg`` answers one of this robot's recent states (once); else count, log."""
        robot_id, seq, stamp = msg.robot_id, msg.observation_seq, msg.observation_stamp_ns
        name = "policy"
        if robot_id != self.robot_id and self.robot_id is not None:
            kind, text = "another robot", f"{name}: command for robot {robot_id[:64]!r}, this is {self.robot_id!r}"
        else:
            entry = self._recent.get(seq)
            if entry is None or entry[0] != stamp:
                kind = "unknown state"
                text = f"{name}: command answers state seq {seq} stamp {stamp} ns, none of this robot's recent states"
            else:
                age = now - entry[1]
                if age > self._max_answer_age_ns:
                    kind = "stale state"
                    text = (
                        f"{name}: command answers state seq {seq}, received {age * 1e-6:.1f} ms ago "
                        f"(max_answer_age_s {self.max_answer_age * 1e3:.0f} ms)"
                    )
                elif entry[2]:
                    kind, text = "repeated answer", f"{name}: state seq {seq} was answered already"
                else:
                    entry[2] = 1
                    return True
        self.rejected += 1
        self._count_and_log(logging.ERROR, f"rejected {kind}", text)
        return False

    def on_command(self, msg: JointCommand) -> None:
        self._on_joint_command(msg, POLICY)

    def on_operator(self, msg: JointCommand) -> None:
        self._on_joint_command(msg, OPERATOR)

    def on_estop(self, msg: EStop) -> None:
        if msg.engage:
            if not self.estop_reason:
                self.estop_reason = f"e-stop engaged: {msg.reason or 'no reason given'}"
            self._update()
        elif msg.reset:
            self._reset(msg.reason)

    def watch(self) -> None:
        """The command watchdog between control ticks (``WATCH_DIVISIONS`` per period): a trip damps at once."""
        if self.mode == ACTIVE and self._unanswered_ns is not None and self._commander(self.now_ns()) is None:
            self._update()

    def tick(self) -> None:
        """Control-rate timer: watchdogs, then the mode's command (see the class doc for when)."""
        self._update()
        if self.mode == ACTIVE:
            if not self._sent_since_tick and self.target is not None:
                self._send(self._repeat(self.target))
        elif self._sent_ns != self.now_ns():
            self._send(self._ramp() if self.mode == SOFT_START else self._damping())
        self._sent_since_tick = False

    def publish_status(self) -> None:
        self.status.publish(
            SafetyStatus(
                mode=self.mode, reason=self.reason, rejected=self.rejected, clamped=self.clamped, fault=self.fault
            )
        )

    # -- mode logic ---------------------------------------------------------------------------
    def _update(self, now: int | None = None) -> int | None:
        """Re-evaluate the mode from latches, watchdogs and the ramp at graph time ``now`` (default: the
        clock's); return the commander (``_commander``) it was evaluated with."""
        if now is None:
            now = self.now_ns()
        commander = self._commander(now)
        if (  # the steady state, first: ACTIVE, fresh inputs, nothing latched (what _evaluate decides then)
            self.mode == ACTIVE
            and commander is not None
            and not (self.estop_reason or self.attitude_reason or self.height_reason)
            and self.q is not None
            and now - self.state_ns <= self._state_timeout_ns
        ):
            reason = self._forwarding[commander]
            if reason != self.reason or self.fault:  # (else _set_mode would change nothing)
                self._set_mode(ACTIVE, reason)
        else:
            self._evaluate(now, commander)
        return commander

    def _evaluate(self, now: int, commander: int | None) -> None:
        """The mode at ``now`` with ``commander``, in order of precedence: latches, no state yet, the
        watchdogs, then by mode the ramp and the recovery."""
        if self.estop_reason:
            self._set_mode(ESTOP, self.estop_reason, Fault.ESTOP)
        elif self.attitude_reason:
            self._set_mode(DAMPING, self.attitude_reason, Fault.ATTITUDE)
        elif self.height_reason:
            self._set_mode(DAMPING, self.height_reason, Fault.BASE_HEIGHT)
        elif self.q is None:
            self._set_mode(WAITING, "no robot state yet")
        elif now - self.state_ns > self._state_timeout_ns:
            why = f"robot state stale (none for more than {self.state_timeout_s * 1e3:.0f} ms)"
            self._trip(why, Fault.STATE_STALE)
        elif self.mode == ACTIVE and commander is None and self._unanswered(now):
            why = f"commands stale (no valid command for more than {self.command_timeout * 1e3:.0f} ms)"
            self._trip(why, Fault.COMMANDS_STALE)
        elif self.mode == WAITING:
            self._start_ramp()
        elif self.mode == DAMPING:
            if commander is not None and self.fresh[commander] > self.trip_ns:
                self._start_ramp()
        elif self.mode == SOFT_START:
            if commander is not None and now - self.ramp_t0_ns >= self.soft_start_s * 1e9:
                self.target = self._hold(self.default)
                self._set_mode(ACTIVE, self._forwarding[commander])
        elif self.mode == ACTIVE and commander is not None:  # (none: a state gap, the state watchdog's)
            self._set_mode(ACTIVE, self._forwarding[commander])

    def _unanswered(self, now: int) -> bool:
        """Whether a state received since the last valid policy command waited longer than ``_answer_wait_ns``."""
        since = self._unanswered_ns
        return since is not None and now - since > self._answer_wait_ns

    def _commander(self, now: int) -> int | None:
        """The source whose commands are forwarded: a fresh operator, else a fresh policy, else None."""
        fresh, timeout = self.fresh, self._command_timeout_ns
        for source in (OPERATOR, POLICY):
            t = fresh.get(source)
            if t is not None and now - t <= timeout:
                return source
        return None

    def _set_mode(self, mode: int, reason: str, fault: int = Fault.NONE) -> None:
        if mode == self.mode and reason == self.reason and fault == self.fault:
            return
        entering = mode != self.mode
        old, self.mode, self.reason, self.fault = self.mode, mode, reason, fault
        level = logging.WARNING if mode in (DAMPING, ESTOP) else logging.INFO
        self.log.log(level, "%s -> %s: %s", MODE_NAMES[old], MODE_NAMES[mode], reason)
        self.publish_status()
        if entering and mode in (DAMPING, ESTOP):
            self._send(self._damping())

    def _trip(self, reason: str, fault: int) -> None:
        if self.mode != DAMPING:
            self.trip_ns = self.now_ns()
            self._set_mode(DAMPING, reason, fault)

    def _start_ramp(self) -> None:
        self.ramp_t0_ns = self.now_ns()
        self.ramp_q0 = np.clip(self.q, self.lower, self.upper)
        self._set_mode(SOFT_START, f"ramping to the default pose over {self.soft_start_s:g} s")
        self._send(self._ramp())

    def _reset(self, why: str) -> None:
        if not (self.estop_reason or self.attitude_reason or self.height_reason):
            self.log.info("reset received with nothing latched (%s)", why or "no reason given")
            return
        blockers = []
        if self.q is not None and self.now_ns() - self.state_ns > self.state_timeout_s * 1e9:
            blockers.append("robot state stale")
        roll, pitch = self.tilt
        if max(abs(roll), abs(pitch)) > self.max_tilt:
            blockers.append(f"attitude still beyond the limit (roll {roll:+.2f} rad, pitch {pitch:+.2f} rad)")
        if blockers:
            self.log.error("reset refused: %s; still latched: %s", "; ".join(blockers), self.reason)
            return
        self.log.warning("reset (%s): clearing %s", why or "no reason given", self.reason)
        self.estop_reason = self.attitude_reason = self.height_reason = ""
        self.low_since_ns = None
        if self.q is None:
            self._set_mode(WAITING, "no robot state yet")
        else:
            self._start_ramp()

    # -- commands in ----------------------------------------------------------------------------
    def _on_joint_command(self, msg: JointCommand, source: int) -> None:
        try:
            values, _ = self.parser.columns(msg)
        except CommandError as exc:
            self.rejected += 1
            self._count_and_log(logging.ERROR, f"rejected {exc.kind}", f"{SOURCE_NAMES[source]}: {exc}")
            return
        now = self.now_ns()
        if source == POLICY:
            if not self._answers_recent_state(msg, now):
                return
            self._unanswered_ns = None
        elif msg.robot_id and not self._is_ours(msg):  # operator commands: only a given robot_id is checked
            return
        self.fresh[source] = now
        if self._update(now) == source and self.mode == ACTIVE:
            self._send(self._limit(Target(values, source, msg.observation_stamp_ns, msg.observation_seq)), now)

    def _is_ours(self, msg: JointCommand) -> bool:
        """An operator command naming a robot: whether it names this one (else count and log)."""
        if msg.robot_id == self.robot_id:
            return True
        self.rejected += 1
        text = f"operator: command for robot {msg.robot_id[:64]!r}, this is {self.robot_id!r}"
        self._count_and_log(logging.ERROR, "rejected another robot", text)
        return False

    def _joint_index(self, names: tuple[str, ...]) -> np.ndarray | None:
        """Description index of each name if ``names`` is every joint exactly once (cached), else None."""
        idx = self._index_cache.get(names)
        if idx is None and len(names) == self.n and set(names) == self.known:
            idx = self._index_cache[names] = self.description.indices(names)
        return idx

    def _limit(self, t: Target) -> Target:
        """``t`` clamped to the soft limits, the step limit, the gain caps and the velocity/effort limits
        (``t`` itself, with new values)."""
        v, n = t.values, self._row_bytes
        given = v.tobytes()
        key = given[3 * n : 4 * n]  # kp's bytes
        bounds = self._bounds.get(key)
        if bounds is None:
            bounds = self._limit_bounds(v[3], key)
        lo, hi = bounds
        out = np.maximum(v, lo)  # every row at once: soft position limits, velocity, effort, kp and kd caps
        np.minimum(out, hi, out=out)
        soft = out.tobytes()
        ref = self.target.values[0] if self.target is not None else self.default
        step_lo, step_hi, step = self._step_lo, self._step_hi, self._step
        np.subtract(ref, step, out=step_lo)  # into arrays allocated once: a new [2, n] array and its rows cost 2x
        np.add(ref, step, out=step_hi)
        row = out[0]
        np.maximum(row, step_lo, out=row)
        np.minimum(row, step_hi, out=row)
        if soft != given or row.tobytes() != soft[:n]:  # anything clamped: count, log
            self._count_clamps(t, np.frombuffer(soft, dtype=np.float64).reshape(v.shape), out)
        t.values = out
        return t

    def _limit_bounds(self, kp: np.ndarray, key: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds ``[5, n]`` of a command with gains ``kp`` (cached per kp)."""
        r = self.description
        kp = np.minimum(kp, self.kp_max)
        # Learned policies use PD targets beyond a joint's range as torque requests at the stop; allow
        # that up to the torque budget, so the limit protects the joint without changing the gait.
        reach = self.stop_torque_fraction * r.effort_limit / np.maximum(kp, 1e-9)
        reach = np.where(kp > 0, np.minimum(reach, np.pi), 0.0)
        inf = np.full(self.n, np.inf)
        lo = np.stack([self.lower - reach, -r.velocity_limit, -r.effort_limit, -inf, -inf])
        hi = np.stack([self.upper + reach, r.velocity_limit, r.effort_limit, self.kp_max, self.kd_max])
        if len(self._bounds) >= 8:  # a policy that changes its gains every command
            self._bounds.clear()
        self._bounds[key] = (lo, hi)
        return lo, hi

    def _count_clamps(self, t: Target, soft: np.ndarray, out: np.ndarray) -> None:
        """Count and log (rate-limited) each kind of clamp ``_limit`` applied (``soft``: before the step limit)."""
        v = t.values
        changes = [
            ("position beyond soft limit", v[0], soft[0], "rad"),
            ("target step beyond max_step", soft[0], out[0], "rad"),
            ("velocity beyond limit", v[1], out[1], "rad/s"),
            ("effort beyond limit", v[2], out[2], "N·m"),
            ("kp beyond cap", v[3], out[3], "N·m/rad"),
            ("kd beyond cap", v[4], out[4], "N·m·s/rad"),
        ]
        clamped = False
        for kind, before, after, unit in changes:
            diff = before != after
            if diff.any():
                clamped = True
                j = int(np.argmax(diff))
                text = f"{SOURCE_NAMES[t.source]}: {self.names[j]} {before[j]:.3f} -> {after[j]:.3f} {unit}"
                self._count_and_log(logging.WARNING, f"clamped {kind}", text)
        self.clamped += int(clamped)

    # -- commands out ---------------------------------------------------------------------------
    def _generated(self, position: np.ndarray, kp: np.ndarray | float, kd: np.ndarray | float) -> Target:
        values = np.zeros((5, self.n))
        values[0], values[3], values[4] = position, kp, kd
        return Target(values, SAFETY, *self.state_ref)

    def _damping(self) -> Target:
        return self._generated(self.q if self.q is not None else self.default, 0.0, self.damping_kd)

    def _hold(self, position: np.ndarray) -> Target:
        return self._generated(position, self.description.kp, self.description.kd)

    def _ramp(self) -> Target:
        """The soft-start target now: a smoothstep from ``ramp_q0`` to the default pose."""
        s = 1.0
        if self.soft_start_s > 0:
            s = min(1.0, max(0.0, (self.now_ns() - self.ramp_t0_ns) / (self.soft_start_s * 1e9)))
        s = s * s * (3.0 - 2.0 * s)
        return self._hold(self.ramp_q0 + s * (self.default - self.ramp_q0))

    def _repeat(self, t: Target) -> Target:
        return Target(t.values, SAFETY, *self.state_ref)

    def _command_wire(self) -> tuple[bytearray | None, np.ndarray | None]:
        """The template's wire bytes and a FLOAT64 ``[5, n]`` view of its five data blocks (rows
        ``COLUMNS``): a send writes its values there and parses the bytes, half the cost of five field
        assignments. ``(None, None)`` where the blocks are not found once each, evenly spaced."""
        marks = np.arange(5 * self.n, dtype=np.float64).reshape(5, self.n) + 1000.25  # distinct values
        probe = JointCommand(name=self.names)
        for key, row in zip(COLUMNS, marks, strict=True):
            set_array(getattr(probe, key), row)
        wire = bytearray(probe.SerializeToString())
        blocks = [row.tobytes() for row in marks]
        starts = [wire.find(block) for block in blocks]
        strides = {b - a for a, b in pairwise(starts)}
        if len(strides) != 1 or any(wire.count(block) != 1 for block in blocks):
            return None, None
        rows = np.ndarray((5, self.n), dtype="<f8", buffer=wire, offset=starts[0], strides=(strides.pop(), 8))
        rows[...] = 0.0
        if JointCommand.FromString(bytes(wire)) != self._template:  # the zeros parse back to the template
            return None, None
        return wire, rows

    def _send(self, t: Target, now: int | None = None) -> None:
        """Publish ``t`` (its ``values`` fill the template's FLOAT64 ``[n]`` arrays) and make it the target;
        ``now``: the graph time, if the caller has it."""
        if self._wire_rows is not None:
            self._wire_rows[...] = t.values
            msg = JointCommand.FromString(bytes(self._wire))  # bytes: the message may keep them, never changed
        else:
            raw, n = t.values.tobytes(), self._row_bytes
            msg = JointCommand()
            msg.CopyFrom(self._template)
            msg.position.data = raw[:n]  # the rows of COLUMNS
            msg.velocity.data = raw[n : 2 * n]
            msg.effort.data = raw[2 * n : 3 * n]
            msg.kp.data = raw[3 * n : 4 * n]
            msg.kd.data = raw[4 * n :]
        msg.source = t.source
        msg.observation_stamp_ns = t.observation_stamp_ns
        msg.observation_seq = t.observation_seq
        if self.robot_id:
            msg.robot_id = self.robot_id
        self.target = t
        self._sent_since_tick = True
        self._sent_ns = self.now_ns() if now is None else now
        self.joint_command.publish(msg)

    # -- state in -------------------------------------------------------------------------------
    def _read_state(self, msg: RobotState, now: int) -> bool:
        """Store q, tilt and the state's time if ``msg`` is usable; log (rate-limited) and count if not."""
        fast = self._state_wire.read(msg.joints)  # a name order seen valid, positions FLOAT64 [n]
        if fast is not None and fast[1][0] is not None:
            reorder, (data,) = fast
            q = self._unpack_q(data)
            if reorder is not None:
                q = reorder(q)  # description order
            o = msg.imu.orientation
            w, x, y, z = o.w, o.x, o.y, o.z
            norm = math.sqrt(sum((w * w, x * x, y * y, z * z)))
            # the sum is finite only if every position is (an overflow merely takes the checked path)
            if math.isfinite(sum(q)) and math.isfinite(norm) and abs(norm - 1.0) < 0.1:
                # in description order already: a read-only view of the message's bytes (never written)
                self.q = np.array(q) if reorder is not None else np.frombuffer(data, dtype=np.float64)
                self.tilt = roll_pitch(w / norm, x / norm, y / norm, z / norm)
                self.state_ns = now
                header = msg.header
                self.state_ref = (header.stamp_ns, header.seq)
                return True
        return self._read_state_checked(msg, now)

    def _read_state_checked(self, msg: RobotState, now: int) -> bool:
        """``_read_state`` one check at a time: the reference, with the logging; learns valid name orders."""
        names = list(msg.joints.name)
        try:
            pos = np.asarray(to_numpy(msg.joints.position), dtype=np.float64).reshape(-1)
        except (ArrayError, ValueError) as exc:
            return self._bad_state("malformed", f"joint positions: {exc}")
        idx = self._joint_index(tuple(names))
        if idx is None or pos.size != len(names):
            return self._bad_state("joints", f"joints {few(names)} with {pos.size} positions; expected {self.names}")
        if not np.isfinite(pos).all():
            return self._bad_state("non-finite", "non-finite joint position")
        o = msg.imu.orientation
        quat = (o.w, o.x, o.y, o.z)
        norm = math.sqrt(sum(c * c for c in quat))
        if not (math.isfinite(norm) and abs(norm - 1.0) < 0.1):
            return self._bad_state("orientation", f"IMU orientation {list(quat)} is not a unit quaternion")
        quat = np.array(quat)
        q = np.empty(self.n)
        q[idx] = pos
        self.q = q
        self.tilt = roll_pitch(*(quat / norm))
        self.state_ns = now
        self.state_ref = (msg.header.stamp_ns, msg.header.seq)
        if self._state_wire.can_learn(names):
            gather = np.empty(self.n, dtype=np.intp)
            gather[idx] = np.arange(self.n)
            identity = bool((gather == np.arange(self.n)).all())  # description order: nothing to reorder
            self._state_wire.learn(names, None if identity else tuple_getter(gather.tolist()))
        return True

    def _centre_cells(self, shape: tuple[int, ...], base_x: float, base_y: float) -> np.ndarray:
        """Flat indices of the scan cells within one grid step of the base, which sits at column
        ``base_x`` and row ``base_y`` (fractional; the grid's middle unless it is a look-ahead grid),
        cached per grid."""
        key = (shape, base_x, base_y)
        idx = self._centre_cache.get(key)
        if idx is None:
            if len(self._centre_cache) >= 24:  # a publisher that changes its grid every message
                self._centre_cache.clear()
            n_y, n_x = shape
            near_x = np.flatnonzero(np.abs(np.arange(n_x) - base_x) <= 1.0)
            near_y = np.flatnonzero(np.abs(np.arange(n_y) - base_y) <= 1.0)
            idx = self._centre_cache[key] = (near_y[:, None] * n_x + near_x[None, :]).reshape(-1)
        return idx

    def _check_height(self, msg: RobotState, now: int) -> None:
        """Latch a base height trip when the base stays too low in ACTIVE (see the class doc)."""
        if self.scan_height is not None and now - self.scan_ns <= self._state_timeout_ns:
            height, where = self.scan_height, "the ground under it (height scan)"
        elif msg.has_base:
            height, where = msg.base.position.z, "z = 0 (base pose, no height scan)"
        else:
            self.base_height = self.low_since_ns = None
            return
        self.base_height = height
        if self.mode != ACTIVE or self.height_reason or not height < self.min_height:
            self.low_since_ns = None
            return
        if self.low_since_ns is None:
            self.low_since_ns = now
        if now - self.low_since_ns >= self.min_base_height_s * 1e9:
            self.height_reason = (
                f"fall: base {height:.2f} m above {where} for {(now - self.low_since_ns) * 1e-9:.2f} s "
                f"(minimum {self.min_height} m)"
            )

    def _bad_state(self, kind: str, text: str) -> bool:
        self.bad_states += 1
        self._count_and_log(logging.ERROR, f"ignored robot state: {kind}", text)
        return False

    def _count_and_log(self, level: int, kind: str, text: str) -> None:
        """Count a problem; log it at most once per ``log_interval_s`` of graph time per kind."""
        self.problems[kind] = self.problems.get(kind, 0) + 1
        self.log_throttled(self.log_interval_s, level, "%s: %s", kind, text, key=kind)


def _median(values: np.ndarray) -> float | None:
    """The median of the finite values, None without one (np.median costs ~10x more on a handful)."""
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    n = values.size
    if n == 0:
        return None
    values = np.sort(values).tolist()  # Python floats: float64 arithmetic whatever the scan's dtype
    return values[(n - 1) // 2] / 2 + values[n // 2] / 2  # halves first: no overflow near 1e308


__all__ = ["Safety", "Target"]
