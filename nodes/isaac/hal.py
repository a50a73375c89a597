"""Isaac Sim hardware abstraction layer: the simulated robot as a krabgraph node.

The node holds no Isaac API call: it talks to an ``IsaacAdapter`` (``make_adapter``), so tests can
run it on a stand-in environment. Lockstep protocol in a ``clock: sim`` graph:

1. ``on_activate`` publishes the state after the task's reset (graph time t0) and starts a timer
   of one control period (the task's ``sim.dt × decimation``, 20 ms for the velocity tasks).
2. Everything published inside a callback is delivered before the executor fires the next timer
   (``Worker.run_lockstep``: pending messages first, then time jumps to the next deadline), so
   state k → policy → safety → ``command`` k reaches this node before tick k+1.
3. Tick k+1 applies the latest valid command (every joint, by name) for exactly one control
   step (``decimation`` physics steps), then publishes ``clock``, ``height_scan``,
   ``lab_observation`` and, last, ``state`` k+1: a node woken by the state already has the scan of
   the same instant. Without a new command the previous targets are held (counted in ``held``);
   until the first command they are the task's default pose.

Simulated time therefore equals graph time minus t0. With a wall clock the node still advances one
control step per tick, so the simulation runs at most in real time (``Clock.real_time_factor``).
"""

from __future__ import annotations

import logging

import numpy as np

from krabgraph.launch import Input, Output, Param
from krabgraph.msgs import ArrayStamped, HeightScan, VelocityCommand, set_array
from krabgraph.nodes.hal import Hal, JointTargets, RobotSnapshot
from krabgraph.nodes.isaac.adapter import IsaacAdapter, IsaacTaskError
from krabgraph.nodes.robots import RobotDescription, load_robot

DEFAULT_TASK = "Isaac-Velocity-Rough-Anymal-D-Play-v0"


class IsaacHal(Hal):
    """Simulated robot in Isaac Sim through an Isaac Lab task: joint targets in, robot state out, lockstep.

    Every control period of the task (``sim.dt × decimation``) the latest ``command`` (JointCommand
    with the HAL contract's meaning, ``krabgraph.nodes.hal``: every joint once, by name, any order;
    position targets in rad, velocity in rad/s, effort in N·m) is applied for one control step,
    then ``state`` (RobotState: joints in rad, rad/s, N·m; IMU; foot contacts in N; ground-truth
    base), ``clock`` (Clock, simulated time),
    ``height_scan`` (HeightScan, m, from the task's ray caster) and ``lab_observation``
    (ArrayStamped: Isaac Lab's own policy observation, for comparison with the policy node's) are
    published; see the module docstring for the lockstep protocol. kp/kd of a command are ignored
    (``honours_gains = False``, reported by ``krabgraph check``): the task's actuator models, which
    the policy was trained with, stay in charge. Invalid commands
    are rejected (logged once per reason) and the last valid targets stay. ``velocity_command``
    is mirrored into Isaac Lab's command buffer for ``lab_observation`` only. Without Isaac Sim,
    configuring fails with one error saying what is needed.
    """

    honours_gains = False
    gains_note = "the task's actuator models stay in charge"
    clock_source = "sim"

    task = Param(str, DEFAULT_TASK, "Isaac Lab task id (gymnasium registry)")
    task_package = Param(str, "", "module imported before the task is looked up, e.g. an extension adding tasks")
    headless = Param(bool, True, "run Isaac Sim without its GUI")
    device = Param(str, "cuda:0", "simulation device")
    robot = Param(str, "anymal_d", "robot description (name or path); its joints and feet must exist in the task")
    seed = Param(int, 0, "seed of the task's reset")
    scan_offset = Param(float, 0.5, "subtracted from height-scan values (Isaac Lab's height_scan default)", unit="m")
    lab_observation_group = Param(str, "policy", "Isaac Lab observation group published on lab_observation; '' = none")

    velocity_command = Input(
        VelocityCommand,
        required=False,
        triggers=False,
        doc="mirrored into Isaac Lab's command buffer (debug) and shown in the status line",
    )
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

    def open(self) -> None:
        self.description = load_robot(self.robot)
        self.adapter = self.make_adapter(self.description)
        self._check_robot()
        self._ids = self.adapter.indices(self.description.joint_names)  # description order -> task order
        self.applied = 0  # control steps that applied a new command
        self.held = 0  # control steps that held the previous targets

    def control_period(self) -> float:
        return self.adapter.step_dt

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

    def start(self) -> None:
        a = self.adapter
        self._steps0 = a.physics_steps
        self.targets_task = a.default_joint_pos()  # task order
        self.velocity = np.zeros(len(a.joint_names))
        self.effort = np.zeros(len(a.joint_names))
        a.set_joint_targets(a.joint_names, self.targets_task, self.velocity, self.effort)
        self._pending = False

    # -- backend ----------------------------------------------------------------------------------
    def write(self, targets: JointTargets) -> None:
        ids = self._ids
        self.targets_task[ids] = targets.position
        self.velocity[ids] = targets.velocity
        self.effort[ids] = targets.effort
        self._pending = True

    def on_velocity_command(self, msg: VelocityCommand) -> None:
        if not self.adapter.mirror_velocity_command(msg.vx, msg.vy, msg.yaw_rate):
            note = "the task has no velocity command term; lab_observation keeps its own command"
            self.log_once(logging.WARNING, note)

    def advance(self, until_ns: int) -> None:
        """One control step per tick (``decimation`` physics steps) with the latest valid targets."""
        a = self.adapter
        if self._pending:
            a.set_joint_targets(a.joint_names, self.targets_task, self.velocity, self.effort)
            if self.lab_observation_group and not a.mirror_action(self.targets_task):
                note = "the task's action terms are not joint-position actions; last_action not mirrored"
                self.log_once(logging.WARNING, note)
            self.applied += 1
            self._pending = False
        else:
            self.held += 1
        a.step()

    def read(self) -> RobotSnapshot:
        return self.adapter.read()

    def sim_time_ns(self) -> int:
        a = self.adapter
        return round((a.physics_steps - self._steps0) * a.physics_dt * 1e9)

    def publish_sensors(self, snap: RobotSnapshot, stamp_ns: int) -> None:
        if snap.scan is not None:
            self.height_scan.publish(self._scan_message(snap.scan, stamp_ns))
        if self.lab_observation_group:
            observed = self.adapter.lab_observation()
            if observed is not None:
                debug = ArrayStamped(labels=observed[1])
                debug.header.stamp_ns = stamp_ns
                set_array(debug.data, observed[0])
                self.lab_observation.publish(debug)

    def status_text(self) -> str:
        return f"task {self.task}: applied={self.applied} held={self.held}"

    def _scan_message(self, heights: np.ndarray, stamp_ns: int) -> HeightScan:
        grid = self.adapter.scan_grid
        msg = HeightScan(resolution=grid.resolution, size_x=grid.size[0], size_y=grid.size[1])
        msg.header.stamp_ns = stamp_ns
        msg.header.frame_id = self.description.base_body
        set_array(msg.heights, heights, np.float32)
        msg.offset = grid.offset
        msg.max_distance = grid.max_distance
        return msg

    def on_shutdown(self) -> None:
        adapter = getattr(self, "adapter", None)
        if adapter is not None:
            adapter.close()
            self.adapter = None


__all__ = ["IsaacHal"]
