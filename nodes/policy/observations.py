"""Observation terms and the one place a policy's observation vector is built.

Each tick the inputs are decoded once (``ObservationBuilder.decode``) into a ``PolicyState``: NumPy
arrays in the POLICY's joint order, mapped by name from ``RobotState.joints.name``. Each term is a
small pure function of that state; ``ObservationBuilder.build`` applies Isaac Lab's per-term
pipeline (compute → clip → scale → history, oldest step first, flattened per term), concatenates
the terms in contract order and applies the global clip. The same code serves MuJoCo, Isaac Sim
and the real robot.

Frames and units: body-frame vectors (x forward, y left, z up), quaternions scalar first (w, x, y,
z) giving the base orientation in the world frame; rad, rad/s, m, m/s.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.msgs import ArrayError, DType, HeightScan, JointState, RobotState, VelocityCommand, to_numpy
from krabgraph.msgs.arrays import NamedColumns
from krabgraph.nodes.rotations import projected_gravity as gravity_in_body

if TYPE_CHECKING:
    from krabgraph.nodes.policy.contract import Contract

XYZ = ("x", "y", "z")
COMMAND_LABELS = ("vx", "vy", "yaw_rate")


class ObservationError(KrabgraphError):
    """Inputs that cannot be turned into the policy's observation (missing joints, NaN, ...)."""


class MissingInputError(ObservationError):
    """An input some term needs has not arrived (``input``: ``"height_scan"`` or ``"base"``)."""

    def __init__(self, input_name: str, message: str):
        self.input = input_name
        super().__init__(message)


@dataclass(frozen=True, eq=False)
class ScanData:
    """A decoded ``HeightScan``: values flattened x-fastest (Isaac Lab's order), in m."""

    values: np.ndarray  # [n_y * n_x]
    shape: tuple[int, int]  # (n_y, n_x)
    offset: float  # m, already subtracted from values by the publisher
    center: tuple[float, float] = (0.0, 0.0)  # m, grid centre in the base's yaw frame


@dataclass(frozen=True, eq=False)
class PolicyState:
    """One tick's inputs, decoded once, per-joint arrays in the policy's joint order."""

    joint_pos: np.ndarray  # rad
    joint_vel: np.ndarray  # rad/s
    default_joint_pos: np.ndarray  # rad, from the contract
    orientation: np.ndarray  # (w, x, y, z), base in world, from the IMU
    ang_vel: np.ndarray  # rad/s, body frame, from the IMU
    lin_vel: np.ndarray | None  # m/s, body frame, ground truth; None when the state has no base
    command: np.ndarray  # (vx m/s, vy m/s, yaw rate rad/s); zeros before the first command
    height_scan: ScanData | None  # None before the first scan
    last_action: np.ndarray  # the policy's previous (clipped, raw) action; zeros at start


# -- term registry ---------------------------------------------------------------------------------

Labels = Callable[[Sequence[str], Mapping[str, Any]], Sequence[str]]


@dataclass(frozen=True)
class TermKind:
    """A registered observation term: its function, element labels and what it needs."""

    name: str
    compute: Callable[[PolicyState, Mapping[str, Any]], np.ndarray]
    labels: Labels  # (policy joints, options) -> one label per element of one step
    parse_options: Callable[[Mapping[str, Any]], dict[str, Any]]
    needs: str | None = None  # extra input: "base" or "height_scan"
    privileged: bool = False  # reads ground truth a real robot only estimates


TERMS: dict[str, TermKind] = {}


def _no_options(options: Mapping[str, Any]) -> dict[str, Any]:
    if options:
        raise ValueError(f"this term takes no options, got {sorted(options)}; remove them")
    return {}


def observation_term(
    name: str,
    labels: Labels | Sequence[str],
    *,
    options: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_options,
    needs: str | None = None,
    privileged: bool = False,
) -> Callable:
    """Register ``fn(state, options) -> ndarray`` as observation term ``name``."""
    label_fn = labels if callable(labels) else (lambda joints, opts, fixed=tuple(labels): fixed)

    def register(fn: Callable[[PolicyState, Mapping[str, Any]], np.ndarray]) -> Callable:
        if name in TERMS:
            raise ValueError(f"observation term {name!r} is already registered")
        TERMS[name] = TermKind(name, fn, label_fn, options, needs, privileged)
        return fn

    return register


def _per_joint(joints: Sequence[str], options: Mapping[str, Any]) -> Sequence[str]:
    return joints


@observation_term("base_lin_vel", XYZ, needs="base", privileged=True)
def base_lin_vel(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Base linear velocity, body frame (m/s), simulator ground truth ``RobotState.base``."""
    if s.lin_vel is None:
        raise MissingInputError(
            "base",
            "term base_lin_vel needs ground-truth base velocity but RobotState.has_base is false; "
            "run in simulation or add a state estimator that fills RobotState.base",
        )
    return s.lin_vel


@observation_term("base_ang_vel", XYZ)
def base_ang_vel(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Base angular velocity, body frame (rad/s), from the IMU gyro."""
    return s.ang_vel


@observation_term("projected_gravity", XYZ)
def projected_gravity(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Gravity unit vector in the body frame, from the IMU orientation; (0, 0, -1) when level."""
    return gravity_in_body(s.orientation)


@observation_term("velocity_commands", COMMAND_LABELS)
def velocity_commands(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Commanded base velocity (vx, vy, yaw rate) in m/s, m/s, rad/s; zeros before any command."""
    return s.command


@observation_term("joint_pos", _per_joint)
def joint_pos(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Joint positions q (rad)."""
    return s.joint_pos


@observation_term("joint_pos_rel", _per_joint)
def joint_pos_rel(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Joint positions relative to the default pose, q - q0 (rad)."""
    return s.joint_pos - s.default_joint_pos


@observation_term("joint_vel", _per_joint)
def joint_vel(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Joint velocities (rad/s)."""
    return s.joint_vel


@observation_term("joint_vel_rel", _per_joint)
def joint_vel_rel(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Joint velocities relative to the default (zero) velocity, q̇ - 0 (rad/s)."""
    return s.joint_vel


@observation_term("last_action", _per_joint)
def last_action(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """The policy's previous action: the network output after the action clip, before scaling."""
    return s.last_action


def _scan_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``shape: [n_y, n_x]`` or ``size: [x, y]`` (m) with ``resolution`` (m); optional ``offset`` (m),
    ``center: [x, y]`` (m, the grid's middle in the base's yaw frame; default the base: ``[0.4, 0]`` is a
    look-ahead grid) and ``ordering`` (``xy``: x fastest, Isaac Lab's default; ``yx``: y fastest,
    legged_gym's)."""
    unknown = sorted(set(options) - {"shape", "size", "resolution", "offset", "center", "ordering"})
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r}; height_scan takes shape, size, resolution, offset, center, ordering"
        )
    ordering = options.get("ordering", "xy")
    if ordering not in ("xy", "yx"):
        raise ValueError(f"ordering must be xy (x fastest) or yx (y fastest), got {ordering!r}")
    shape = None
    if "size" in options or "resolution" in options:
        size, res = options.get("size"), options.get("resolution")
        if not (isinstance(size, list) and len(size) == 2 and isinstance(res, (int, float)) and res > 0):
            raise ValueError("give size: [x_m, y_m] together with resolution: m > 0 (Isaac Lab's GridPatternCfg)")
        # Isaac Lab's grid: arange(-size/2, size/2 + 1e-9, resolution) along each axis.
        n_x, n_y = (math.floor(extent / res + 1e-6) + 1 for extent in size)
        shape = (n_y, n_x)
    if "shape" in options:
        given = options["shape"]
        if not (isinstance(given, list) and len(given) == 2 and all(isinstance(n, int) and n > 0 for n in given)):
            raise ValueError(f"shape must be [n_y, n_x] (positive integers), got {given!r}")
        if shape is not None and tuple(given) != shape:
            raise ValueError(f"shape {given} disagrees with size/resolution, which give [{shape[0]}, {shape[1]}]")
        shape = tuple(given)
    if shape is None:
        raise ValueError("height_scan needs shape: [n_y, n_x] or size: [x_m, y_m] with resolution: m")
    parsed: dict[str, Any] = {"shape": shape, "ordering": ordering}
    if "offset" in options:
        offset = options["offset"]
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            raise ValueError(f"offset must be a number (m), got {offset!r}")
        parsed["offset"] = float(offset)
    center = options.get("center", [0.0, 0.0])
    if not (
        isinstance(center, list)
        and len(center) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in center)
    ):
        raise ValueError(f"center must be [x_m, y_m] (finite numbers), got {center!r}")
    parsed["center"] = (float(center[0]), float(center[1]))
    return parsed


def _scan_labels(joints: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    n_y, n_x = options["shape"]
    if options.get("ordering", "xy") == "yx":
        return [f"{iy},{ix}" for ix in range(n_x) for iy in range(n_y)]
    return [f"{iy},{ix}" for iy in range(n_y) for ix in range(n_x)]


@observation_term("height_scan", _scan_labels, options=_scan_options, needs="height_scan")
def height_scan(s: PolicyState, options: Mapping[str, Any]) -> np.ndarray:
    """Base height minus hit height minus offset (m), x fastest as the ``HeightScan`` carries it, or
    y fastest with ``ordering: yx``."""
    scan = s.height_scan
    if scan is None:
        raise MissingInputError("height_scan", "term height_scan needs a HeightScan message and none has arrived")
    if scan.shape != tuple(options["shape"]):
        raise ObservationError(
            f"height scan has shape {list(scan.shape)} but the contract expects {list(options['shape'])} "
            "[n_y, n_x]; configure the scanner with the policy's grid"
        )
    if "offset" in options and abs(scan.offset - options["offset"]) > 1e-6:
        raise ObservationError(
            f"height scan offset is {scan.offset} m but the contract expects {options['offset']} m; "
            "configure the scanner with the policy's offset"
        )
    want = options.get("center", (0.0, 0.0))
    if abs(scan.center[0] - want[0]) > 1e-6 or abs(scan.center[1] - want[1]) > 1e-6:
        raise ObservationError(
            f"height scan grid is centred at {list(scan.center)} m but the contract expects {list(want)} m "
            "(base yaw frame); configure the scanner with the policy's centre (MuJoCo HAL: scan_center)"
        )
    if options.get("ordering", "xy") == "yx":
        return scan.values.reshape(scan.shape).T.reshape(-1)
    return scan.values


# -- decoding ------------------------------------------------------------------------------------


class StateDecoder:
    """Decodes messages into a ``PolicyState``; maps joints by name (mapping cached per name list)."""

    def __init__(self, joints: Sequence[str], default_joint_pos: np.ndarray):
        self.joints = tuple(joints)
        self.default_joint_pos = default_joint_pos
        self._names: tuple[str, ...] | None = None
        self._index = np.empty(0, dtype=np.intp)

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Positions of the policy's joints in a message's ``names`` (extra joints are ignored)."""
        names = tuple(names)
        if names != self._names:
            where = {}
            for i, name in enumerate(names):
                if name in where:
                    raise ObservationError(f"RobotState.joints.name lists {name!r} twice")
                where[name] = i
            missing = [j for j in self.joints if j not in where]
            if missing:
                raise ObservationError(
                    f"RobotState.joints lacks joint(s) the policy needs: {', '.join(missing)} "
                    f"(message has: {', '.join(n[:64] for n in names[:16]) or 'none'}"
                    f"{f' and {len(names) - 16} more' if len(names) > 16 else ''}); publish them under these names"
                )
            self._index = np.array([where[j] for j in self.joints], dtype=np.intp)
            self._names = names
        return self._index

    def __call__(
        self,
        state: RobotState,
        command: VelocityCommand | None = None,
        height_scan: HeightScan | None = None,
        last_action: np.ndarray | None = None,
    ) -> PolicyState:
        joints = state.joints
        idx = self.index(joints.name)
        n = len(joints.name)
        q = _joint_array(joints.position, "position", n)[idx]
        qd = _joint_array(joints.velocity, "velocity", n)[idx]
        imu = state.imu
        o = imu.orientation
        quat = np.array([o.w, o.x, o.y, o.z])
        norm = math.sqrt(o.w * o.w + o.x * o.x + o.y * o.y + o.z * o.z)
        if not norm > 1e-6:
            raise ObservationError("RobotState.imu.orientation is all zero; fill it (unit quaternion w, x, y, z)")
        if not math.isfinite(norm):
            raise ObservationError(f"RobotState.imu.orientation {quat.tolist()} is not finite")
        gyro = imu.angular_velocity
        lin_vel = None
        if state.has_base:
            v = state.base.linear_velocity
            lin_vel = np.array([v.x, v.y, v.z])
        cmd = np.zeros(3) if command is None else np.array([command.vx, command.vy, command.yaw_rate])
        if last_action is None:
            last_action = np.zeros(len(self.joints))
        return PolicyState(
            joint_pos=q,
            joint_vel=qd,
            default_joint_pos=self.default_joint_pos,
            orientation=quat / norm,
            ang_vel=np.array([gyro.x, gyro.y, gyro.z]),
            lin_vel=lin_vel,
            command=cmd,
            height_scan=None if height_scan is None else decode_height_scan(height_scan),
            last_action=np.asarray(last_action, dtype=np.float64),
        )


def _joint_array(field: Any, what: str, n: int) -> np.ndarray:
    try:
        values = to_numpy(field).reshape(-1)
    except ArrayError as exc:
        raise ObservationError(f"RobotState.joints.{what}: {exc}") from None
    if values.size != n:
        raise ObservationError(f"RobotState.joints.{what} has {values.size} values for {n} joint names")
    return values.astype(np.float64, copy=False)


def decode_height_scan(msg: HeightScan) -> ScanData:
    """A ``HeightScan`` as flat values (x fastest) with its grid shape and offset."""
    try:
        heights = to_numpy(msg.heights)
    except ArrayError as exc:
        raise ObservationError(f"HeightScan.heights: {exc}") from None
    if heights.ndim != 2:
        raise ObservationError(f"HeightScan.heights must have shape [n_y, n_x], got {list(heights.shape)}")
    shape = (int(heights.shape[0]), int(heights.shape[1]))
    return ScanData(
        values=heights.reshape(-1).astype(np.float64),
        shape=shape,
        offset=msg.offset,
        center=(msg.center_x, msg.center_y),
    )


# -- building ------------------------------------------------------------------------------------


class ObservationBuilder:
    """Builds a contract's float32 observation vector, keeping each term's history.

    ``labels[i]`` names element ``i``, e.g. ``joint_pos_rel[FR_hip_joint]`` or, with history,
    ``base_ang_vel[x]@t-2`` (oldest first). Call ``reset()`` when an episode (re)starts: the last
    action is the caller's, histories refill from the next observation (as Isaac Lab does).

    ``build(decode(...))`` evaluates each term on a decoded ``PolicyState``; ``observe(...)`` gives
    the same vector from the messages in one pass when every term is a built-in one.
    """

    def __init__(self, contract: Contract):
        self.contract = contract
        self.labels: tuple[str, ...] = contract.observation_labels
        self.dim = contract.obs_dim
        self.decode = StateDecoder(contract.joints, contract.default_joint_pos)
        self._terms = [(term, TERMS[term.name].compute) for term in contract.observations]
        self._history: list[np.ndarray | None] = [None] * len(self._terms)
        self._obs = np.empty(self.dim)
        # One step of every term, concatenated: per-element clip bounds (±inf where a term has none)
        # and scale, so clipping and scaling are one NumPy call each for the whole step.
        terms = contract.observations
        inf = [(-np.inf, np.inf)] * len(terms)
        bounds = [(t.clip or whole, t.dim) for t, whole in zip(terms, inf, strict=True)]
        self._clip_lo = np.concatenate([np.full(dim, lo, dtype=np.float64) for (lo, _), dim in bounds])
        self._clip_hi = np.concatenate([np.full(dim, hi, dtype=np.float64) for (_, hi), dim in bounds])
        self._scale = np.concatenate([np.asarray(t.scale, dtype=np.float64) for t in terms])
        self._clipped = any(t.clip is not None for t in terms)
        self._scaled = bool((self._scale != 1.0).any())
        self._histories = any(t.history > 1 for t in terms)
        # The global clip's bounds as arrays: a ufunc on two arrays skips converting a Python float per call.
        clip = contract.obs_clip
        self._obs_lo, self._obs_hi = (None, None) if clip is None else (np.full(self.dim, b) for b in clip)
        self._fast = _FastPath.of(self)

    def reset(self) -> None:
        """Forget every term's history."""
        self._history = [None] * len(self._terms)

    def build(self, state: PolicyState) -> np.ndarray:
        """The observation vector (float32, ``[dim]``) for ``state``; advances the histories.

        Raises ``ObservationError`` (histories untouched) if an input is missing or not finite.
        """
        return self._finish(self._step(state))

    def _step(self, state: PolicyState) -> np.ndarray:
        """Every term of ``state`` computed and checked, concatenated (float64, before clip and scale)."""
        values = []
        for term, compute in self._terms:
            value = np.asarray(compute(state, term.options), dtype=np.float64)
            if value.shape != (term.dim,):
                raise ObservationError(f"term {term.name} produced shape {list(value.shape)}, expected [{term.dim}]")
            values.append(value)
        step = np.concatenate(values)
        if not np.isfinite(step).all():  # before clipping: an inf must not pass clipped
            for (term, _), value in zip(self._terms, values, strict=True):
                if not np.isfinite(value).all():
                    newest = term.labels[-term.dim :]
                    bad = [newest[i] for i in np.flatnonzero(~np.isfinite(value))[:6]]
                    raise ObservationError(f"observation is not finite at {', '.join(bad)}; check the inputs")
        return step

    def observe(
        self,
        state: RobotState,
        command: VelocityCommand | None = None,
        height_scan: HeightScan | None = None,
        last_action: np.ndarray | None = None,
    ) -> np.ndarray:
        """``build(decode(state, command, height_scan, last_action))``: the same vector, histories and
        errors. With built-in terms only, a well-formed state in a joint order already seen goes
        from the message bytes to the vector without the per-term calls; anything else takes
        ``build(decode(...))``."""
        obs = np.empty(self.dim, dtype=np.float32)
        self.observe_into(obs, state, command, height_scan, last_action)
        return obs

    def observe_into(
        self,
        out: np.ndarray,
        state: RobotState,
        command: VelocityCommand | None = None,
        height_scan: HeightScan | None = None,
        last_action: np.ndarray | None = None,
    ) -> None:
        """``observe`` written into ``out`` (float32 ``[dim]``, e.g. the network's input buffer); on an
        error ``out`` may hold anything."""
        fast = self._fast
        if fast is not None and fast.observe_into(out, state, command, height_scan, last_action):
            return
        self._finish_into(self._step(self.decode(state, command, height_scan, last_action)), out)
        if fast is not None:
            fast.learn(self.decode)

    def _finish(self, step: np.ndarray) -> np.ndarray:
        """Clip, scale, history and the global clip of one step of finite term values (float64,
        terms concatenated; modified in place): the observation, float32."""
        obs = np.empty(self.dim, dtype=np.float32)
        self._finish_into(step, obs)
        return obs

    def _finish_into(self, step: np.ndarray, out: np.ndarray) -> None:
        """``_finish`` written into ``out`` (float32 ``[dim]``)."""
        if self._clipped:
            np.maximum(step, self._clip_lo, out=step)
            np.minimum(step, self._clip_hi, out=step)
        if self._scaled:
            np.multiply(step, self._scale, out=step)
        if self._histories:
            offset, start = 0, 0
            for i, (term, _) in enumerate(self._terms):
                value = step[start : start + term.dim]
                start += term.dim
                if term.history == 1:
                    self._obs[offset : offset + term.dim] = value
                else:
                    buffer = self._history[i]
                    if buffer is None:
                        buffer = self._history[i] = np.tile(value, (term.history, 1))
                    else:
                        buffer[:-1] = buffer[1:]
                        buffer[-1] = value
                    self._obs[offset : offset + term.size] = buffer.reshape(-1)
                offset += term.size
            obs = self._obs  # every element rewritten above: the global clip may work in place
        else:
            obs = step  # one step per term: the step is the observation
        if self._obs_lo is not None:  # in float64, in place (a ufunc casting into float32 costs more)
            np.maximum(obs, self._obs_lo, out=obs)
            np.minimum(obs, self._obs_hi, out=obs)
        out[...] = obs  # float64 -> float32, rounded as astype rounds


# Terms the fast path reads straight from the messages: the source of each element of its step.
_JOINT_TERMS = {
    "joint_pos": "position",
    "joint_pos_rel": "position",
    "joint_vel": "velocity",
    "joint_vel_rel": "velocity",
}
_VECTOR_TERMS = ("base_lin_vel", "base_ang_vel", "projected_gravity", "velocity_commands")
_FAST_TERMS = frozenset({*_JOINT_TERMS, *_VECTOR_TERMS, "last_action", "height_scan"})


class _FastPath:
    """``ObservationBuilder.observe`` without ``PolicyState``: for contracts of built-in terms only.

    Per joint order seen valid (``learn``), one gather index maps a source vector — the 3-vectors
    the terms need, the last action, the height scan, then the message's joint positions and
    velocities (as FLOAT64 bytes, ``NamedColumns``) — to the step; ``joint_pos_rel`` subtracts the
    default pose. Source and step are arrays allocated once, per joint order and per builder. Any
    input it does not take as it is (missing, malformed, not finite, another order, dtype or shape)
    returns False: the caller then runs ``build(decode(...))``, whose result or error is the answer.
    """

    @classmethod
    def of(cls, builder: ObservationBuilder) -> _FastPath | None:
        if all(t.name in _FAST_TERMS for t in builder.contract.observations):
            return cls(builder)
        return None

    def __init__(self, builder: ObservationBuilder):
        self.builder = builder
        contract = builder.contract
        self.terms = contract.observations
        self.n = len(contract.joints)
        names = {t.name for t in self.terms}
        self.vectors = tuple(v for v in _VECTOR_TERMS if v in names)  # packed in this order
        self.lin_vel, self.ang_vel, self.gravity, self.commands = (v in names for v in _VECTOR_TERMS)
        self.pack_into = struct.Struct(f"<{3 * len(self.vectors)}d").pack_into
        self.last_action = "last_action" in names
        self.actions = slice(3 * len(self.vectors), 3 * len(self.vectors) + (self.n if self.last_action else 0))
        scan = next((t for t in self.terms if t.name == "height_scan"), None)
        self.scan = None if scan is None else scan.options
        self.scan_size = 0 if scan is None else scan.dim
        if scan is not None:  # what _scan compares, as the term reads its options
            self.scan_shape = list(scan.options["shape"])
            self.scan_offset = scan.options.get("offset")
            self.scan_center = scan.options.get("center", (0.0, 0.0))
        self.cells = slice(self.actions.stop, self.actions.stop + self.scan_size)
        self.fixed = self.cells.stop  # source values before the joints'
        relative = [contract.default_joint_pos if t.name == "joint_pos_rel" else np.zeros(t.dim) for t in self.terms]
        self.sub = np.concatenate(relative).astype(np.float64) if "joint_pos_rel" in names else None
        self.step = np.empty(sum(t.dim for t in self.terms))
        self.joints = NamedColumns(JointState, ("position", "velocity"))

    def learn(self, decoder: StateDecoder) -> None:
        """Remember the joint order of the state ``decoder`` just decoded (it gave a valid observation)."""
        names, index = decoder._names, decoder._index
        if names is None or not self.joints.can_learn(names):
            return
        m = len(names)
        positions = self.fixed
        parts = []
        for term in self.terms:
            if term.name in _JOINT_TERMS:
                parts.append(index + (positions if _JOINT_TERMS[term.name] == "position" else positions + m))
            elif term.name in _VECTOR_TERMS:
                parts.append(3 * self.vectors.index(term.name) + np.arange(3))
            elif term.name == "last_action":
                parts.append(self.actions.start + np.arange(self.n))
            else:  # height_scan, flattened x fastest; ``ordering: yx`` is a transpose
                n_y, n_x = self.scan["shape"]
                cells = np.arange(n_y * n_x).reshape(n_y, n_x)
                parts.append(
                    self.cells.start + (cells.T if self.scan.get("ordering", "xy") == "yx" else cells).reshape(-1)
                )
        source = np.zeros(positions + 2 * m)
        joints = memoryview(source).cast("B")[8 * positions :]  # the joints' bytes go here as they are
        self.joints.learn(names, (np.concatenate(parts).astype(np.intp), source, joints))

    def observe_into(
        self,
        out: np.ndarray,
        state: RobotState,
        command: VelocityCommand | None,
        height_scan: HeightScan | None,
        last_action: np.ndarray | None,
    ) -> bool:
        """Write the observation into ``out``; False (``out`` untouched) for any input this path does
        not take as it is."""
        fast = self.joints.read(state.joints)
        if fast is None:
            return False
        (gather, source, joints), (position, velocity) = fast
        if position is None or velocity is None:
            return False
        imu = state.imu
        o = imu.orientation
        w, x, y, z = o.w, o.x, o.y, o.z
        norm = math.sqrt(w * w + x * x + y * y + z * z)
        if not norm > 1e-6:
            return False
        if self.scan is None and height_scan is not None:
            decode_height_scan(height_scan)  # no term reads it, but decode checks it: the same errors
        values: tuple[float, ...] = ()  # the vector terms as they compute them, in float64, in _VECTOR_TERMS order
        if self.lin_vel:
            if not state.has_base:
                return False
            v = state.base.linear_velocity
            values += (v.x, v.y, v.z)
        if self.ang_vel:
            g = imu.angular_velocity
            values += (g.x, g.y, g.z)
        if self.gravity:
            w, x, y, z = w / norm, x / norm, y / norm, z / norm
            values += (-(2.0 * (x * z - w * y)), -(2.0 * (y * z + w * x)), -(1.0 - 2.0 * (x * x + y * y)))
        if self.commands:
            values += (0.0, 0.0, 0.0) if command is None else (command.vx, command.vy, command.yaw_rate)
        if self.last_action and not self._actions(source, last_action):
            return False
        if self.scan is not None:
            heights = self._scan(height_scan)
            if heights is None:
                return False
            source[self.cells] = heights
        self.pack_into(source, 0, *values)
        size = len(position)
        joints[:size] = position
        joints[size:] = velocity
        step = self.step
        source.take(gather, out=step, mode="clip")  # (indices in range by construction)
        if self.sub is not None:
            np.subtract(step, self.sub, out=step)
        if not _all_finite(step):
            return False
        self.builder._finish_into(step, out)
        return True

    def _actions(self, source: np.ndarray, last_action: np.ndarray | None) -> bool:
        """Put the last action (zeros for None) into ``source``; False if it is not ``[n]``."""
        if last_action is None:
            source[self.actions] = 0.0
            return True
        action = np.asarray(last_action, dtype=np.float64)
        if action.shape != (self.n,):
            return False
        source[self.actions] = action
        return True

    def _scan(self, msg: HeightScan | None) -> np.ndarray | None:
        """The scan's cells (FLOAT32 or FLOAT64, as stored) if it fits the term's grid, offset and centre."""
        if msg is None:
            return None
        heights = msg.heights
        dtype = _SCAN_DTYPES.get(heights.dtype)
        if dtype is None or heights.shape != self.scan_shape:  # (a repeated field equals a list of its values)
            return None
        data, offset = heights.data, self.scan_offset
        if len(data) != self.scan_size * dtype.itemsize:
            return None
        if offset is not None and abs(msg.offset - offset) > 1e-6:
            return None
        cx, cy = self.scan_center
        if abs(msg.center_x - cx) > 1e-6 or abs(msg.center_y - cy) > 1e-6:
            return None
        return np.frombuffer(data, dtype=dtype)


def _all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite, without a NumPy warning: a short vector's sum in Python floats (finite
    only if every value is; an overflow merely says False), a long one's ``isfinite`` reduced by
    ``logical_and`` (no ``ndarray.all`` wrapper), each the cheaper. (A dot product with zeros would be
    cheaper still, but an inf in it raises NumPy's invalid-value warning.)"""
    if values.size <= 96:
        return math.isfinite(sum(values.tolist()))
    return bool(_all_true(np.isfinite(values)))


_all_true = np.logical_and.reduce
_SCAN_DTYPES = {int(DType.FLOAT32): np.dtype("<f4"), int(DType.FLOAT64): np.dtype("<f8")}
