"""The runtime's observation terms in JAX, by name, and the labels and mirror map of a term list.

Each function here implements the runtime term of the same name
(``krabgraph.nodes.policy.observations``) by the same formula; ``tests/train`` checks that both
give the same vector for the same state. The pipeline per term is the runtime's: compute → (noise,
training only) → clip → scale, terms concatenated in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from krabgraph.nodes.rotations import projected_gravity
from krabgraph.train.config import ObsTerm


class TermInputs(NamedTuple):
    """One environment's inputs to the observation terms (policy joint order)."""

    joint_pos: jax.Array
    joint_vel: jax.Array
    default_joint_pos: jax.Array
    quat: jax.Array  # (w, x, y, z) base in world
    ang_vel: jax.Array  # body frame (the IMU gyro)
    lin_vel: jax.Array  # body frame, ground truth (critic only)
    command: jax.Array
    last_action: jax.Array
    height_scan: jax.Array  # base z - ground z - offset, x fastest


TERMS: dict[str, Callable[[TermInputs], jax.Array]] = {
    "base_lin_vel": lambda s: s.lin_vel,
    "base_ang_vel": lambda s: s.ang_vel,
    "projected_gravity": lambda s: projected_gravity(s.quat, xp=jnp),
    "velocity_commands": lambda s: s.command,
    "joint_pos": lambda s: s.joint_pos,
    "joint_pos_rel": lambda s: s.joint_pos - s.default_joint_pos,
    "joint_vel": lambda s: s.joint_vel,
    "joint_vel_rel": lambda s: s.joint_vel,
    "last_action": lambda s: s.last_action,
    "height_scan": lambda s: s.height_scan,
}
PER_JOINT = ("joint_pos", "joint_pos_rel", "joint_vel", "joint_vel_rel", "last_action")
XYZ = ("x", "y", "z")


def build(terms: Sequence[ObsTerm], s: TermInputs, key: jax.Array | None = None) -> jax.Array:
    """The observation vector of one environment; uniform noise of each term's ``noise`` if ``key``."""
    parts = []
    keys = jax.random.split(key, len(terms)) if key is not None else [None] * len(terms)
    for term, k in zip(terms, keys, strict=True):
        value = TERMS[term.name](s)
        if k is not None and term.noise > 0:
            value = value + jax.random.uniform(k, value.shape, minval=-term.noise, maxval=term.noise)
        if term.clip is not None:
            value = jnp.clip(value, term.clip[0], term.clip[1])
        parts.append(value * term.scale)
    return jnp.concatenate(parts)


def labels(name: str, joints: Sequence[str], scan_shape: tuple[int, int]) -> list[str]:
    """Element labels of a term, as the runtime's contract names them (without the term prefix)."""
    if name in PER_JOINT:
        return list(joints)
    if name == "velocity_commands":
        return ["vx", "vy", "yaw_rate"]
    if name == "height_scan":
        n_y, n_x = scan_shape
        return [f"{iy},{ix}" for iy in range(n_y) for ix in range(n_x)]
    return list(XYZ)


# -- left-right mirror -----------------------------------------------------------------------------

# Per-term sign of each element under the mirror y -> -y (polar vectors flip y, axial ones x and z).
_VECTOR_SIGNS = {
    "base_lin_vel": (1, -1, 1),
    "base_ang_vel": (-1, 1, -1),
    "projected_gravity": (1, -1, 1),
    "velocity_commands": (1, -1, -1),
    "push": (1, -1, 1),
}


_SWAP = {"L": "R", "R": "L"}


def mirror_joint(name: str) -> str:
    """The joint's mirror image: left and right legs swap (Unitree's ``FL_`` ↔ ``FR_``, ``RL_`` ↔ ``RR_``;
    ANYbotics' ``LF_`` ↔ ``RF_``, ``LH_`` ↔ ``RH_``)."""
    unitree = re.sub(r"^([FR])([LR])_", lambda m: m.group(1) + _SWAP[m.group(2)] + "_", name)
    if unitree != name:
        return unitree
    return re.sub(r"^([LR])([FH])_", lambda m: _SWAP[m.group(1)] + m.group(2) + "_", name)


def mirror_map(
    names: Sequence[tuple[str, int]], joints: Sequence[str], negate: str, scan_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(permutation, signs) with ``mirrored = obs[..., perm] * signs`` for terms ``(name, size)``.

    Joint terms swap left and right legs and negate the joints matching ``negate`` (abduction);
    the height scan flips its rows (y); vectors flip by ``_VECTOR_SIGNS``; scalars stay.
    """
    perm: list[int] = []
    signs: list[float] = []
    offset = 0
    index = {j: i for i, j in enumerate(joints)}
    for name, size in names:
        if name in PER_JOINT:
            perm += [offset + index[mirror_joint(j)] for j in joints]
            signs += [-1.0 if re.fullmatch(negate, j) else 1.0 for j in joints]
        elif name == "height_scan":
            n_y, n_x = scan_shape
            perm += [offset + (n_y - 1 - iy) * n_x + ix for iy in range(n_y) for ix in range(n_x)]
            signs += [1.0] * size
        elif name in _VECTOR_SIGNS:
            perm += [offset + i for i in range(size)]
            signs += [float(v) for v in _VECTOR_SIGNS[name]]
        else:
            perm += [offset + i for i in range(size)]
            signs += [1.0] * size
        offset += size
    return np.array(perm), np.array(signs, dtype=np.float32)


__all__ = ["PER_JOINT", "TERMS", "TermInputs", "build", "labels", "mirror_joint", "mirror_map"]
