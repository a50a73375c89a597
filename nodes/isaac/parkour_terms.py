"""Observation terms the Extreme-Parkour layout needs beyond ``krabgraph.nodes.policy``'s own.

Registered on import through ``observation_term`` (``krabgraph.nodes.isaac.hal`` imports this
module, so any graph with the Isaac HAL has them; elsewhere import it before loading a contract).
All are pure functions of the decoded ``PolicyState``:

- ``imu_roll_pitch``: roll and pitch (rad) of the IMU orientation, legged_gym's
  ``euler_from_quaternion`` convention (roll = atan2(2(wx + yz), 1 - 2(x² + y²)),
  pitch = asin(clip(2(wy - zx), -1, 1))).
- ``constant``: fixed ``values`` (optional ``labels``), e.g. masked-out slots or nominal
  domain-randomisation parameters.
- ``velocity_command_components``: a subset (``components``) of (vx, vy, yaw_rate).
- ``height_scan_yx``: the ``HeightScan`` values flattened y fastest (legged_gym's
  ``meshgrid(x, y)`` order; Isaac Lab's ``GridPatternCfg(ordering="yx")``), checked against
  ``shape: [n_y, n_x]`` and optional ``offset``.
- ``unavailable``: ``dim`` values krabgraph cannot compute yet (``what``, ``reason``). A contract
  that lists it loads and reports its size, but building its observation fails with that reason,
  so the policy never runs on made-up inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from krabgraph.nodes.policy.observations import (
    MissingInputError,
    ObservationError,
    PolicyState,
    observation_term,
)

COMMAND_COMPONENTS = ("vx", "vy", "yaw_rate")


def roll_pitch(quat_wxyz: np.ndarray) -> np.ndarray:
    """(roll, pitch) in rad of a (w, x, y, z) orientation, as legged_gym computes them."""
    w, x, y, z = quat_wxyz
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(min(1.0, max(-1.0, 2.0 * (w * y - z * x))))
    return np.array([roll, pitch])


@observation_term("imu_roll_pitch", ("roll", "pitch"))
def imu_roll_pitch(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Roll and pitch (rad) of the base, from the IMU orientation."""
    return roll_pitch(s.orientation)


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


def _scan_yx_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - {"shape", "offset"})
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; height_scan_yx takes shape and offset")
    shape = options.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise ValueError(f"shape must be [n_y, n_x] (positive integers), got {shape!r}")
    parsed: dict[str, Any] = {"shape": tuple(shape)}
    if "offset" in options:
        if not _finite_number(options["offset"]):
            raise ValueError(f"offset must be a number (m), got {options['offset']!r}")
        parsed["offset"] = float(options["offset"])
    return parsed


def _scan_yx_labels(joints: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    n_y, n_x = options["shape"]
    return [f"{iy},{ix}" for ix in range(n_x) for iy in range(n_y)]


@observation_term("height_scan_yx", _scan_yx_labels, options=_scan_yx_options, needs="height_scan")
def height_scan_yx(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Base height minus hit height minus offset (m), flattened with y varying fastest."""
    scan = s.height_scan
    if scan is None:
        raise MissingInputError("height_scan", "term height_scan_yx needs a HeightScan message and none has arrived")
    if scan.shape != tuple(options["shape"]):
        raise ObservationError(
            f"height scan has shape {list(scan.shape)} but the contract expects {list(options['shape'])} [n_y, n_x]"
        )
    if "offset" in options and abs(scan.offset - options["offset"]) > 1e-6:
        raise ObservationError(f"height scan offset is {scan.offset} m but the contract expects {options['offset']} m")
    return scan.values.reshape(scan.shape).T.reshape(-1)


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


__all__ = ["COMMAND_COMPONENTS", "roll_pitch"]
