"""Robot descriptions: one YAML file per robot, keyed by joint name (``go2.yaml``).

``load_robot("go2")`` or ``load_robot("path/to/robot.yaml")`` returns a validated, immutable
``RobotDescription``. Per-joint arrays follow the file's joint order (the MJCF order for the
Go2); consumers must map by name with ``index``/``indices``, never assume an order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROBOTS_DIR = Path(__file__).resolve().parent

JOINT_FIELDS = ("default", "lower", "upper", "effort", "velocity", "kp", "kd", "motor_index")
OPTIONAL_JOINT_FIELDS = ("saturation",)  # N·m, torque-speed line's stall torque (default: the effort limit)
TOP_LEVEL_FIELDS = ("name", "model", "base_body", "imu_site", "feet", "sim_dt", "control_dt", "joints")
OPTIONAL_FIELDS = ("foot_contact", "fall")
FALL_DEFAULTS = {"min_base_height": 0.0, "max_tilt": 1.0}  # without `fall:`: no height check, 1 rad
FOOT_CONTACT_FIELDS = {"condim": 1, "friction": 3, "solref": 2, "solimp": 5}  # MJCF geom attribute -> length


class RobotError(ValueError):
    """An unknown robot or an invalid robot description file."""


@dataclass(frozen=True, eq=False)
class RobotDescription:
    """Everything krabgraph knows about one robot. Arrays are read-only, in ``joint_names`` order.

    Units: rad, rad/s, N·m, N·m/rad, N·m·s/rad, s.
    """

    name: str
    source: Path
    model: Mapping[str, str] | str  # the MJCF: a package asset reference or a path relative to ``source``
    base_body: str
    imu_site: str
    foot_geoms: tuple[str, ...]
    foot_contact: Mapping[str, Any]  # MJCF geom attributes overriding the foot geoms' (may be empty)
    sim_dt: float
    control_dt: float
    fall_min_base_height: float  # m above the ground under the base below which the robot has fallen; 0 = none
    fall_max_tilt: float  # rad of |roll| or |pitch| beyond which the robot has fallen
    joint_names: tuple[str, ...]
    default_pos: np.ndarray
    pos_lower: np.ndarray
    pos_upper: np.ndarray
    effort_limit: np.ndarray
    saturation: np.ndarray  # stall torque of the torque-speed line (Isaac Lab's DC motor ``saturation_effort``)
    velocity_limit: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    motor_index: np.ndarray  # slot of each joint in the real robot's motor arrays
    _index: dict[str, int] = field(repr=False)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def decimation(self) -> int:
        """Physics steps per control step."""
        return round(self.control_dt / self.sim_dt)

    def index(self, name: str) -> int:
        """Position of joint ``name`` in this description's arrays."""
        try:
            return self._index[name]
        except KeyError:
            raise RobotError(
                f"robot {self.name!r} has no joint {name!r} (joints: {', '.join(self.joint_names)})"
            ) from None

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Positions of ``names`` in this description's arrays (int array, same order as ``names``)."""
        return np.array([self.index(n) for n in names], dtype=np.intp)


def known_robots() -> list[str]:
    """Names of the robot descriptions shipped with krabgraph."""
    return sorted(p.stem for p in ROBOTS_DIR.glob("*.yaml"))


def load_robot(name_or_path: str | Path) -> RobotDescription:
    """Load and validate a robot description by name (``"go2"``) or path to its YAML file."""
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml"))
    path = Path(text) if looks_like_path else ROBOTS_DIR / f"{text}.yaml"
    if not path.is_file():
        if looks_like_path:
            raise RobotError(f"robot description file not found: {path}")
        raise RobotError(
            f"unknown robot {text!r}; known robots: {', '.join(known_robots()) or 'none'} "
            "(or pass the path of a robot .yaml file)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RobotError(f"{path}: not valid YAML: {exc}") from None
    return parse_robot(raw, path)


def parse_robot(raw: Any, source: Path) -> RobotDescription:
    """Validate the parsed YAML of a robot description; raise ``RobotError`` naming the first problem."""
    where = str(source)
    if not isinstance(raw, dict):
        raise RobotError(f"{where}: expected a mapping at the top level")
    _check_keys(raw, TOP_LEVEL_FIELDS, where, optional=OPTIONAL_FIELDS)

    model = raw["model"]
    packaged = isinstance(model, dict) and isinstance(model.get("package"), str) and isinstance(model.get("path"), str)
    if not (packaged or (isinstance(model, str) and model)):
        raise RobotError(
            f"{where}: 'model' must be an MJCF path relative to this file or a mapping with string 'package' and 'path'"
        )
    for key in ("name", "base_body", "imu_site"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise RobotError(f"{where}: {key!r} must be a non-empty string")
    feet = raw["feet"]
    if not (isinstance(feet, list) and feet and all(isinstance(f, str) for f in feet)) or len(set(feet)) != len(feet):
        raise RobotError(f"{where}: 'feet' must be a non-empty list of distinct geom names")

    foot_contact = _parse_foot_contact(raw.get("foot_contact", {}), where)
    fall = _parse_fall(raw.get("fall", {}), where)

    sim_dt = _positive(raw["sim_dt"], f"{where}: sim_dt")
    control_dt = _positive(raw["control_dt"], f"{where}: control_dt")
    ratio = control_dt / sim_dt
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise RobotError(f"{where}: control_dt ({control_dt}) must be a whole multiple of sim_dt ({sim_dt})")

    joints = raw["joints"]
    if not isinstance(joints, dict) or not joints:
        raise RobotError(f"{where}: 'joints' must be a non-empty mapping of joint name -> fields")
    columns: dict[str, list[float]] = {f: [] for f in (*JOINT_FIELDS, *OPTIONAL_JOINT_FIELDS)}
    for jname, spec in joints.items():
        jwhere = f"{where}: joint {jname!r}"
        if not isinstance(spec, dict):
            raise RobotError(f"{jwhere}: expected a mapping of {', '.join(JOINT_FIELDS)}")
        _check_keys(spec, JOINT_FIELDS, jwhere, optional=OPTIONAL_JOINT_FIELDS)
        spec = {"saturation": spec["effort"]} | spec
        for f in (*JOINT_FIELDS, *OPTIONAL_JOINT_FIELDS):
            value = spec[f]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RobotError(f"{jwhere}: {f} must be a finite number, got {value!r}")
            columns[f].append(float(value))
        lo, hi, q0 = spec["lower"], spec["upper"], spec["default"]
        if not lo < hi:
            raise RobotError(f"{jwhere}: lower ({lo}) must be < upper ({hi})")
        if not lo <= q0 <= hi:
            raise RobotError(f"{jwhere}: default {q0} outside its limits [{lo}, {hi}]")
        for f in ("effort", "velocity"):
            if not spec[f] > 0:
                raise RobotError(f"{jwhere}: {f} limit must be > 0, got {spec[f]}")
        if not spec["saturation"] >= spec["effort"]:
            raise RobotError(
                f"{jwhere}: saturation ({spec['saturation']}) must be >= the effort limit ({spec['effort']})"
            )
        for f in ("kp", "kd"):
            if spec[f] < 0:
                raise RobotError(f"{jwhere}: {f} must be >= 0, got {spec[f]}")
        if not float(spec["motor_index"]).is_integer():
            raise RobotError(f"{jwhere}: motor_index must be an integer, got {spec['motor_index']}")

    n = len(joints)
    motor_index = np.array(columns["motor_index"], dtype=np.int64)
    if sorted(motor_index.tolist()) != list(range(n)):
        raise RobotError(f"{where}: motor_index values must be a permutation of 0..{n - 1}, got {motor_index.tolist()}")

    def frozen(values: list[float], dtype: type = np.float64) -> np.ndarray:
        arr = np.array(values, dtype=dtype)
        arr.setflags(write=False)
        return arr

    motor_index.setflags(write=False)
    names = tuple(joints)
    return RobotDescription(
        name=raw["name"],
        source=source,
        model=dict(model) if isinstance(model, dict) else model,
        base_body=raw["base_body"],
        imu_site=raw["imu_site"],
        foot_geoms=tuple(feet),
        foot_contact=foot_contact,
        sim_dt=sim_dt,
        control_dt=control_dt,
        fall_min_base_height=fall["min_base_height"],
        fall_max_tilt=fall["max_tilt"],
        joint_names=names,
        default_pos=frozen(columns["default"]),
        pos_lower=frozen(columns["lower"]),
        pos_upper=frozen(columns["upper"]),
        effort_limit=frozen(columns["effort"]),
        saturation=frozen(columns["saturation"]),
        velocity_limit=frozen(columns["velocity"]),
        kp=frozen(columns["kp"]),
        kd=frozen(columns["kd"]),
        motor_index=motor_index,
        _index={n: i for i, n in enumerate(names)},
    )


def _check_keys(mapping: dict, expected: tuple[str, ...], where: str, optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in expected if k not in mapping]
    unknown = [str(k) for k in mapping if k not in expected and k not in optional]
    if missing:
        raise RobotError(f"{where}: missing field(s): {', '.join(missing)}")
    if unknown:
        allowed = ", ".join((*expected, *optional))
        raise RobotError(f"{where}: unknown field(s): {', '.join(unknown)} (expected: {allowed})")


def _parse_fall(raw: Any, where: str) -> dict[str, float]:
    """``fall: {min_base_height: m, max_tilt: rad}``: when the robot has fallen (safety and trainer)."""
    if not isinstance(raw, dict):
        raise RobotError(f"{where}: 'fall' must be a mapping of {', '.join(FALL_DEFAULTS)}")
    _check_keys(raw, (), f"{where}: fall", optional=tuple(FALL_DEFAULTS))
    fall = dict(FALL_DEFAULTS)
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise RobotError(f"{where}: fall.{key} must be a finite number >= 0, got {value!r}")
        fall[key] = float(value)
    if not fall["max_tilt"] > 0:
        raise RobotError(f"{where}: fall.max_tilt must be > 0 rad, got {fall['max_tilt']}")
    return fall


def _parse_foot_contact(raw: Any, where: str) -> dict[str, Any]:
    where = f"{where}: foot_contact"
    if not isinstance(raw, dict):
        raise RobotError(f"{where}: expected a mapping of {', '.join(FOOT_CONTACT_FIELDS)}")
    _check_keys(raw, (), where, optional=tuple(FOOT_CONTACT_FIELDS))
    out: dict[str, Any] = {}
    for key, value in raw.items():
        size = FOOT_CONTACT_FIELDS[key]
        values = value if isinstance(value, list) else [value]
        ok = len(values) == size and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
        if not ok:
            raise RobotError(f"{where}: {key} needs {size} finite number(s), got {value!r}")
        if key == "condim":
            if values[0] not in (1, 3, 4, 6):
                raise RobotError(f"{where}: condim must be 1, 3, 4 or 6, got {value!r}")
            out[key] = int(values[0])
        else:
            out[key] = tuple(float(v) for v in values)
    return out


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise RobotError(f"{what} must be a positive number, got {value!r}")
    return float(value)


__all__ = ["RobotDescription", "RobotError", "known_robots", "load_robot", "parse_robot"]
