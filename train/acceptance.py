"""Sim-to-sim acceptance of a policy bundle, measured through its robot's graph in MuJoCo.

Every row builds the robot's graph (``PROFILES``: ``graphs/walk.yaml`` for the Go2,
``graphs/anymal_stairs.yaml`` for ANYmal-D; MuJoCo HAL at its physics rate → policy → safety → HAL)
with the bundle, a terrain, a seed and a command schedule as ``--set`` overrides, runs it lockstep
(``clock: sim``) as fast as possible, and reads ground truth from an independent probe node on
``hal/state`` (``RobotState.base``) and ``safety/status``. Contracts with a ``height_scan`` term get
``policy.inputs.height_scan = hal/height_scan``. Rows (commands in m/s and rad/s):

- ``flat``: vx 0.5, vx 1.0, vx -0.5, vy 0.3, yaw rate 1.0, one run each: 2 s stand, 9 s of the
  command; the mean of the tracked quantity (body frame) over the last 5 s is within 0.1.
- ``drift``: vx 1.0 with zero yaw command; |yaw(15 s) - yaw(5 s)| / 10 s <= 0.05 rad/s.
- ``stairs``: risers of the robot's profile (Go2 10 cm, ANYmal-D 15 cm; flights up and down, tread
  0.25-0.35 m and start offset drawn from the seed) and ``boxes``: a random box field up to the same
  height, at vx 0.5, seeds 0-4: no fall for 20 s from the moment the base is over the terrain. A
  fall (the robot description's ``fall:``): base below its minimum height above the ground under
  it (Go2 0.15 m, ANYmal-D 0.30 m), |roll| or |pitch| beyond its limit, or the safety node leaving
  ACTIVE. On these rows the command steers
  back to the line y = 0 as an operator would (yaw rate <= 0.5 rad/s), so the window stays on the
  terrain; the fraction of the window over it is reported (and must be >= 0.95).
- ``push``: walking at vx 0.5 on flat ground, a push along world y for 0.1 s at t = 7 s (Go2
  30 N·s; ANYmal-D the same 2 m/s change of velocity, 114 N·s); no fall in the following 5 s.

``python -m krabgraph.train.acceptance --bundle go2_walk [--rows all|flat,drift,...] [--output FILE.md]``
prints a markdown table (``render_markdown``). The runtime environment suffices (MuJoCo,
onnxruntime); no training framework is imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.launch import Executor, Input, KrabgraphError, Node, Param, build_graph, load_graph
from krabgraph.launch.graph.declaration import GraphDecl, NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.msgs import RobotState, SafetyStatus, VelocityCommand
from krabgraph.nodes.command import ScriptedVelocity
from krabgraph.nodes.mujoco.terrain import Terrain, make_terrain
from krabgraph.nodes.policy.contract import load_contract
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.rotations import roll_pitch, yaw_of
from krabgraph.train.config import get_task

STAND_S = 2.0  # s of zero command at the start: the safety node's soft start
GO2 = load_robot("go2")
FALL_HEIGHT = GO2.fall_min_base_height  # m: base this close to the ground under it is a Go2 fall (go2.yaml)
FALL_ATTITUDE = GO2.fall_max_tilt  # rad: |roll| or |pitch| beyond this is a Go2 fall (go2.yaml)
TRACKING_TOLERANCE = 0.1  # m/s or rad/s
DRIFT_LIMIT = 0.05  # rad/s
TERRAIN_WINDOW_S = 20.0
TERRAIN_SPEED = 0.5  # m/s
MIN_ON_TERRAIN = 0.95  # fraction of the terrain window the base must spend over the terrain
SEEDS = (0, 1, 2, 3, 4)
PUSH_AT_S = 7.0
PUSH_DURATION_S = 0.1
PUSH_WATCH_S = 5.0

# name -> (vx, vy, yaw rate, index of the tracked quantity in (vx, vy, yaw rate))
FLAT_PHASES: dict[str, tuple[float, float, float, int]] = {
    "forward 0.5": (0.5, 0.0, 0.0, 0),
    "forward 1.0": (1.0, 0.0, 0.0, 0),
    "backward 0.5": (-0.5, 0.0, 0.0, 0),
    "lateral 0.3": (0.0, 0.3, 0.0, 1),
    "yaw 1.0": (0.0, 0.0, 1.0, 2),
}
FLAT_PHASE_S = 9.0  # command duration after the stand
FLAT_MEASURE_S = 5.0  # the mean is taken over the last seconds of the phase
DRIFT_SPEED, DRIFT_SETTLE_S, DRIFT_MEASURE_S = 1.0, 3.0, 10.0

# The terrain rows' generator parameters (nodes/mujoco/terrain.py).
STAIRS_PARAMS: dict[str, Any] = dict(
    step_height=0.10,
    step_count=4,
    step_width_range=[0.25, 0.35],
    landing=1.0,
    gap=0.5,
    width=4.0,
    start=1.0,
    start_jitter=0.5,
    length=12.0,
)
BOXES_PARAMS: dict[str, Any] = dict(max_height=0.10, cell=0.4, size=28.0)
ROW_NAMES = ("flat", "drift", "stairs", "boxes", "push")


@dataclass(frozen=True)
class RobotProfile:
    """How bundles of one robot are measured: the graph they run in and the rows' robot-sized figures."""

    graph: str  # graphs/<graph>.yaml: the robot's MuJoCo HAL, policy and safety nodes
    riser: float  # m: stairs risers and the box field's largest box
    push_impulse: tuple[float, float, float]  # N·s, world frame


PROFILES = {
    "go2": RobotProfile("walk", 0.10, (0.0, 30.0, 0.0)),  # 15.2 kg: a 2 m/s change of velocity
    "anymal_d": RobotProfile("anymal_stairs", 0.15, (0.0, 114.0, 0.0)),  # 57.0 kg: the same 2 m/s
}


def profile(bundle: str) -> RobotProfile:
    """The profile of the bundle's robot (``PROFILES``)."""
    robot = load_contract(bundle).robot
    try:
        return PROFILES[robot]
    except KeyError:
        raise ValueError(f"bundle {bundle!r} is for robot {robot!r}; acceptance knows {', '.join(PROFILES)}") from None


def terrain_spec(row: str, riser: float = 0.10) -> tuple[str, dict[str, Any], str]:
    """(terrain kind, generator parameters, label) of the ``stairs`` or ``boxes`` row for ``riser`` m."""
    cm = f"{riser * 100:g} cm"
    if row == "stairs":
        return "stairs", STAIRS_PARAMS | {"step_height": riser}, f"{cm} risers"
    return "steps", BOXES_PARAMS | {"max_height": riser}, f"boxes <= {cm}"


class AcceptanceError(RuntimeError):
    """A run could not be measured (the graph failed to start or a node raised)."""


@dataclass(frozen=True)
class Row:
    """One line of the acceptance table. ``value`` is the figure behind ``measured`` (NaN if none);
    ``window`` the graph-time span (s) of the samples it was measured on."""

    name: str
    command: str
    measured: str
    target: str
    passed: bool
    notes: str = ""
    value: float = math.nan
    window: tuple[float, float] | None = None
    wall_s: float = 0.0  # wall-clock time of the run(s) behind the row


# -- graph nodes ---------------------------------------------------------------------------------
class SteeredSchedule(ScriptedVelocity):
    """``scripted_velocity`` that steers while the schedule moves forward, as an operator keeping the
    robot on a course would: yaw rate += clip(``steer_gain`` · (heading* - yaw), ±``steer_max``) from
    the ground-truth base pose, with heading* = atan2(-y, ``steer_lookahead``) (back to the line
    y = 0) or, with ``steer_line`` false, heading* = 0 (hold the heading only)."""

    steer_gain = Param(float, 1.0, "yaw rate per rad of heading error", unit="1/s", ge=0)
    steer_lookahead = Param(float, 1.0, "aim at the line y = 0 this far ahead", unit="m", gt=0)
    steer_max = Param(float, 0.5, "largest steering yaw rate", unit="rad/s", ge=0)
    steer_line = Param(bool, True, "steer back to the line y = 0; false: hold heading 0 only")
    state = Input(RobotState, required=False, doc="ground-truth base pose")

    def tick(self) -> None:
        vx, vy, wz = self.command_at((self.now_ns() - self.t0_ns) * 1e-9)
        m = self.state.latest
        if vx > 0 and m is not None and m.has_base:
            o, p = m.base.orientation, m.base.position
            aim = math.atan2(-p.y, self.steer_lookahead) if self.steer_line else 0.0
            error = math.remainder(aim - yaw_of(o.w, o.x, o.y, o.z), math.tau)
            wz += min(self.steer_max, max(-self.steer_max, self.steer_gain * error))
        self.cmd_vel.publish(VelocityCommand(vx=vx, vy=vy, yaw_rate=wz, source="schedule+steering"))


class GroundTruthProbe(Node):
    """Records the ground-truth base state and the safety mode; stops the graph on a fall (attitude
    or safety) or once the base has spent ``window_s`` since first reaching x >= ``course_x``.
    Safety modes from ``end_s`` on (the graph's stop deactivates the safety node) are not falls."""

    kind = "recorder"
    course_x = Param(float, -1.0, "x where the measured window begins; < 0 = no course", unit="m")
    window_s = Param(float, 0.0, "stop this long after reaching course_x; 0 = never", unit="s", ge=0)
    stop_on_fall = Param(bool, True, "stop the graph at an attitude or safety fall")
    end_s = Param(float, 0.0, "graph time the run stops at; 0 = not known", unit="s", ge=0)
    max_tilt = Param(float, FALL_ATTITUDE, "|roll| or |pitch| beyond this is a fall", unit="rad", gt=0)

    state = Input(RobotState, queue=8)
    safety = Input(SafetyStatus, queue=32)

    def on_configure(self) -> None:
        self.rows: list[tuple[float, ...]] = []
        self.modes: list[tuple[float, int]] = []
        self.was_active = False
        self.fault_t: float | None = None  # graph time of the first attitude or safety fall
        self.fault = ""
        self.enter_t: float | None = None
        self.stopping = False

    def on_state(self, m: RobotState) -> None:
        if not m.has_base:
            return
        b = m.base
        t = m.header.stamp_ns * 1e-9
        p, o, v, w = b.position, b.orientation, b.linear_velocity, b.angular_velocity
        self.rows.append((t, p.x, p.y, p.z, o.w, o.x, o.y, o.z, v.x, v.y, v.z, w.x, w.y, w.z))
        roll, pitch = roll_pitch(o.w, o.x, o.y, o.z)
        if self.fault_t is None and max(abs(roll), abs(pitch)) > self.max_tilt:
            self._fall(t, f"attitude roll {roll:+.2f} pitch {pitch:+.2f} rad")
        if self.course_x >= 0 and self.enter_t is None and p.x >= self.course_x:
            self.enter_t = t
        if self.enter_t is not None and self.window_s > 0 and t - self.enter_t >= self.window_s:
            self._finish()

    def on_safety(self, m: SafetyStatus) -> None:
        t = self.now_ns() * 1e-9
        self.modes.append((t, m.mode))
        if m.mode == SafetyStatus.Mode.ACTIVE:
            self.was_active = True
        elif self.was_active and self.fault_t is None and not self.stopping and not (0 < self.end_s <= t):
            self._fall(t, f"safety {SafetyStatus.Mode.Name(m.mode)}: {m.reason}")

    def _fall(self, t: float, why: str) -> None:
        self.fault_t, self.fault = t, why
        if self.stop_on_fall:
            self._finish()

    def _finish(self) -> None:
        self.stopping = True
        self.request_stop()


# -- one run -------------------------------------------------------------------------------------
@dataclass
class Trace:
    """Ground truth at the HAL's control rate (graph time t, s) plus what the probe saw."""

    t: np.ndarray
    pos: np.ndarray  # [n, 3] m, world
    quat: np.ndarray  # [n, 4] wxyz, world
    lin_vel: np.ndarray  # [n, 3] m/s, body frame
    ang_vel: np.ndarray  # [n, 3] rad/s, body frame
    terrain: Terrain
    modes: list[tuple[float, int]] = field(default_factory=list)
    fault_t: float | None = None  # attitude or safety fall
    fault: str = ""
    enter_t: float | None = None  # when the base first reached the course
    wall_s: float = 0.0
    fall_height: float = FALL_HEIGHT  # m: the robot's fall height above the ground under the base

    @cached_property
    def yaw(self) -> np.ndarray:
        """Unwrapped yaw (rad)."""
        w, x, y, z = self.quat.T
        return np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    @property
    def roll(self) -> np.ndarray:
        w, x, y, z = self.quat.T
        return np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))

    @property
    def pitch(self) -> np.ndarray:
        w, x, y, z = self.quat.T
        return np.arcsin(np.clip(2 * (w * y - z * x), -1, 1))

    @cached_property
    def height(self) -> np.ndarray:
        """Base height above the ground under it (m)."""
        return self.pos[:, 2] - np.asarray(self.terrain.height_at(self.pos[:, 0], self.pos[:, 1]))

    def mask(self, t0: float, t1: float) -> np.ndarray:
        return (self.t >= t0) & (self.t < t1)

    def fall_time(self, after: float = STAND_S) -> tuple[float | None, str]:
        """First fall after ``after`` (s): the probe's attitude/safety fall or the base too low."""
        low = np.flatnonzero((self.t >= after) & (self.height < self.fall_height))
        t_low = float(self.t[low[0]]) if low.size else None
        candidates = [(t, why) for t, why in ((self.fault_t, self.fault), (t_low, "base low")) if t is not None]
        return min(candidates) if candidates else (None, "")


def needs_height_scan(bundle: str) -> bool:
    """Whether the bundle's contract has a ``height_scan`` observation term."""
    return any(term.name == "height_scan" for term in load_contract(bundle).observations)


def scan_center(bundle: str) -> list[float]:
    """The height-scan grid centre (m, base yaw frame) the bundle's contract expects; [0, 0] without a scan."""
    for term in load_contract(bundle).observations:
        if term.name == "height_scan":
            return [float(v) for v in term.options.get("center", (0.0, 0.0))]
    return [0.0, 0.0]


def graph_sets(
    bundle: str,
    schedule: Sequence[Sequence[float]],
    *,
    terrain: str = "flat",
    terrain_params: dict[str, Any] | None = None,
    seed: int = 0,
    push: tuple[float, Sequence[float], float] | None = None,
) -> list[str]:
    """The ``--set`` overrides of the robot's graph for a run (valid on the command line too)."""
    sets = [
        f"policy.bundle={bundle}",
        f"hal.terrain={terrain}",
        f"hal.seed={seed}",
        "hal.status_period_s=0",
        f"command.schedule={json.dumps([list(map(float, p)) for p in schedule])}",
        f"hal.scan_center={json.dumps(scan_center(bundle))}",
    ]
    sets.append(f"hal.terrain_params={json.dumps(terrain_params or {})}")  # replaces the graph's own
    if terrain == "parkour":  # the fall as go2_parkour was trained with: hurdles and edges pass under the base
        sets.append(f"safety.ground_span={get_task('go2_parkour').terrain.fall_ground_span}")
    if push is not None:
        at, impulse, duration = push
        sets += [
            f"hal.push_at_s={at}",
            f"hal.push_impulse={json.dumps(list(impulse))}",
            f"hal.push_duration_s={duration}",
        ]
    return sets


def acceptance_graph(
    bundle: str,
    schedule: Sequence[Sequence[float]],
    duration_s: float,
    *,
    terrain: str = "flat",
    terrain_params: dict[str, Any] | None = None,
    seed: int = 0,
    push: tuple[float, Sequence[float], float] | None = None,
    steer: str = "",
    course_x: float = -1.0,
    window_s: float = 0.0,
    stop_on_fall: bool = True,
) -> GraphDecl:
    """The robot's graph lockstep with a run's overrides (``graph_sets``), the height scan wired to
    the policy if its contract reads one, and the probe. ``schedule``: phases ``[duration_s, vx, vy,
    yaw_rate]``; ``push``: (time s, impulse N·s world, duration s); ``steer``: ``"line"`` (back to
    y = 0) or ``"heading"`` (hold heading 0) with ``SteeredSchedule``, ``""`` for the plain schedule."""
    if steer not in ("", "line", "heading"):
        raise ValueError(f"steer must be '', 'line' or 'heading', got {steer!r}")
    sets = graph_sets(bundle, schedule, terrain=terrain, terrain_params=terrain_params, seed=seed, push=push)
    decl = load_graph(profile(bundle).graph, clock="sim", sets=sets)
    here = {"node": Loc("krabgraph.train.acceptance")}
    if steer:
        command = decl.nodes["command"]
        command.class_ref, command.locs["class"] = SteeredSchedule, here["node"]
        command.inputs["state"] = "hal/state"
        command.params["steer_line"] = steer == "line"
    if needs_height_scan(bundle):
        decl.nodes["policy"].inputs["height_scan"] = "hal/height_scan"
    else:  # a blind bundle (go2_walk) in walk.yaml, whose go2_rough reads the scan
        decl.nodes["policy"].inputs.pop("height_scan", None)
    robot = load_robot(load_contract(bundle).robot)
    probe = dict(
        course_x=course_x, window_s=window_s, stop_on_fall=stop_on_fall, end_s=duration_s, max_tilt=robot.fall_max_tilt
    )
    decl.nodes["probe"] = NodeDecl(
        "probe", GroundTruthProbe, params=probe, inputs={"state": "hal/state", "safety": "safety/status"}, locs=here
    )
    return decl


def simulate(
    bundle: str,
    schedule: Sequence[Sequence[float]],
    duration_s: float,
    *,
    terrain: str = "flat",
    terrain_params: dict[str, Any] | None = None,
    seed: int = 0,
    **options: Any,
) -> Trace:
    """Run ``acceptance_graph`` (same arguments) for ``duration_s`` of graph time, or until the probe
    stops it, and return the ground truth."""
    decl = acceptance_graph(
        bundle, schedule, duration_s, terrain=terrain, terrain_params=terrain_params, seed=seed, **options
    )
    wall = time.monotonic()
    ex = Executor(build_graph(decl))
    rc = ex.run(duration_s=duration_s, handle_signals=False)
    if rc != 0 or ex.failures:
        details = "; ".join(f"{node} in {where}" for node, where, _ in ex.failures) or f"exit code {rc}"
        raise AcceptanceError(f"bundle {bundle!r}, terrain {terrain!r}, seed {seed}: the graph failed ({details})")
    p: GroundTruthProbe = ex.nodes["probe"]
    rows = np.array(p.rows, dtype=np.float64).reshape(-1, 14)
    return Trace(
        t=rows[:, 0],
        pos=rows[:, 1:4],
        quat=rows[:, 4:8],
        lin_vel=rows[:, 8:11],
        ang_vel=rows[:, 11:14],
        terrain=make_terrain(terrain, seed=seed, **(terrain_params or {})),
        modes=list(p.modes),
        fault_t=p.fault_t,
        fault=p.fault,
        enter_t=p.enter_t,
        wall_s=time.monotonic() - wall,
        fall_height=load_robot(load_contract(bundle).robot).fall_min_base_height,
    )


# -- rows ----------------------------------------------------------------------------------------
def _fmt_cmd(vx: float, vy: float, wz: float) -> str:
    parts = [f"{k} {v:g}" for k, v in (("vx", vx), ("vy", vy), ("yaw rate", wz)) if v]
    return ", ".join(parts) or "stand"


def flat_row(bundle: str, phase: str) -> Row:
    """One flat-ground tracking row (``FLAT_PHASES``): mean over the last 5 s of a 9 s phase."""
    vx, vy, wz, k = FLAT_PHASES[phase]
    end = STAND_S + FLAT_PHASE_S
    tr = simulate(bundle, [[STAND_S, 0, 0, 0], [FLAT_PHASE_S, vx, vy, wz]], end)
    sel = tr.mask(end - FLAT_MEASURE_S, end + 1e-9)
    tracked = np.column_stack([tr.lin_vel[:, 0], tr.lin_vel[:, 1], tr.ang_vel[:, 2]])[sel, k]
    target = (vx, vy, wz)[k]
    mean = float(tracked.mean()) if tracked.size else math.nan
    fell, why = tr.fall_time()
    unit = "rad/s" if k == 2 else "m/s"
    quantity = ("vx", "vy", "yaw rate")[k]
    ok = bool(fell is None and abs(mean - target) <= TRACKING_TOLERANCE)
    others = np.column_stack([tr.lin_vel[:, 0], tr.lin_vel[:, 1], tr.ang_vel[:, 2]])[sel].mean(axis=0)
    notes = f"mean (vx, vy, yaw rate) = ({others[0]:.2f}, {others[1]:.2f}, {others[2]:.2f})"
    if fell is not None:
        notes += f"; fell at {fell:.1f} s ({why})"
    return Row(
        f"flat {phase}",
        _fmt_cmd(vx, vy, wz),
        f"{quantity} {mean:.2f} {unit}",
        f"{target:g} ± {TRACKING_TOLERANCE:g} {unit}",
        ok,
        notes,
        mean,
        _span(tr.t[sel]),
        tr.wall_s,
    )


def flat_rows(bundle: str) -> list[Row]:
    return [flat_row(bundle, phase) for phase in FLAT_PHASES]


def drift_rows(bundle: str) -> list[Row]:
    """Heading drift at zero yaw command while walking at 1 m/s, from the ground-truth quaternion."""
    t0 = STAND_S + DRIFT_SETTLE_S
    t1 = t0 + DRIFT_MEASURE_S
    tr = simulate(bundle, [[STAND_S, 0, 0, 0], [t1 - STAND_S, DRIFT_SPEED, 0, 0]], t1)
    sel = tr.mask(t0, t1 + 1e-9)
    yaw, ts = tr.yaw[sel], tr.t[sel]
    rate = abs(float(yaw[-1] - yaw[0])) / float(ts[-1] - ts[0]) if ts.size > 1 else math.nan
    fell, why = tr.fall_time()
    notes = f"yaw {yaw[0]:+.2f} → {yaw[-1]:+.2f} rad; mean vx {tr.lin_vel[sel, 0].mean():.2f} m/s"
    if fell is not None:
        notes += f"; fell at {fell:.1f} s ({why})"
    ok = bool(fell is None and rate <= DRIFT_LIMIT)
    row = Row(
        "heading drift",
        _fmt_cmd(DRIFT_SPEED, 0, 0),
        f"{rate:.3f} rad/s",
        f"<= {DRIFT_LIMIT:g} rad/s",
        ok,
        notes,
        rate,
        _span(ts),
        tr.wall_s,
    )
    return [row]


def course_extent(terrain: Terrain) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the part of ``terrain`` a row measures on: the stairs' boxes, or the
    step field ahead of its clear start square."""
    if terrain.kind == "steps":
        half = terrain.params["size"] / 2
        return terrain.params["clearance"], half, -half, half
    lo = np.array([[b.center[0] - b.half_size[0], b.center[1] - b.half_size[1]] for b in terrain.boxes])
    hi = np.array([[b.center[0] + b.half_size[0], b.center[1] + b.half_size[1]] for b in terrain.boxes])
    return float(lo[:, 0].min()), float(hi[:, 0].max()), float(lo[:, 1].min()), float(hi[:, 1].max())


def terrain_seed_row(bundle: str, row: str, seed: int) -> Row:
    """One seed of a terrain row: no fall for ``TERRAIN_WINDOW_S`` from reaching the terrain."""
    kind, params, label = terrain_spec(row, profile(bundle).riser)
    terrain = make_terrain(kind, seed=seed, **params)
    x0, x1, y0, y1 = course_extent(terrain)
    approach = x0 / (0.5 * TERRAIN_SPEED)  # generous: at half the commanded speed
    cap = STAND_S + approach + TERRAIN_WINDOW_S + 0.5
    schedule = [[STAND_S, 0, 0, 0], [cap, TERRAIN_SPEED, 0, 0]]
    tr = simulate(
        bundle, schedule, cap, terrain=kind, terrain_params=params, seed=seed, steer="line", course_x=x0,
        window_s=TERRAIN_WINDOW_S,
    )  # fmt: skip
    fell, why = tr.fall_time()
    name = f"{row} seed {seed}"
    command = _fmt_cmd(TERRAIN_SPEED, 0, 0) + " (steered to y = 0)"
    target = f"no fall for {TERRAIN_WINDOW_S:g} s"
    if tr.enter_t is None:
        at = f"; fell at {fell:.1f} s ({why})" if fell is not None else ""
        return Row(name, command, "never reached the terrain", target, False, f"x max {tr.pos[:, 0].max():.2f} m{at}",
                   0.0, None, tr.wall_s)  # fmt: skip
    end = tr.enter_t + TERRAIN_WINDOW_S
    if fell is not None:
        end = min(end, fell)
    sel = tr.mask(tr.enter_t, end + 1e-9)
    on = sel & (tr.pos[:, 0] >= x0) & (tr.pos[:, 0] <= x1) & (tr.pos[:, 1] >= y0) & (tr.pos[:, 1] <= y1)
    dt = float(np.median(np.diff(tr.t)))
    on_s = on.sum() * dt
    fraction = on.sum() / max(1, sel.sum())
    lasted = min(end, float(tr.t[-1])) - tr.enter_t
    fell_in = fell is not None and fell <= tr.enter_t + TERRAIN_WINDOW_S
    ok = bool(not fell_in and lasted >= TERRAIN_WINDOW_S - 0.05 and fraction >= MIN_ON_TERRAIN)
    notes = (
        f"fell: {'y' if fell_in else 'n'}{f' at {fell:.1f} s ({why})' if fell_in else ''}; "
        f"on terrain {on_s:.1f} s ({fraction:.0%} of the window); "
        f"min height {tr.height[sel].min():.2f} m; mean vx on terrain {tr.lin_vel[on, 0].mean():.2f} m/s; "
        f"x {tr.pos[sel, 0].min():.1f}-{tr.pos[sel, 0].max():.1f} of {x0:.1f}-{x1:.1f} m; {label}"
    )
    measured = f"{lasted:.1f} s, {'fell' if fell_in else 'no fall'}"
    return Row(name, command, measured, target, ok, notes, lasted, _span(tr.t[sel]), tr.wall_s)


def terrain_rows(bundle: str, row: str, seeds: Sequence[int] = SEEDS) -> list[Row]:
    """Per-seed rows of a terrain row plus a summary row (passed: every seed passed)."""
    per_seed = [terrain_seed_row(bundle, row, seed) for seed in seeds]
    good = sum(r.passed for r in per_seed)
    label = terrain_spec(row, profile(bundle).riser)[2]
    summary = Row(
        f"{row} ({label})",
        _fmt_cmd(TERRAIN_SPEED, 0, 0),
        f"{good}/{len(per_seed)} seeds without a fall",
        f"{len(per_seed)}/{len(per_seed)}",
        good == len(per_seed),
        f"{TERRAIN_WINDOW_S:g} s on the terrain per seed",
        float(good),
        None,
        sum(r.wall_s for r in per_seed),
    )
    return [summary, *per_seed]


def push_rows(bundle: str) -> list[Row]:
    """A lateral push while walking on flat ground: no fall in the following ``PUSH_WATCH_S``."""
    end = PUSH_AT_S + PUSH_DURATION_S + PUSH_WATCH_S
    schedule = [[STAND_S, 0, 0, 0], [end, TERRAIN_SPEED, 0, 0]]
    push = profile(bundle).push_impulse
    tr = simulate(bundle, schedule, end, push=(PUSH_AT_S, push, PUSH_DURATION_S), steer="heading")
    fell, why = tr.fall_time()
    sel = tr.mask(PUSH_AT_S, end + 1e-9)
    ts = tr.t[sel]
    y = tr.pos[sel, 1]
    heading = float(tr.yaw[tr.mask(PUSH_AT_S - 0.05, PUSH_AT_S + 0.05)][0])
    peak_roll = float(np.abs(tr.roll[sel]).max())
    ok = bool(fell is None and ts.size > 0 and ts[-1] >= end - 0.05)
    notes = (
        f"peak |roll| {peak_roll:.2f} rad; lateral displacement {y[-1] - y[0]:+.2f} m "
        f"(peak {np.abs(y - y[0]).max():.2f} m); min height {tr.height[sel].min():.2f} m; "
        f"heading at the push {heading:+.2f} rad"
    )
    if fell is not None:
        notes += f"; fell at {fell:.1f} s ({why})"
    impulse = np.linalg.norm(push)
    return [
        Row(
            "push",
            f"vx {TERRAIN_SPEED:g} (heading held at 0); {impulse:g} N·s along world y at {PUSH_AT_S:g} s",
            "fell" if fell is not None else "no fall",
            f"no fall in {PUSH_WATCH_S:g} s",
            ok,
            notes,
            peak_roll,
            _span(ts),
            tr.wall_s,
        )
    ]


def _span(ts: np.ndarray) -> tuple[float, float] | None:
    return (float(ts[0]), float(ts[-1])) if ts.size else None


ROWS: dict[str, Callable[[str], list[Row]]] = {
    "flat": flat_rows,
    "drift": drift_rows,
    "stairs": lambda bundle: terrain_rows(bundle, "stairs"),
    "boxes": lambda bundle: terrain_rows(bundle, "boxes"),
    "push": push_rows,
}


def run_acceptance(
    bundle: str, rows: Sequence[str] = ROW_NAMES, progress: Callable[[Row], None] | None = None
) -> list[Row]:
    """Run the named rows (``ROW_NAMES``; ``"all"`` for every one) for ``bundle``, in that order."""
    names = list(ROW_NAMES) if "all" in rows else list(rows)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {unknown}; choose from all, {', '.join(ROW_NAMES)}")
    load_contract(bundle)  # a bad bundle fails here, before any run
    out: list[Row] = []
    for name in names:
        for row in ROWS[name](bundle):
            out.append(row)
            if progress is not None:
                progress(row)
    return out


def render_markdown(rows: Sequence[Row], bundle: str = "") -> str:
    """The rows as a markdown table (preceded by a one-line title when ``bundle`` is given)."""
    title = f"Acceptance of `{bundle}` through graphs/{profile(bundle).graph}.yaml (MuJoCo, lockstep)\n"
    lines = [title] if bundle else []
    lines += ["| row | command | measured | target | pass | notes |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = (r.name, r.command, r.measured, r.target, "yes" if r.passed else "**no**", r.notes)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m krabgraph.train.acceptance", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="policy bundle name or path to a contract.yaml")
    parser.add_argument("--rows", default="all", help=f"all, or a comma-separated list of: {', '.join(ROW_NAMES)}")
    parser.add_argument("--output", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a row fails")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the graph's log (safety mode changes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(name)s: %(message)s")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]

    def progress(row: Row) -> None:
        print(f"{row.name}: {row.measured} ({'pass' if row.passed else 'FAIL'}, {row.wall_s:.1f} s)", file=sys.stderr)

    try:
        result = run_acceptance(args.bundle, rows, progress=progress)
    except (ValueError, KrabgraphError, AcceptanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = render_markdown(result, args.bundle)
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table)
    return 1 if args.check and not all(r.passed for r in result) else 0


__all__ = [
    "FLAT_PHASES",
    "PROFILES",
    "ROW_NAMES",
    "AcceptanceError",
    "GroundTruthProbe",
    "RobotProfile",
    "Row",
    "SteeredSchedule",
    "Trace",
    "acceptance_graph",
    "drift_rows",
    "flat_row",
    "flat_rows",
    "graph_sets",
    "needs_height_scan",
    "profile",
    "push_rows",
    "render_markdown",
    "run_acceptance",
    "scan_center",
    "simulate",
    "terrain_rows",
    "terrain_seed_row",
    "terrain_spec",
]

if __name__ == "__main__":
    sys.exit(main())
