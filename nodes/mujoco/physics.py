"""MuJoCo simulation of a legged robot driven by per-joint PD targets, keyed by joint name.

``MujocoRobotSim`` owns ``MjModel``/``MjData``. Each physics step applies, per joint,

    tau = kp * (q_des - q) + kd * (qd_des - qd) + tau_ff

computed from the current state (PD at physics rate, like the motor drivers of a real robot),
then limited by the motor's torque-speed line: the torque that would accelerate a joint further
shrinks linearly from the effort limit at rest to zero at the velocity limit, while braking
torque is always available up to the effort limit (Isaac Lab's DC-motor model with saturation
effort = effort limit):

    tau_max = clip(E * (1 - qd / V), 0, E),   tau_min = clip(E * (-1 - qd / V), -E, 0)

``torque_speed_limit=False`` clips to ±E only. A command (``set_targets``: targets the HAL
contract's parser validated; ``set_command``: arrays, validated by that same parser) takes effect
``actuator_delay_steps`` physics steps after it is set. ``push`` applies an external force to the base body (MuJoCo's
``xfrc_applied``, at its center of mass, world frame) for a number of physics steps: a scripted
perturbation for acceptance tests. Units: SI, angles in rad, quaternions wxyz.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from krabgraph.nodes.hal_io import CommandError, CommandParser, JointTargets, RobotSnapshot, fill_robot_state
from krabgraph.nodes.mujoco.scene import Scene, build_scene
from krabgraph.nodes.mujoco.terrain import Terrain
from krabgraph.nodes.robots import RobotDescription, load_robot
from krabgraph.nodes.robots.motor import limit_torque
from krabgraph.nodes.rotations import quat_from_yaw

SPAWN_CLEARANCE = 0.002  # m between the lowest foot and the ground at reset


SimState = RobotSnapshot  # what MujocoRobotSim.read_state returns (kept as a short name)


@dataclass
class _Command:
    q: np.ndarray
    qd: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    tau: np.ndarray


class MujocoRobotSim:
    """A robot on a terrain in MuJoCo, stepped at the robot description's ``sim_dt``.

    Until the first ``set_command`` after ``reset``, the sim holds the default pose with the
    description's gains, so the robot stands.
    """

    def __init__(
        self,
        robot: RobotDescription | str = "go2",
        terrain: Terrain | None = None,
        *,
        actuator_delay_steps: int = 0,
        torque_speed_limit: bool = True,
        contact_threshold: float = 1.0,
        reset_joint_noise: float = 0.0,
        scene: Scene | None = None,
    ):
        if actuator_delay_steps < 0:
            raise ValueError(f"actuator_delay_steps must be >= 0, got {actuator_delay_steps}")
        self.robot = load_robot(robot) if isinstance(robot, str) else robot
        self.scene = scene or build_scene(self.robot, terrain)
        self.model = self.scene.model
        self.parser = CommandParser.for_robot(self.robot)
        self.data = mujoco.MjData(self.model)
        self.actuator_delay_steps = actuator_delay_steps
        self.torque_speed_limit = torque_speed_limit
        self.contact_threshold = contact_threshold
        self.reset_joint_noise = reset_joint_noise
        self.step_count = 0
        self._pending: deque[tuple[int, _Command]] = deque()
        self._cmd = self._hold_default()
        self._tau = np.zeros(self.robot.num_joints)
        self._force6 = np.zeros(6)
        self._push: tuple[int, int, np.ndarray] | None = None  # (first step, end step, force N world)
        self.reset()

    # -- time ---------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated time in seconds since the last reset."""
        return float(self.data.time)

    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep)

    # -- reset --------------------------------------------------------------------------------
    def reset(self, pose: Sequence[float] = (0.0, 0.0, 0.0), seed: int | None = None) -> None:
        """Place the base at ``pose`` = (x, y, yaw) with the default joint pose (plus uniform noise
        of ±``reset_joint_noise`` rad drawn from ``seed``), feet just on the ground, at rest."""
        x, y, yaw = (float(v) for v in pose)
        s, r = self.scene, self.robot
        mujoco.mj_resetData(self.model, self.data)
        q = r.default_pos.copy()
        if self.reset_joint_noise > 0:
            q += np.random.default_rng(seed).uniform(-self.reset_joint_noise, self.reset_joint_noise, q.shape)
            q = np.clip(q, r.pos_lower, r.pos_upper)
        self.data.qpos[s.qpos_adr] = q
        b = s.base_qpos_adr
        self.data.qpos[b : b + 7] = [x, y, 1.0, *quat_from_yaw(yaw)]
        mujoco.mj_kinematics(self.model, self.data)
        feet = self.data.geom_xpos[s.foot_geom]
        ground = np.asarray(s.terrain.height_at(feet[:, 0], feet[:, 1]))
        lift = np.max(ground - (feet[:, 2] - s.foot_radius))
        self.data.qpos[b + 2] += lift + SPAWN_CLEARANCE
        mujoco.mj_forward(self.model, self.data)
        self.step_count = 0
        self._pending.clear()
        self._cmd = self._hold_default()
        self._tau[:] = 0.0
        self._push = None

    def _hold_default(self) -> _Command:
        r = self.robot
        n = r.num_joints
        return _Command(r.default_pos.copy(), np.zeros(n), r.kp.copy(), r.kd.copy(), np.zeros(n))

    # -- commands -----------------------------------------------------------------------------
    def set_command(
        self,
        names: Sequence[str],
        position: Sequence[float] | np.ndarray,
        velocity: Sequence[float] | np.ndarray | None = None,
        kp: Sequence[float] | np.ndarray | None = None,
        kd: Sequence[float] | np.ndarray | None = None,
        effort: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Set PD targets for every joint, named in any order (the HAL contract's one meaning).

        ``velocity`` and ``effort`` default to 0, ``kp``/``kd`` to the description's gains. Raises
        ``CommandError`` (and changes nothing) on unknown, missing or repeated names, wrong lengths,
        non-finite values or negative gains.
        """
        self.set_targets(self.parser.check(names, position, velocity, effort, kp, kd))

    def set_targets(self, targets: JointTargets) -> None:
        """Set validated PD targets (every joint, description order; see ``CommandParser``)."""
        t = targets
        cmd = _Command(t.position.copy(), t.velocity.copy(), t.kp.copy(), t.kd.copy(), t.effort.copy())
        if self.actuator_delay_steps == 0:
            self._cmd = cmd
        else:
            self._pending.append((self.step_count + self.actuator_delay_steps, cmd))

    def push(self, impulse: Sequence[float] | np.ndarray, duration_s: float = 0.1, at_s: float | None = None) -> None:
        """Push the base: a constant world-frame force ``impulse / duration`` (N·s / s) at its center of
        mass, from simulated time ``at_s`` (default: the next step) for ``duration_s`` rounded to whole
        physics steps (at least one; the force is scaled so the impulse is exact). Replaces a pending
        push; ``reset`` cancels it. Raises ``ValueError`` on a non-finite impulse or a duration <= 0."""
        j = np.asarray(impulse, dtype=np.float64).reshape(-1)
        if j.shape != (3,) or not np.isfinite(j).all():
            raise ValueError(f"push impulse must be 3 finite values [x, y, z] in N·s, got {list(j)}")
        if not (np.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"push duration must be finite and > 0 s, got {duration_s}")
        if at_s is not None and not np.isfinite(at_s):
            raise ValueError(f"push time must be finite, got {at_s}")
        dt, now = self.dt, self.step_count
        first = now if at_s is None else max(now, now + round((at_s - self.time) / dt))
        n = max(1, round(duration_s / dt))
        self._push = (first, first + n, j / (n * dt))

    # -- stepping -----------------------------------------------------------------------------
    def joint_torque(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Motor torque for joint state (q, qd) under the current command, after limits."""
        c, r = self._cmd, self.robot
        tau = c.kp * (c.q - q) + c.kd * (c.qd - qd) + c.tau
        effort = r.effort_limit
        # np.minimum/np.maximum rather than np.clip: ~5x cheaper on 12 elements, and this runs every
        # physics step.
        if not self.torque_speed_limit:
            return np.minimum(np.maximum(tau, -effort), effort)
        return limit_torque(tau, qd, effort, r.velocity_limit, r.saturation)

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps."""
        s, d = self.scene, self.data
        for _ in range(n):
            while self._pending and self._pending[0][0] <= self.step_count:
                self._cmd = self._pending.popleft()[1]
            self._tau = self.joint_torque(d.qpos[s.qpos_adr], d.qvel[s.dof_adr])
            d.ctrl[s.actuator_id] = self._tau
            if self._push is not None:
                self._apply_push()
            mujoco.mj_step(self.model, d)
            self.step_count += 1

    def _apply_push(self) -> None:
        """Set the base's external force for the coming step; drop the push once it is over."""
        first, end, force = self._push
        self.data.xfrc_applied[self.scene.base_body, :3] = force if first <= self.step_count < end else 0.0
        if self.step_count >= end:
            self._push = None

    # -- state --------------------------------------------------------------------------------
    def read_state(self) -> SimState:
        """Snapshot of joints, IMU, base and foot contacts. The gyro and accelerometer readings come
        from the sensor pass of the last physics step (one step, ``dt``, old); the rest is current."""
        s, d, r = self.scene, self.data, self.robot
        b, v = s.base_qpos_adr, s.base_dof_adr
        quat = d.qpos[b + 3 : b + 7].copy()
        quat /= np.linalg.norm(quat)
        lin_world = d.qvel[v : v + 3].copy()
        rot = d.xmat[s.base_body].reshape(3, 3)
        imu_quat = np.empty(4)
        mujoco.mju_mulQuat(imu_quat, quat, self.model.site_quat[s.imu_site])
        contact, force = self.foot_contacts()
        return SimState(
            time=float(d.time),
            joint_names=r.joint_names,
            q=d.qpos[s.qpos_adr].copy(),
            qd=d.qvel[s.dof_adr].copy(),
            tau=self._tau.copy(),
            imu_quat=imu_quat,
            imu_gyro=d.sensordata[s.gyro_adr : s.gyro_adr + 3].copy(),
            imu_accel=d.sensordata[s.accel_adr : s.accel_adr + 3].copy(),
            base_pos=d.qpos[b : b + 3].copy(),
            base_quat=quat,
            base_lin_vel=rot.T @ lin_world,
            base_ang_vel=d.qvel[v + 3 : v + 6].copy(),
            base_lin_vel_world=lin_world,
            foot_names=r.foot_geoms,
            foot_contact=contact,
            foot_force=force,
        )

    def foot_contacts(self) -> tuple[np.ndarray, np.ndarray]:
        """(in_contact [n] bool, force [n, 3] N world frame) of the ground on each foot."""
        s, d, m = self.scene, self.data, self.model
        feet = s.foot_geom
        force = np.zeros((len(feet), 3))
        for i in range(d.ncon):
            con = d.contact[i]
            g1, g2 = con.geom[0], con.geom[1]
            hit1, hit2 = np.flatnonzero(feet == g1), np.flatnonzero(feet == g2)
            if not (hit1.size or hit2.size) or con.efc_address < 0:
                continue
            mujoco.mj_contactForce(m, d, i, self._force6)
            # contact frame rows: normal (geom1 -> geom2), tangents; the force acts on geom2
            f_world = con.frame.reshape(3, 3).T @ self._force6[:3]
            if hit2.size:
                force[hit2[0]] += f_world
            if hit1.size:
                force[hit1[0]] -= f_world
        normal = np.einsum("ij,j->i", force, [0.0, 0.0, 1.0])
        return normal > self.contact_threshold, force


__all__ = ["CommandError", "MujocoRobotSim", "SimState", "fill_robot_state"]
