"""Reward terms of the velocity task: small pure functions of one environment's step, by name.

The environment multiplies each by its weight (``TaskConfig.rewards``) and the control period and
clips the sum at zero. Positive weights reward, negative ones penalize; each function returns a
non-negative magnitude. Vectors are body frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

TRACKING_VAR = 0.25  # (m/s)^2 and (rad/s)^2: Isaac Lab's std of sqrt(0.25)
FINE_TRACKING_VAR = 0.02
AIR_TIME_TARGET = 0.5  # s
MOVING = 0.1  # m/s or rad/s: a command below this is "stand still"
KNEE_CLEARANCE = 0.02  # m
SOFT_LIMIT = 0.95  # fraction of the joint range inside which joint_limits is zero


class RewardInputs(NamedTuple):
    command: jax.Array
    lin_vel: jax.Array
    ang_vel: jax.Array
    gravity: jax.Array
    joint_pos: jax.Array
    joint_vel: jax.Array
    last_joint_vel: jax.Array
    default_joint_pos: jax.Array
    lower: jax.Array
    upper: jax.Array
    tau: jax.Array
    action: jax.Array
    last_action: jax.Array
    air_time: jax.Array  # per foot, including this step
    first_contact: jax.Array  # per foot: touched down this step
    knee_clearance: jax.Array
    dt: float
    # parkour inputs (None unless the task weights a term that reads them)
    heading_error: jax.Array | None = None  # rad, target heading minus base yaw, wrapped to [-pi, pi]
    feet_edge: jax.Array | None = None  # per foot: in contact on a terrain edge
    penetration: jax.Array | None = None  # m, summed depth of the leg and base points below the ground


def _lin_error(r: RewardInputs) -> jax.Array:
    return jnp.sum(jnp.square(r.command[:2] - r.lin_vel[:2]))


def _yaw_error(r: RewardInputs) -> jax.Array:
    return jnp.square(r.command[2] - r.ang_vel[2])


def _moving(r: RewardInputs) -> jax.Array:
    return (jnp.linalg.norm(r.command[:2]) > MOVING) | (jnp.abs(r.command[2]) > MOVING)


def joint_limits(r: RewardInputs) -> jax.Array:
    mid, half = (r.upper + r.lower) / 2, (r.upper - r.lower) / 2 * SOFT_LIMIT
    return jnp.sum(jnp.maximum(jnp.abs(r.joint_pos - mid) - half, 0.0))


def feet_air_time(r: RewardInputs) -> jax.Array:
    """legged_gym: at each touchdown, the air time beyond the target; only while commanded to move."""
    return jnp.sum((r.air_time - AIR_TIME_TARGET) * r.first_contact) * _moving(r)


def track_lin_vel_dir(r: RewardInputs) -> jax.Array:
    """Extreme Parkour's goal-velocity term on the command: min(v . c_hat, |c|) / |c|, at least 0
    (0 when the planar command is below ``MOVING``)."""
    speed = jnp.linalg.norm(r.command[:2])
    along = jnp.dot(r.lin_vel[:2], r.command[:2]) / jnp.maximum(speed, MOVING)
    return jnp.where(speed > MOVING, jnp.clip(along, 0.0, speed) / jnp.maximum(speed, MOVING), 0.0)


TERMS: dict[str, Callable[[RewardInputs], jax.Array]] = {
    "track_lin_vel_xy": lambda r: jnp.exp(-_lin_error(r) / TRACKING_VAR),
    "track_ang_vel_z": lambda r: jnp.exp(-_yaw_error(r) / TRACKING_VAR),
    "track_lin_vel_xy_fine": lambda r: jnp.exp(-_lin_error(r) / FINE_TRACKING_VAR),
    "track_ang_vel_z_fine": lambda r: jnp.exp(-_yaw_error(r) / FINE_TRACKING_VAR),
    "lin_vel_z": lambda r: jnp.square(r.lin_vel[2]),
    "ang_vel_xy": lambda r: jnp.sum(jnp.square(r.ang_vel[:2])),
    "joint_torques": lambda r: jnp.sum(jnp.square(r.tau)),
    "joint_acc": lambda r: jnp.sum(jnp.square((r.joint_vel - r.last_joint_vel) / r.dt)),
    "action_rate": lambda r: jnp.sum(jnp.square(r.action - r.last_action)),
    "feet_air_time": feet_air_time,
    "knee_contact": lambda r: jnp.sum(r.knee_clearance < KNEE_CLEARANCE).astype(jnp.float32),
    "flat_orientation": lambda r: jnp.sum(jnp.square(r.gravity[:2])),
    "joint_limits": joint_limits,
    "stand_still": lambda r: jnp.sum(jnp.abs(r.joint_pos - r.default_joint_pos)) * ~_moving(r),
    # stage 2 (parkour)
    "track_lin_vel_dir": track_lin_vel_dir,
    "track_heading": lambda r: jnp.exp(-jnp.abs(r.heading_error)),
    "feet_edge": lambda r: jnp.sum(r.feet_edge).astype(jnp.float32),
    "body_penetration": lambda r: r.penetration,
}
PARKOUR_TERMS = ("track_heading", "feet_edge", "body_penetration")  # terms that need the parkour inputs

__all__ = ["PARKOUR_TERMS", "TERMS", "RewardInputs", "track_lin_vel_dir"]
