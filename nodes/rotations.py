"""Angles of unit quaternions (scalar first, as the messages carry them)."""

from __future__ import annotations

import math


def yaw_of(w: float, x: float, y: float, z: float) -> float:
    """Yaw (rad, ZYX Euler: the heading about world z) of a unit quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


__all__ = ["yaw_of"]
