"""Isaac Sim hardware abstraction layer: the simulated robot as a krabgraph node.

The node holds no Isaac API call: it talks to an ``IsaacAdapter`` (``make_adapter``), so tests can
run it on a stand-in environment. Lockstep protocol in a ``clock: sim`` graph:

1. ``on_activate`` publishes the state after the task's reset (graph time t0) and starts a timer
   of one control period (the task's ``sim.dt × decimation``, 20 ms for the velocity tasks).
2. Everything published inside a callback is delivered before the executor fires the next timer
   (``Worker.run_lockstep``: pending messages first, then time jumps to the next deadline), so
   state k → policy → safety → ``command`` k reaches this node before tick k+1.
3. Tick k+1 applies the latest valid command (targets by joint name) for exactly one control
   step (``decimation`` physics steps), then publishes ``clock``, ``height_scan``,
   ``lab_observation`` and, last, ``state`` k+1: a node woken by the state already has the scan of
   the same instant. Without a new command the previous targets are held (counted in ``held``);
   until the first command they are the task's default pose.

Simulated time therefore equals graph time minus t0. With a wall clock the node still advances one
control step per tick, so the simulation runs at most in real time (``Clock.real_time_factor``).
"""

from __future__ import annotations

import time

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.msgs import (
    ArrayStamped,
    Clock,
    HeightScan,
    JointCommand,
    RobotState,
    VelocityCommand,
    set_array,
    to_numpy,
)
from krabgraph.nodes.hal_io import CommandError, fill_robot_state, parse_joint_command
from krabgraph.nodes.isaac.adapter import IsaacAdapter, IsaacTaskError
from krabgraph.nodes.robots import RobotDescription, load_robot

DEFAULT_TASK = "Isaac-Velocity-Rough-Anymal-D-Play-v0"


class IsaacHal(Node):
    """Simulated robot in Isaac Sim through an Isaac Lab task: joint targets in, robot state out, lockstep.

    Every control period of the task (``sim.dt × decimation``) the latest ``command`` (JointCommand,
    keyed by joint name, any order or subset; position targets in rad, velocity in rad/s, effort in
    N·m) is applied for one control step, then ``state`` (RobotState: joints in rad, rad/s, N·m;
    IMU; foot contacts in N; ground-truth base), ``clock`` (Clock, simulated time),
    ``height_scan`` (HeightScan, m, from the task's ray caster) and ``lab_observation``
    (ArrayStamped: Isaac Lab's own policy observation, for comparison with the policy node's) are
    published; see the module docstring for the lockstep protocol. kp/kd of a command are ignored:
    the task's actuator models, which the policy was trained with, stay in charge. Invalid commands
    are rejected (logged once per reason) and the last valid targets stay. ``velocity_command``
    is mirrored into Isaac Lab's command buffer for ``lab_observation`` only. Without Isaac Sim,
    configuring fails with one error saying what is needed.
    """

    kind = "hal"
    task = Param(str, DEFAULT_TASK, "Isaac Lab task id (gymnasium registry)")
    task_package = Param(str, "", "module imported before the task is looked up, e.g. an extension adding tasks")
    headless = Param(bool, True, "run Isaac Sim without its GUI")
    device = Param(str, "cuda:0", "simulation device")
    robot = Param(str, "anymal_d", "robot description (name or path); its joints and feet must exist in the task")
    seed = Param(int, 0, "seed of the task's reset")
    scan_offset = Param(float, 0.5, "subtracted from height-scan values (Isaac Lab's height_scan default)", unit="m")
    lab_observation_group = Param(str, "policy", "Isaac Lab observation group published on lab_observation; '' = none")

    command = Input(JointCommand, queue=0, triggers=False, doc="joint targets by name; applied for one control step")
    velocity_command = Input(
        VelocityCommand, required=False, triggers=False, doc="mirrored into Isaac Lab's command buffer (debug)"
    )
    state = Output(RobotState)
    clock = Output(Clock)
    height_scan = Output(HeightScan)
    lab_observation = Output(ArrayStamped, doc="Isaac Lab's observation of lab_observation_group (debug)")

    def make_adapter(self, description: RobotDescription) -> IsaacAdapter:
        """Start Isaac Sim and the task (override to inject another environment)."""
        return IsaacAdapter.launch(
            self.task,
            headless=self.headless,
            device=self.device,
            task_package=self.task_package,
            seed=self.seed,
            feet=description.foot_geoms,
            scan_offset=self.scan_offset,
            observation_group=self.lab_observation_group,
        )

    def on_configure(self) -> None:
        self.description = load_robot(self.robot)
        self.adapter = self.make_adapter(self.description)
        self._check_robot()
        self._known = frozenset(self.adapter.joint_names)
        self.applied = 0  # control steps that applied a new command
        self.held = 0  # control steps that held the previous targets
        self.rejected = 0
        self._reported: set[str] = set()

    def _check_robot(self) -> None:
        d, a = self.description, self.adapter
        missing = sorted(set(d.joint_names) - set(a.joint_names))
        extra = sorted(set(a.joint_names) - set(d.joint_names))
        if missing or extra:
            raise IsaacTaskError(
                f"robot description {d.name!r} does not match task {self.task!r}: "
                f"missing in the task: {missing or 'none'}; not in the description: {extra or 'none'}"
            )
        if abs(a.step_dt - d.control_dt) > 1e-9:
            self.log.warning(
                "task control period %.4f s differs from robot %s control_dt %.4f s; the task's is used",
                a.step_dt,
                d.name,
                d.control_dt,
            )
        task_default = a.default_joint_pos()
        mine = d.default_pos[d.indices(a.joint_names)]
        if not np.allclose(task_default, mine, atol=1e-6):
            self.log.warning("task default pose differs from robot %s default_pos; the task's is held", d.name)

    def on_activate(self) -> None:
        a = self.adapter
        self._t0_ns = self.now_ns()
        self._steps0 = a.physics_steps
        self.targets = a.default_joint_pos()
        self.velocity = np.zeros(len(a.joint_names))
        self.effort = np.zeros(len(a.joint_names))
        a.set_joint_targets(a.joint_names, self.targets, self.velocity, self.effort)
        self._pending = False
        self._rtf_mark = (time.monotonic(), a.physics_steps)
        self._rtf = 0.0
        self._publish()
        self.create_timer(a.step_dt, self.tick)

    def on_command(self, msg: JointCommand) -> None:
        try:
            cmd = parse_joint_command(msg, self._known)
        except CommandError as exc:
            self.rejected += 1
            self._report(f"rejected joint command ({exc}); keeping the last valid targets")
            return
        ids = self.adapter.indices(cmd.names)
        self.targets[ids] = cmd.position
        self.velocity[ids] = 0.0 if cmd.velocity is None else cmd.velocity
        self.effort[ids] = 0.0 if cmd.effort is None else cmd.effort
        self._pending = True
        if to_numpy(msg.kp).size or to_numpy(msg.kd).size:
            self._report("JointCommand kp/kd are ignored: the task's actuator models stay in charge", error=False)

    def on_velocity_command(self, msg: VelocityCommand) -> None:
        if not self.adapter.mirror_velocity_command(msg.vx, msg.vy, msg.yaw_rate):
            self._report("the task has no velocity command term; lab_observation keeps its own command", error=False)

    def tick(self) -> None:
        a = self.adapter
        if self._pending:
            a.set_joint_targets(a.joint_names, self.targets, self.velocity, self.effort)
            if self.lab_observation_group and not a.mirror_action(self.targets):
                self._report("the task's action terms are not joint-position actions; last_action not mirrored", False)
            self.applied += 1
            self._pending = False
        else:
            self.held += 1
        a.step()
        self._publish()

    def _publish(self) -> None:
        a = self.adapter
        now = self.now_ns()
        snap = a.read()
        steps = a.physics_steps - self._steps0
        wall = time.monotonic()
        wall0, steps0 = self._rtf_mark
        if wall - wall0 >= 1.0:
            self._rtf = (a.physics_steps - steps0) * a.physics_dt / (wall - wall0)
            self._rtf_mark = (wall, a.physics_steps)
        clock = Clock(sim_time_ns=round(steps * a.physics_dt * 1e9), real_time_factor=self._rtf)
        clock.header.stamp_ns = now
        self.clock.publish(clock)
        if snap.scan is not None:
            self.height_scan.publish(self._scan_message(snap.scan, now))
        if self.lab_observation_group:
            observed = a.lab_observation()
            if observed is not None:
                debug = ArrayStamped(labels=observed[1])
                debug.header.stamp_ns = now
                set_array(debug.data, observed[0])
                self.lab_observation.publish(debug)
        self.state.publish(fill_robot_state(RobotState(), snap, stamp_ns=now))

    def _scan_message(self, heights: np.ndarray, stamp_ns: int) -> HeightScan:
        grid = self.adapter.scan_grid
        msg = HeightScan(resolution=grid.resolution, size_x=grid.size[0], size_y=grid.size[1])
        msg.header.stamp_ns = stamp_ns
        msg.header.frame_id = self.description.base_body
        set_array(msg.heights, heights, np.float32)
        msg.offset = grid.offset
        msg.max_distance = grid.max_distance
        return msg

    def _report(self, message: str, error: bool = True) -> None:
        if message not in self._reported:
            self._reported.add(message)
            (self.log.error if error else self.log.warning)(message)

    def on_shutdown(self) -> None:
        adapter = getattr(self, "adapter", None)
        if adapter is not None:
            adapter.close()
            self.adapter = None


__all__ = ["IsaacHal"]
