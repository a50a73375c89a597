"""Rotations of unit quaternions (scalar first, w x y z, as the messages carry them): the one place
every node, backend, tool and the trainer takes them from.

Functions with an ``xp`` parameter take ``numpy`` (the default) or ``jax.numpy`` (the trainer runs
the same formula on the GPU, traced once under ``jit``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def roll_pitch(w: float, x: float, y: float, z: float) -> tuple[float, float]:
    """Roll and pitch (rad, ZYX Euler angles) of a unit quaternion."""
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch


def yaw_of(w: float, x: float, y: float, z: float) -> float:
    """Yaw (rad, ZYX Euler: the heading about world z) of a unit quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def rpy(quat: Sequence[float]) -> tuple[float, float, float]:
    """Roll, pitch, yaw (rad, ZYX Euler angles) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(v) for v in quat)
    return (*roll_pitch(w, x, y, z), yaw_of(w, x, y, z))


def projected_gravity(quat: np.ndarray, xp=np) -> np.ndarray:
    """Unit gravity direction (0, 0, -1) of the world in the body frame of ``quat``: ``-R[2, :]``."""
    w, x, y, z = quat
    return -xp.array([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)])


def rotation_matrix(quat: Sequence[float], xp=np) -> np.ndarray:
    """R(q) [3, 3]: body-frame vectors to the world frame (float64 under NumPy)."""
    w, x, y, z = (float(v) for v in quat) if xp is np else quat
    return xp.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotate_inverse(quat: Sequence[float], v: Sequence[float]) -> np.ndarray:
    """``v`` (world frame) expressed in the body frame of ``quat``: R(q)^T v."""
    return rotation_matrix(quat).T @ np.asarray(v, dtype=np.float64)


def yaw_of_matrix(rot: np.ndarray, xp=np) -> float:
    """Yaw (rad) of a body-to-world rotation matrix ``rot`` [3, 3]: the heading of the body x axis in
    the world, ``atan2(R[1, 0], R[0, 0])``."""
    if xp is np:
        return math.atan2(rot[1, 0], rot[0, 0])  # one value: math is ~10x faster than np.arctan2
    return xp.arctan2(rot[1, 0], rot[0, 0])


def quat_from_yaw(yaw: float, xp=np) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation by ``yaw`` (rad) about the world z axis."""
    return xp.array([xp.cos(yaw / 2), 0.0, 0.0, xp.sin(yaw / 2)])


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of roll, pitch, yaw (rad, ZYX Euler: q = q_yaw q_pitch q_roll);
    the inverse of ``rpy`` for |pitch| < pi/2."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ]
    )


def matrix_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) (rad, ZYX Euler); positive pitch tilts the x axis down."""
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


__all__ = [
    "matrix_from_rpy",
    "projected_gravity",
    "quat_from_rpy",
    "quat_from_yaw",
    "roll_pitch",
    "rotate_inverse",
    "rotation_matrix",
    "rpy",
    "yaw_of",
    "yaw_of_matrix",
]
