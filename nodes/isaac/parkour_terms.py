"""Observation terms the Extreme-Parkour layout needs beyond ``krabgraph.nodes.policy``'s own.

Registered on import through ``observation_term``; a contract lists this module under
``term_modules`` to use them. (The y-fastest scan is the core ``height_scan`` with ``ordering: yx``.)
All are pure functions of the decoded ``PolicyState``:

- ``imu_roll_pitch``: roll and pitch (rad) of the IMU orientation, legged_gym's
  ``euler_from_quaternion`` convention (roll = atan2(2(wx + yz), 1 - 2(x² + y²)),
  pitch = asin(clip(2(wy - zx), -1, 1))).
- ``constant``: fixed ``values`` (optional ``labels``), e.g. masked-out slots or nominal
  domain-randomisation parameters.
- ``velocity_command_components``: a subset (``components``) of (vx, vy, yaw_rate).
- ``unavailable``: ``dim`` values krabgraph cannot compute yet (``what``, ``reason``). A contract
  that lists it loads and reports its size, but building its observation fails with that reason,
  so the policy never runs on made-up inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from krabgraph.nodes.policy.observations import (
    ObservationError,
    PolicyState,
    observation_term,
)
from krabgraph.nodes.rotations import roll_pitch

COMMAND_COMPONENTS = ("vx", "vy", "yaw_rate")


@observation_term("imu_roll_pitch", ("roll", "pitch"))
def imu_roll_pitch(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Roll and pitch (rad) of the base, from the IMU orientation."""
    return np.array(roll_pitch(*s.orientation))


def _constant_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"values", "labels"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; constant takes values and labels")
    values = options.get("values")
    ok = isinstance(values, list) and values and all(_finite_number(v) for v in values)
    if not ok:
        raise ValueError(f"values must be a non-empty list of finite numbers, got {values!r}")
    labels = options.get("labels", [str(i) for i in range(len(values))])
    if not (isinstance(labels, list) and len(labels) == len(values) and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"labels must be {len(values)} strings, one per value, got {labels!r}")
    return {"values": tuple(float(v) for v in values), "labels": tuple(labels)}


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@observation_term("constant", lambda joints, opts: opts["labels"], options=_constant_options)
def constant(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """The fixed ``values``."""
    return np.asarray(options["values"], dtype=np.float64)


def _components_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"components"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; velocity_command_components takes components")
    parts = options.get("components")
    if not (isinstance(parts, list) and parts and all(p in COMMAND_COMPONENTS for p in parts)):
        raise ValueError(f"components must be a non-empty list of {', '.join(COMMAND_COMPONENTS)}, got {parts!r}")
    return {"components": tuple(parts), "index": tuple(COMMAND_COMPONENTS.index(p) for p in parts)}


@observation_term("velocity_command_components", lambda joints, opts: opts["components"], options=_components_options)
def velocity_command_components(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """The chosen components of the velocity command (m/s, m/s, rad/s); zeros before any command."""
    return s.command[list(options["index"])]


def _unavailable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"dim", "what", "reason"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; unavailable takes dim, what and reason")
    dim, what, reason = options.get("dim"), options.get("what"), options.get("reason")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not (isinstance(what, str) and what and isinstance(reason, str) and reason):
        raise ValueError("what and reason must be non-empty strings")
    return {"dim": dim, "what": what, "reason": reason}


@observation_term(
    "unavailable",
    lambda joints, opts: [f"{opts['what']}:{i}" for i in range(opts["dim"])],
    options=_unavailable_options,
)
def unavailable(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Never computes: raises ``ObservationError`` with the contract's reason."""
    raise ObservationError(
        f"observation part {options['what']!r} ({options['dim']} values) is unavailable: {options['reason']}"
    )


__all__ = ["COMMAND_COMPONENTS"]
