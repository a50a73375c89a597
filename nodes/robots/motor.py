"""The joint motor model every backend applies: torque limited by the motor's torque-speed line.

The torque that would accelerate a joint further falls linearly from the stall torque ``S`` at rest
to zero at the velocity limit ``V``, capped at the effort limit ``E``, while braking torque is always
available up to ``E`` (Isaac Lab's DC-motor model; ``S`` is its saturation effort, ``S = E`` unless
the robot description says otherwise)::

    tau_max = clip(S * (1 - qd / V), 0, E),   tau_min = clip(S * (-1 - qd / V), -E, 0)

``xp`` is ``numpy`` or ``jax.numpy`` (the trainer runs the same function on the GPU).
"""

from __future__ import annotations

import numpy as np


def limit_torque(tau, qd, effort, velocity, saturation=None, xp=np):
    """``tau`` clipped to the torque-speed line at joint velocity ``qd`` (per joint)."""
    # minimum/maximum rather than clip: ~5x cheaper on 12 elements in NumPy, and this runs every physics step.
    stall = effort if saturation is None else saturation
    ratio = qd / velocity
    upper = xp.minimum(xp.maximum(stall * (1.0 - ratio), 0.0), effort)
    lower = xp.minimum(xp.maximum(stall * (-1.0 - ratio), -effort), 0.0)
    return xp.minimum(xp.maximum(tau, lower), upper)


__all__ = ["limit_torque"]
