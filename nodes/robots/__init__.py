"""Robot descriptions: one YAML file per robot, keyed by joint name (``go2.yaml``).

``load_robot("go2")`` or ``load_robot("path/to/robot.yaml")`` returns a validated, immutable
``RobotDescription``; the file is checked against ``robot.schema.json`` (its shape), then for what a
schema cannot say, and every error reads ``file:line: what``. Per-joint arrays follow the file's
joint order (the MJCF order for the Go2); consumers must map by name with ``index``/``indices``,
never assume an order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.launch.graph.schema_check import Problem, load_schema, schema_problems
from krabgraph.launch.graph.yamlloc import LocDict, YamlError, load_yaml

ROBOTS_DIR = Path(__file__).resolve().parent
SCHEMA_FILE = ROBOTS_DIR / "robot.schema.json"  # the file's shape; parse_robot checks the rest

JOINT_FIELDS = ("default", "lower", "upper", "effort", "velocity", "kp", "kd", "motor_index")
OPTIONAL_JOINT_FIELDS = ("saturation",)  # N·m, torque-speed line's stall torque (default: the effort limit)
TOP_LEVEL_FIELDS = ("name", "model", "base_body", "imu_site", "feet", "sim_dt", "control_dt", "joints")
OPTIONAL_FIELDS = ("foot_contact", "fall")
FALL_DEFAULTS = {"min_base_height": 0.0, "max_tilt": 1.0}  # without `fall:`: no height check, 1 rad
FOOT_CONTACT_FIELDS = {"condim": 1, "friction": 3, "solref": 2, "solimp": 5}  # MJCF geom attribute -> length


class RobotError(ValueError):
    """An unknown robot or an invalid robot description file: ``<file>:<line>: <what>``, one line per problem."""


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
        raw = load_yaml(path, str(path))  # bounded; mappings know the line of each key
    except YamlError as exc:
        problem = str(exc).removeprefix(f"{exc.loc}: ").removeprefix("invalid YAML: ")
        raise RobotError(f"{exc.loc}: not valid YAML: {problem}; fix the file at the line shown") from None
    return parse_robot(raw, path)


def parse_robot(raw: Any, source: Path) -> RobotDescription:
    """Validate the parsed YAML of a robot description: first against ``robot.schema.json``, then
    what a schema cannot say (finite numbers, limits, decimation, motor_index permutation).

    ``raw`` as loaded by ``krabgraph.launch.graph.yamlloc.load_yaml`` gives errors with the key's line.
    Raises ``RobotError`` listing every schema problem, else naming the first semantic one.
    """
    where = str(source)
    problems = schema_problems(raw, load_schema(SCHEMA_FILE), where)
    if problems:
        raise RobotError("\n".join(map(_schema_message, problems)))
    model, feet, joints = raw["model"], raw["feet"], raw["joints"]
    foot_contact = _parse_foot_contact(raw.get("foot_contact", {}), where)
    fall = _parse_fall(raw.get("fall", {}), where)

    sim_dt = _positive(raw["sim_dt"], f"{_at(raw, 'sim_dt', where)}: sim_dt")
    control_dt = _positive(raw["control_dt"], f"{_at(raw, 'control_dt', where)}: control_dt")
    ratio = control_dt / sim_dt
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise RobotError(
            f"{_at(raw, 'control_dt', where)}: control_dt ({control_dt}) must be a whole multiple of sim_dt ({sim_dt})"
        )

    columns: dict[str, list[float]] = {f: [] for f in (*JOINT_FIELDS, *OPTIONAL_JOINT_FIELDS)}
    for jname, located in joints.items():
        spec = {"saturation": located["effort"]} | located
        for f in (*JOINT_FIELDS, *OPTIONAL_JOINT_FIELDS):
            value = spec[f]
            if not math.isfinite(value):  # the schema checked the types; NaN and inf are numbers to it
                raise RobotError(
                    f"{_at(located, f, where)}: joint {jname!r}: {f} must be a finite number, got {value!r}"
                )
            columns[f].append(float(value))
        lo, hi, q0 = spec["lower"], spec["upper"], spec["default"]
        if not lo < hi:
            raise RobotError(f"{_at(located, 'lower', where)}: joint {jname!r}: lower ({lo}) must be < upper ({hi})")
        if not lo <= q0 <= hi:
            raise RobotError(
                f"{_at(located, 'default', where)}: joint {jname!r}: default {q0} outside its limits [{lo}, {hi}]"
            )
        if not spec["saturation"] >= spec["effort"]:
            raise RobotError(
                f"{_at(located, 'saturation', where)}: joint {jname!r}: saturation ({spec['saturation']}) "
                f"must be >= the effort limit ({spec['effort']})"
            )

    n = len(joints)
    motor_index = np.array(columns["motor_index"], dtype=np.int64)
    if sorted(motor_index.tolist()) != list(range(n)):
        raise RobotError(
            f"{_at(raw, 'joints', where)}: motor_index values must be a permutation of 0..{n - 1}, "
            f"got {motor_index.tolist()}"
        )

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


def _at(mapping: Any, key: Any, source: str) -> str:
    """``file:line`` of ``key`` in ``mapping`` (a ``LocDict`` from ``load_yaml``), else ``source``."""
    return str(mapping.where(key)) if isinstance(mapping, LocDict) else source


def _dotted(path: Iterable[Any]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def _subject(path: tuple[Any, ...]) -> str:
    """What a schema problem is about, in this file's words: 'feet', joint 'FL_hip_joint': kp, fall.max_tilt."""
    if len(path) == 1:
        return repr(path[0])
    head, first, *rest = path
    if head == "joints":
        return f"joint {first!r}: {_dotted(rest)}" if rest else f"joint {first!r}"
    if head == "foot_contact":
        return f"foot_contact: {_dotted((first, *rest))}"
    return _dotted(path)


def _schema_message(problem: Problem) -> str:
    """A schema problem as ``file:line: <subject> <what>`` (key problems: ``<mapping>: missing field(s): k``)."""
    context = (_subject(problem.path) if len(problem.path) > 1 else _dotted(problem.path)) + ": "
    context = "" if context == ": " else context
    if problem.validator == "required":
        return f"{problem.loc}: {context}missing field(s): {problem.key}"
    if problem.validator == "additionalProperties":
        expected = ", ".join(problem.expected)
        return f"{problem.loc}: {context}unknown field(s): {problem.key} (expected: {expected})"
    if not problem.path:
        return f"{problem.loc}: {problem.what}"
    return f"{problem.loc}: {_subject(problem.path)} {problem.what}"


def _parse_fall(raw: Mapping[str, Any], where: str) -> dict[str, float]:
    """``fall: {min_base_height: m, max_tilt: rad}``: when the robot has fallen (safety and trainer)."""
    fall = dict(FALL_DEFAULTS)
    for key, value in raw.items():
        if not math.isfinite(value):
            raise RobotError(f"{_at(raw, key, where)}: fall.{key} must be a finite number >= 0, got {value!r}")
        fall[key] = float(value)
    return fall


def _parse_foot_contact(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """MJCF geom attributes for the feet; a one-number attribute (condim) may be written bare."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        if not all(math.isfinite(v) for v in values):
            size = FOOT_CONTACT_FIELDS[key]
            raise RobotError(
                f"{_at(raw, key, where)}: foot_contact: {key} needs {size} finite number(s), got {value!r}"
            )
        out[key] = int(values[0]) if key == "condim" else tuple(float(v) for v in values)
    return out


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise RobotError(f"{what} must be a positive number, got {value!r}")
    return float(value)


__all__ = ["RobotDescription", "RobotError", "known_robots", "load_robot", "parse_robot"]
