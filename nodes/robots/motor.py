"""The joint motor model every backend applies: torque limited by the motor's torque-speed line.

The torque that would accelerate a joint further shrinks linearly from the effort limit ``E`` at
rest to zero at the velocity limit ``V``, while braking torque is always available up to ``E``
(Isaac Lab's DC-motor model with saturation effort = effort limit)::

    tau_max = clip(E * (1 - qd / V), 0, E),   tau_min = clip(E * (-1 - qd / V), -E, 0)

``xp`` is ``numpy`` or ``jax.numpy`` (the trainer runs the same function on the GPU).
"""

from __future__ import annotations

import numpy as np


def limit_torque(tau, qd, effort, velocity, xp=np):
    """``tau`` clipped to the torque-speed line at joint velocity ``qd`` (per joint)."""
    # minimum/maximum rather than clip: ~5x cheaper on 12 elements in NumPy, and this runs every physics step.
    ratio = qd / velocity
    upper = xp.minimum(xp.maximum(effort * (1.0 - ratio), 0.0), effort)
    lower = xp.minimum(xp.maximum(effort * (-1.0 - ratio), -effort), 0.0)
    return xp.minimum(xp.maximum(tau, lower), upper)


__all__ = ["limit_torque"]
