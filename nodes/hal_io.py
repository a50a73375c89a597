"""What every HAL reads and writes, in one place: a measured robot snapshot → ``RobotState``, and a
``JointCommand`` → validated joint targets (``CommandParser``, the one meaning of a command).
Simulator and real-robot HALs and the safety node share this code, so a policy sees the same message
whichever HAL produced it, and a command the safety node forwards is one every HAL accepts.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from krabgraph.msgs import ArrayError, JointCommand, RobotState, set_array, to_numpy
from krabgraph.msgs.arrays import NamedColumns

if TYPE_CHECKING:
    from krabgraph.nodes.robots import RobotDescription


@dataclass(frozen=True, eq=False)
class RobotSnapshot:
    """One reading of a robot. Per-joint arrays follow ``joint_names``; base fields are ground truth
    (None on a real robot without an estimator)."""

    time: float  # s (simulated time, or the robot's clock)
    joint_names: tuple[str, ...]
    q: np.ndarray  # rad
    qd: np.ndarray  # rad/s
    tau: np.ndarray  # N·m, applied (simulator) or measured (robot)
    imu_quat: np.ndarray  # IMU orientation in the world, wxyz
    imu_gyro: np.ndarray  # rad/s, IMU frame
    imu_accel: np.ndarray | None  # m/s², IMU frame, includes the gravity reaction (+9.81 z at rest)
    foot_names: tuple[str, ...]
    foot_contact: np.ndarray  # bool per foot
    foot_force: np.ndarray  # N, [n_feet, 3], world frame, force of the ground on the foot
    base_pos: np.ndarray | None = None  # m, world
    base_quat: np.ndarray | None = None  # wxyz, world
    base_lin_vel: np.ndarray | None = None  # m/s, body frame
    base_ang_vel: np.ndarray | None = None  # rad/s, body frame
    base_lin_vel_world: np.ndarray | None = None  # m/s, world frame

    @property
    def has_base(self) -> bool:
        return self.base_pos is not None


def fill_robot_state(msg: RobotState, snap: RobotSnapshot, stamp_ns: int, frame_id: str = "base") -> RobotState:
    """Fill ``msg`` (in place; returned) from ``snap``: FLOAT64 arrays, ``stamp_ns`` in every header."""
    headers = [msg.header, msg.joints.header, msg.imu.header, msg.contacts.header]
    if snap.has_base:  # without ground truth the base field stays unset
        headers.append(msg.base.header)
    for header in headers:
        header.stamp_ns = stamp_ns
        header.frame_id = frame_id
    j = msg.joints
    del j.name[:]
    j.name.extend(snap.joint_names)
    set_array(j.position, snap.q, np.float64)
    set_array(j.velocity, snap.qd, np.float64)
    set_array(j.effort, snap.tau, np.float64)
    _set_quat(msg.imu.orientation, snap.imu_quat)
    _set_vec(msg.imu.angular_velocity, snap.imu_gyro)
    if snap.imu_accel is not None:
        _set_vec(msg.imu.linear_acceleration, snap.imu_accel)
    c = msg.contacts
    del c.name[:], c.in_contact[:]
    c.name.extend(snap.foot_names)
    c.in_contact.extend(bool(v) for v in snap.foot_contact)
    set_array(c.force, np.asarray(snap.foot_force).reshape(-1, 3), np.float64)
    msg.has_base = snap.has_base
    if snap.has_base:
        base = msg.base
        base.header.frame_id = "world"
        _set_vec(base.position, snap.base_pos)
        _set_quat(base.orientation, snap.base_quat)
        _set_vec(base.linear_velocity, snap.base_lin_vel)
        _set_vec(base.angular_velocity, snap.base_ang_vel)
        _set_vec(base.linear_velocity_world, snap.base_lin_vel_world)
    return msg


def _set_vec(field, v: np.ndarray) -> None:
    field.x, field.y, field.z = (float(x) for x in v)


def _set_quat(field, q: np.ndarray) -> None:
    field.w, field.x, field.y, field.z = (float(x) for x in q)


def few(names: Sequence[str], limit: int = 8) -> str:
    """``names`` for an error message: the first ``limit`` (each cut to 64 characters), then how many more."""
    shown = [n if len(n) <= 64 else n[:61] + "..." for n in names[:limit]]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"{shown}{more}"


def _or(value: bytes | None, default: bytes) -> bytes:
    return default if value is None else value


class CommandError(ValueError):
    """A joint command no HAL applies; the message names the problem and how to fix it.

    ``kind`` groups messages for counting and rate-limited logging: "joint names", "malformed
    array", "non-finite value" or "negative gain".
    """

    def __init__(self, message: str, kind: str = "joint names"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, eq=False)
class JointTargets:
    """A validated ``JointCommand``: one FLOAT64 value per joint of the robot, in its description order.

    Empty velocity/effort/kp/kd of the command are filled in (0, 0, the description's gains);
    ``gains_given`` says whether the command carried kp or kd.
    """

    position: np.ndarray  # rad
    velocity: np.ndarray  # rad/s
    effort: np.ndarray  # N·m feed-forward
    kp: np.ndarray  # N·m/rad
    kd: np.ndarray  # N·m·s/rad
    gains_given: bool = False


ArrayLike = Sequence[float] | np.ndarray | None
COLUMNS = ("position", "velocity", "effort", "kp", "kd")  # the per-joint arrays of a JointCommand
_FILLS = {"velocity": "0", "effort": "0", "kp": "the description's gains", "kd": "the description's gains"}


class CommandParser:
    """The one meaning of a ``JointCommand``, for one robot.

    Every joint of the robot exactly once, by name, in any order; ``position`` required; empty
    velocity, effort, kp and kd arrays mean 0, 0 and the description's gains. Unknown, missing or
    repeated joints, wrong lengths, non-finite values and negative gains raise one ``CommandError``
    naming the first problem and how to fix it.
    """

    def __init__(self, joint_names: Sequence[str], kp: np.ndarray, kd: np.ndarray, robot: str = "the robot"):
        self.joint_names = tuple(joint_names)
        self.n = len(self.joint_names)
        self.robot = robot
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._cache: dict[tuple[str, ...], np.ndarray] = {}  # name order -> description index
        self._defaults = {
            "velocity": np.zeros(self.n),
            "effort": np.zeros(self.n),
            "kp": np.broadcast_to(np.asarray(kp, dtype=np.float64), (self.n,)).copy(),
            "kd": np.broadcast_to(np.asarray(kd, dtype=np.float64), (self.n,)).copy(),
        }
        # The fast path: per name order seen valid (``_columns_checked`` learns them), the gather to
        # description order and the default columns as FLOAT64 bytes in that order.
        self._wire = NamedColumns(JointCommand, COLUMNS)
        self._unpack = struct.Struct(f"<{5 * self.n}d").unpack
        self._gains = slice(3 * self.n, None)  # kp and kd: the last two of the five columns

    @classmethod
    def for_robot(cls, robot: RobotDescription) -> CommandParser:
        """The parser of a robot description: its joints and gains."""
        return cls(robot.joint_names, robot.kp, robot.kd, robot.name)

    def parse(self, msg: JointCommand) -> JointTargets:
        """Validate ``msg``; raise ``CommandError`` on the first problem."""
        values, gains_given = self.columns(msg)
        # rows by index: unpacking the array iterates it, 2x the cost
        return JointTargets(values[0], values[1], values[2], values[3], values[4], gains_given)

    def columns(self, msg: JointCommand) -> tuple[np.ndarray, bool]:
        """``parse`` as one new FLOAT64 array ``[5, n]``, rows ``COLUMNS`` in description order, and
        whether the command carried kp or kd; raise ``CommandError`` on the first problem."""
        fast = self._wire.read(msg)  # a learned name order, every present column FLOAT64 [n]
        if fast is not None and fast[1][0] is not None:  # (no position: the checked path says so)
            (gather, defaults), chunks = fast
            gains_given = chunks[3] is not None or chunks[4] is not None
            if None in chunks:
                chunks = map(_or, chunks, defaults)
            flat = bytearray().join(chunks)  # writable: the result is the caller's to change
            values = self._unpack(flat)
            # The sum is finite only if every value is (Python floats: no NumPy warning on inf or NaN;
            # an overflow merely takes the checked path); the gains are the last two rows.
            if math.isfinite(sum(values)) and min(values[self._gains]) >= 0:
                columns = np.frombuffer(flat, dtype=np.float64).reshape(5, self.n)
                return (columns if gather is None else columns.take(gather, 1)), gains_given
        return self._columns_checked(msg)

    def _columns_checked(self, msg: JointCommand) -> tuple[np.ndarray, bool]:
        """Every check, one column at a time: the reference the fast path must agree with. A valid
        command's name order is remembered for the fast path."""
        columns = {}
        for key in COLUMNS:
            try:
                columns[key] = to_numpy(getattr(msg, key))
            except (ArrayError, ValueError, TypeError) as exc:
                raise CommandError(f"{key}: {exc}", "malformed array") from None
        names = tuple(msg.name)
        t = self.check(names, **columns)
        if self._wire.can_learn(names):
            idx = self._cache[names]  # message position -> description index, a permutation
            gather = np.empty(self.n, dtype=np.intp)
            gather[idx] = np.arange(self.n)
            defaults = tuple(self._defaults[k][idx].tobytes() if k in self._defaults else b"" for k in COLUMNS)
            identity = bool((gather == np.arange(self.n)).all())  # description order: no reordering
            self._wire.learn(names, (None if identity else gather, defaults))
        return np.stack([t.position, t.velocity, t.effort, t.kp, t.kd]), t.gains_given

    def check(
        self,
        names: Sequence[str],
        position: ArrayLike,
        velocity: ArrayLike = None,
        effort: ArrayLike = None,
        kp: ArrayLike = None,
        kd: ArrayLike = None,
    ) -> JointTargets:
        """Validate a command given as arrays (None or empty = not given); raise ``CommandError``."""
        names = tuple(names)
        idx = self._cache.get(names)
        if idx is None:
            idx = self._indices(names)
        given = {"position": position, "velocity": velocity, "effort": effort, "kp": kp, "kd": kd}
        out: dict[str, np.ndarray] = {}
        for key, values in given.items():
            arr = np.zeros(0) if values is None else np.asarray(values, dtype=np.float64).reshape(-1)
            if arr.size == 0 and key != "position":
                out[key] = self._defaults[key].copy()
                continue
            if arr.size != self.n:
                fill = f"; or leave it empty for {_FILLS[key]}" if key in _FILLS else ""
                raise CommandError(
                    f"{key}: expected {self.n} values (one per joint, in the order of `name`), got {arr.size}{fill}",
                    "malformed array",
                )
            finite = np.isfinite(arr)
            if not finite.all():
                j = int(np.argmin(finite))
                raise CommandError(f"{key} of {names[j]} is {arr[j]}; values must be finite", "non-finite value")
            column = np.empty(self.n)
            column[idx] = arr
            out[key] = column
        for key in ("kp", "kd"):
            if (out[key] < 0).any():
                j = int(np.argmax(out[key] < 0))
                raise CommandError(
                    f"{key} of {self.joint_names[j]} is {out[key][j]}; gains must be >= 0", "negative gain"
                )
        gains_given = any(g is not None and np.size(g) > 0 for g in (kp, kd))
        return JointTargets(**out, gains_given=gains_given)

    def _indices(self, names: tuple[str, ...]) -> np.ndarray:
        """Description index per name if ``names`` is every joint exactly once (cached); else ``CommandError``."""
        fix = f"commands must name every joint of {self.robot!r} exactly once"
        if not names:
            raise CommandError(f"no joint names; {fix} ({', '.join(self.joint_names)})")
        given = set(names)
        if len(given) != len(names):  # one pass (a hostile command may name a joint a million times)
            repeated = sorted(n for n, k in Counter(names).items() if k > 1)
            raise CommandError(f"repeated joint(s) {few(repeated)}; {fix}")
        unknown = [n for n in names if n not in self._index]
        missing = [n for n in self.joint_names if n not in given]
        if unknown or missing:
            problems = [f"unknown joint(s) {few(unknown)}"] if unknown else []
            problems += [f"missing joint(s) {missing}"] if missing else []
            raise CommandError(f"{', '.join(problems)}; {fix}")
        idx = self._cache[names] = np.array([self._index[n] for n in names], dtype=np.intp)
        return idx
