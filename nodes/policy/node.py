"""The policy node: robot state in, joint position targets out, through a bundle's contract."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.checks import ParamProblem, RobotUse
from krabgraph.msgs import (
    ArrayStamped,
    CommandSource,
    HeightScan,
    JointCommand,
    RobotState,
    VelocityCommand,
    set_array,
)
from krabgraph.nodes.policy.backends import load_backend
from krabgraph.nodes.policy.contract import ActionError, ContractError, load_contract
from krabgraph.nodes.policy.observations import MissingInputError, ObservationBuilder, ObservationError

RATE_CHECK_TICKS = 10  # state intervals averaged before comparing the state rate with control_dt
RATE_TOLERANCE = 0.2  # relative deviation of the state period from control_dt that is reported


class PolicyNode(Node):
    """Runs a learned locomotion policy on each robot state and publishes joint position targets.

    Every ``state`` builds the observation from the bundle's contract (joints mapped by name; the
    latest ``command`` and ``height_scan``, zero command before the first), runs the network and
    publishes ``joint_command``: position targets (rad) with the contract's kp (N·m/rad) and kd
    (N·m·s/rad), joint names in the policy's order, bound to the state it answers (its ``robot_id``,
    ``header.seq`` and ``header.stamp_ns``: the safety node forwards nothing else). The
    observation vector and its labels go to ``observation`` for debugging (built only while something
    reads it: a node of the graph, a recorder, a tap listener). The policy runs once per
    state: publish states at the contract's ``control_dt`` (a mismatch is logged once). If an input
    the contract needs is missing or the inputs are invalid, nothing is published for that state.
    A velocity command with a non-finite value is rejected on arrival and the last valid one kept.
    Every problem is counted in ``problems`` by kind (bad states and commands also in ``rejected``)
    and logged once per kind, with its first message.

    State watchdog: once states have arrived, none for ``state_timeout_s`` of graph time (a dead HAL
    or link) is warned once; nothing is published meanwhile (the policy only answers states). When
    states resume that is logged, and the observation history, the last action and the network's
    memory restart from zero, as at activation, rather than continuing from the stale ones. While
    states arrive the policy answers one robot (``robot_id``) in order: a state of another robot, or
    with a ``header.seq`` not above the last one (a duplicate, a replay), is ignored and counted; after
    a gap of ``state_timeout_s`` the next state's robot is answered (a restarted HAL).
    """

    kind = "policy"
    bundle = Param(str, "go2_walk", "policy bundle name or path to a contract.yaml")
    device = Param(str, "cpu", "inference device: cpu or cuda (rsl_rl checkpoints run on the CPU)")
    threads = Param(int, 1, "inference threads (1: lowest latency for small MLPs)", ge=1)
    state_timeout_s = Param(
        float, 0.2, "warn when no robot state arrived for this long (graph time); history restarts after", unit="s",
        gt=0,
    )  # fmt: skip

    state = Input(RobotState, doc="joint states (by name), IMU and optional ground-truth base")
    command = Input(VelocityCommand, required=False, doc="base velocity command; zero until one arrives")
    height_scan = Input(HeightScan, required=False, doc="needed only by contracts with a height_scan term")

    joint_command = Output(JointCommand, doc="position targets, kp, kd by joint name; source POLICY")
    observation = Output(ArrayStamped, doc="observation vector (float32) with per-element labels")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        """The bundle exists and its contract loads; a missing weights file is a warning (launch fails)."""
        try:
            contract = load_contract(params["bundle"])
        except ContractError as exc:
            return [ParamProblem("bundle", f"policy bundle: {exc}")]
        try:
            contract.weights_file()
        except ContractError as exc:
            return [
                ParamProblem("bundle", f"policy bundle {contract.name!r}: {exc}; launch fails until it is there", True)
            ]
        return []

    @classmethod
    def robot_use(cls, params: dict[str, Any]) -> RobotUse | None:
        """The bundle's robot, joints and control period (None if the contract does not load)."""
        try:
            c = load_contract(params["bundle"])
        except ContractError:
            return None
        return RobotUse("bundle", c.robot, c.joints, control_dt=c.control_dt, what=f"policy bundle {c.name!r}")

    def on_configure(self) -> None:
        self.contract = load_contract(self.bundle)
        self.backend = load_backend(self.contract, device=self.device, threads=self.threads)
        self.builder = ObservationBuilder(self.contract)
        n = self.contract.action_dim
        # Constant fields are encoded once; each tick copies the template and fills in the stamps and
        # the data bytes (dtype and shape are already there: FLOAT64 [n] targets, FLOAT32 [dim] obs).
        self._command_template = JointCommand(name=self.contract.joints, source=CommandSource.POLICY)
        set_array(self._command_template.position, np.zeros(n))
        set_array(self._command_template.velocity, np.zeros(n))
        set_array(self._command_template.effort, np.zeros(n))
        set_array(self._command_template.kp, self.contract.kp)
        set_array(self._command_template.kd, self.contract.kd)
        self._observation_template = ArrayStamped(labels=self.builder.labels)
        set_array(self._observation_template.data, np.zeros(self.contract.obs_dim, dtype=np.float32))
        # The hot path's arrays, allocated once: the observation is built straight into the network's
        # input, the action map writes the action (next tick's last_action: two buffers in turn, so a
        # rejected output leaves the last one intact) and the targets.
        self._obs, self._run = self.backend.bind()
        self._observe_into = self.builder.observe_into  # bound once: no two attribute lookups per tick
        self._process_into = self.contract.actions.process_into
        self._next_action = np.zeros(n)
        self._targets = np.zeros(n)
        self._state_timeout_ns = self.state_timeout_s * 1e9
        privileged = self.contract.privileged_terms
        if privileged:
            self.log.warning(
                "policy %s reads privileged (simulator ground-truth) terms %s; on a real robot they need an estimator",
                self.contract.name,
                ", ".join(privileged),
            )
        self.log.info(
            "policy %s: %s, %d observations, %d joints, control_dt %.4f s",
            self.contract.name,
            self.contract.format,
            self.contract.obs_dim,
            n,
            self.contract.control_dt,
        )

    def on_activate(self) -> None:
        self.builder.reset()
        self.backend.reset()
        self.last_action = np.zeros(self.contract.action_dim)
        self._command: VelocityCommand | None = None  # the last valid velocity command
        self.rejected = 0  # states that gave no command (invalid inputs) and invalid velocity commands
        self.problems: dict[str, int] = {}  # count per kind of problem
        self._first_stamp_ns: int | None = None
        self._stamps_seen = 0
        self._state_ns: int | None = None  # graph time of the latest state of the robot (None: none yet)
        self._robot_id = ""  # the robot answered: robot_id of those states
        self._seq = 0  # header.seq of the latest of them
        self._states_lost = False  # the watchdog warned; cleared when states resume
        self.create_timer(self.state_timeout_s / 2, self._watch_states)

    def on_state(self, msg: RobotState) -> None:
        header = msg.header
        now, robot_id, seq = self.now_ns(), msg.robot_id, header.seq
        last = self._state_ns
        if last is not None and now - last <= self._state_timeout_ns:  # the robot is publishing
            if robot_id != self._robot_id:
                self.rejected += 1
                text = f"ignored a state of robot {robot_id[:64]!r} while {self._robot_id!r} publishes; no command"
                self._report("state of another robot", text)
                return
            if 0 < seq <= self._seq:
                self.rejected += 1
                self._report("state repeated or out of order", f"ignored state seq {seq} after {self._seq}; no command")
                return
        elif last is not None:  # after a gap: the same robot back, or another one (a restarted HAL)
            self._states_resumed(now, robot_id)
        self._state_ns, self._robot_id, self._seq = now, robot_id, seq
        obs, action, targets = self._obs, self._next_action, self._targets
        try:
            self._observe_into(obs, msg, self._command, self.height_scan.latest, self.last_action)
            self._process_into(self._run(), action, targets)
        except MissingInputError as exc:
            self._report(f"waiting for {exc.input}", f"waiting for {exc.input}: {exc}; publishing no command")
            return
        except (ObservationError, ActionError) as exc:
            self.rejected += 1
            where = str(exc).split(" ", 1)[0].rstrip(":;,")  # the field or term at fault, e.g. RobotState.joints
            self._report(f"{type(exc).__name__} {where}", f"{exc}; publishing no command")
            return
        stamp = header.stamp_ns
        if self._stamps_seen <= RATE_CHECK_TICKS:
            self._check_rate(stamp)  # of the states that are valid: not of rejected ones
        self._next_action, self.last_action = self.last_action, action
        self._send(stamp, seq, robot_id, obs, targets)

    def on_command(self, msg: VelocityCommand) -> None:
        if math.isfinite(msg.vx) and math.isfinite(msg.vy) and math.isfinite(msg.yaw_rate):
            self._command = msg
            return
        self.rejected += 1
        bad = f"vx {msg.vx}, vy {msg.vy}, yaw_rate {msg.yaw_rate}"
        self._report("command non-finite", f"rejected velocity command ({bad}); keeping the last valid one")

    def _publish(self, state: RobotState, obs: np.ndarray, targets: np.ndarray) -> None:
        """The command answering ``state`` and the observation (``_send`` with the state's fields)."""
        self._send(state.header.stamp_ns, state.header.seq, state.robot_id, obs, targets)

    def _send(self, stamp: int, seq: int, robot_id: str, obs: np.ndarray, targets: np.ndarray) -> None:
        """The command answering the state ``stamp``, ``seq`` of ``robot_id``, and the observation.
        ``targets``: FLOAT64 ``[n]``, ``obs``: FLOAT32 ``[dim]`` (the templates' dtypes and shapes)."""
        cmd = JointCommand()
        cmd.CopyFrom(self._command_template)
        cmd.observation_stamp_ns = stamp
        cmd.observation_seq = seq
        cmd.robot_id = robot_id
        cmd.position.data = targets.tobytes()
        self.joint_command.publish(cmd)
        if not self.observation.wanted:  # a debug output: built only while something reads it
            return
        debug = ArrayStamped()
        debug.CopyFrom(self._observation_template)
        debug.header.stamp_ns = stamp
        debug.data.data = obs.tobytes()
        self.observation.publish(debug)

    def _watch_states(self) -> None:
        """Warn once when no state arrived for ``state_timeout_s`` since the last one."""
        if self._state_ns is None or self._states_lost:
            return
        gap = self.now_ns() - self._state_ns
        if gap > self.state_timeout_s * 1e9:
            self._states_lost = True
            self.log.warning(
                "no robot state for %.2f s (state_timeout_s %g): is the HAL running? publishing nothing until "
                "states resume",
                gap * 1e-9,
                self.state_timeout_s,
            )

    def _states_resumed(self, now: int, robot_id: str) -> None:
        """States are back after ``state_timeout_s`` without: say so and restart from zero history."""
        self._states_lost = False
        other = f" from robot {robot_id[:64]!r} (was {self._robot_id!r})" if robot_id != self._robot_id else ""
        self.log.info(
            "robot states resumed%s after %.2f s without; observation history and last action restart from zero",
            other,
            (now - self._state_ns) * 1e-9,
        )
        self.builder.reset()
        self.backend.reset()
        self.last_action = np.zeros(self.contract.action_dim)

    def _report(self, kind: str, message: str) -> None:
        """Count a problem; log the first of each kind (the state arrives at the control rate)."""
        self.problems[kind] = self.problems.get(kind, 0) + 1
        self.log_once(logging.ERROR, "%s (further ones are counted in problems[%r])", message, kind, key=kind)

    def _check_rate(self, stamp_ns: int) -> None:
        """Warn once if states arrive at a period other than the policy's control_dt."""
        if self._stamps_seen > RATE_CHECK_TICKS or stamp_ns <= 0:
            return
        if self._first_stamp_ns is None:
            self._first_stamp_ns = stamp_ns
        self._stamps_seen += 1
        if self._stamps_seen <= RATE_CHECK_TICKS:
            return
        period = (stamp_ns - self._first_stamp_ns) * 1e-9 / RATE_CHECK_TICKS
        dt = self.contract.control_dt
        if abs(period - dt) > RATE_TOLERANCE * dt:
            self.log.warning(
                "states arrive every %.4f s but policy %s was trained at control_dt %.4f s; "
                "publish RobotState at the policy rate",
                period,
                self.contract.name,
                dt,
            )
