"""Rotations of unit quaternions (scalar first, w x y z, as the messages carry them): the one place
every node, backend and tool takes them from."""

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


def projected_gravity(quat: np.ndarray) -> np.ndarray:
    """Unit gravity direction (0, 0, -1) of the world in the body frame of ``quat``: ``-R[2, :]``."""
    w, x, y, z = quat
    return -np.array([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)])


def rotation_matrix(quat: Sequence[float]) -> np.ndarray:
    """R(q): body-frame vectors to the world frame."""
    w, x, y, z = (float(v) for v in quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotate_inverse(quat: Sequence[float], v: Sequence[float]) -> np.ndarray:
    """``v`` (world frame) expressed in the body frame of ``quat``: R(q)^T v."""
    return rotation_matrix(quat).T @ np.asarray(v, dtype=np.float64)


__all__ = ["projected_gravity", "roll_pitch", "rotate_inverse", "rotation_matrix", "rpy", "yaw_of"]
