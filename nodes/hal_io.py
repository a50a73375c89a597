"""What every HAL reads and writes, in one place: a measured robot snapshot → ``RobotState``, and a
``JointCommand`` → validated joint targets. Simulator and real-robot HALs share this code, so a
policy sees the same message whichever HAL produced it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from krabgraph.msgs import JointCommand, RobotState, set_array, to_numpy


@dataclass(frozen=True, eq=False)
class RobotSnapshot:
    """One reading of a robot. Per-joint arrays follow ``joint_names``; base fields are ground truth
    (None on a real robot without an estimator)."""

    time: float  # s (simulated time, or the robot's clock)
    joint_names: tuple[str, ...]
    q: np.ndarray  # rad
    qd: np.ndarray  # rad/s
    tau: np.ndarray  # N·m, applied (simulator) or measured (robot)
    imu_quat: np.ndarray  # IMU orientation in the world, wxyz
    imu_gyro: np.ndarray  # rad/s, IMU frame
    imu_accel: np.ndarray | None  # m/s², IMU frame, includes the gravity reaction (+9.81 z at rest)
    foot_names: tuple[str, ...]
    foot_contact: np.ndarray  # bool per foot
    foot_force: np.ndarray  # N, [n_feet, 3], world frame, force of the ground on the foot
    base_pos: np.ndarray | None = None  # m, world
    base_quat: np.ndarray | None = None  # wxyz, world
    base_lin_vel: np.ndarray | None = None  # m/s, body frame
    base_ang_vel: np.ndarray | None = None  # rad/s, body frame
    base_lin_vel_world: np.ndarray | None = None  # m/s, world frame

    @property
    def has_base(self) -> bool:
        return self.base_pos is not None


def fill_robot_state(msg: RobotState, snap: RobotSnapshot, stamp_ns: int, frame_id: str = "base") -> RobotState:
    """Fill ``msg`` (in place; returned) from ``snap``: FLOAT64 arrays, ``stamp_ns`` in every header."""
    headers = [msg.header, msg.joints.header, msg.imu.header, msg.contacts.header]
    if snap.has_base:  # without ground truth the base field stays unset
        headers.append(msg.base.header)
    for header in headers:
        header.stamp_ns = stamp_ns
        header.frame_id = frame_id
    j = msg.joints
    del j.name[:]
    j.name.extend(snap.joint_names)
    set_array(j.position, snap.q, np.float64)
    set_array(j.velocity, snap.qd, np.float64)
    set_array(j.effort, snap.tau, np.float64)
    _set_quat(msg.imu.orientation, snap.imu_quat)
    _set_vec(msg.imu.angular_velocity, snap.imu_gyro)
    if snap.imu_accel is not None:
        _set_vec(msg.imu.linear_acceleration, snap.imu_accel)
    c = msg.contacts
    del c.name[:], c.in_contact[:]
    c.name.extend(snap.foot_names)
    c.in_contact.extend(bool(v) for v in snap.foot_contact)
    set_array(c.force, np.asarray(snap.foot_force).reshape(-1, 3), np.float64)
    msg.has_base = snap.has_base
    if snap.has_base:
        base = msg.base
        base.header.frame_id = "world"
        _set_vec(base.position, snap.base_pos)
        _set_quat(base.orientation, snap.base_quat)
        _set_vec(base.linear_velocity, snap.base_lin_vel)
        _set_vec(base.angular_velocity, snap.base_ang_vel)
        _set_vec(base.linear_velocity_world, snap.base_lin_vel_world)
    return msg


def _set_vec(field, v: np.ndarray) -> None:
    field.x, field.y, field.z = (float(x) for x in v)


def _set_quat(field, q: np.ndarray) -> None:
    field.w, field.x, field.y, field.z = (float(x) for x in q)


class CommandError(ValueError):
    """A joint command a HAL cannot apply (unknown or repeated joints, wrong lengths, bad values)."""


@dataclass(frozen=True, eq=False)
class JointTargets:
    """A validated ``JointCommand``: FLOAT64 columns in ``names`` order; None = not given (defaults)."""

    names: tuple[str, ...]
    position: np.ndarray  # rad
    velocity: np.ndarray | None  # rad/s
    effort: np.ndarray | None  # N·m feed-forward
    kp: np.ndarray | None  # N·m/rad
    kd: np.ndarray | None  # N·m·s/rad


def parse_joint_command(msg: JointCommand, known: Collection[str]) -> JointTargets:
    """Check ``msg`` against the joints a HAL drives; raise ``CommandError`` naming the first problem.

    Any order and any subset of ``known`` joints; ``position`` is required; empty velocity, effort,
    kp and kd arrays mean "not given".
    """
    names = tuple(msg.name)
    n = len(names)
    if n == 0:
        raise CommandError("no joint names")
    if len(set(names)) != n:
        raise CommandError("repeated joint names in command")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CommandError(f"unknown joint(s) {unknown}")
    columns: dict[str, np.ndarray | None] = {}
    for key in ("position", "velocity", "effort", "kp", "kd"):
        try:
            values = np.asarray(to_numpy(getattr(msg, key)), dtype=np.float64).reshape(-1)
        except ValueError as exc:
            raise CommandError(f"{key}: {exc}") from None
        if values.size == 0 and key != "position":
            columns[key] = None
            continue
        if values.size != n:
            raise CommandError(f"{key}: expected {n} values for {n} joints, got {values.size}")
        if not np.isfinite(values).all():
            raise CommandError(f"{key}: non-finite values")
        columns[key] = values
    if any(g is not None and (g < 0).any() for g in (columns["kp"], columns["kd"])):
        raise CommandError("kp and kd must be >= 0")
    return JointTargets(names, **columns)
