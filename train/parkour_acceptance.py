"""Parkour acceptance of a Go2 policy bundle: the MuJoCo parkour course through the walk graph.

Every run is ``train/acceptance.py``'s: ``graphs/walk.yaml`` lockstep (MuJoCo HAL → policy → safety →
HAL) with the bundle, its height scan wired and centred as its contract says, the terrain
``parkour`` (``nodes/mujoco/terrain.py``) and the schedule: 2 s stand, then vx 0.5 m/s with the yaw
command holding heading 0 (``steer="heading"``). A probe on ``hal/state`` and ``safety/status``
judges the run live (``CourseJudge``) and stops the graph once the outcome is known. Rows:

- ``course``: the default course (``PARKOUR_COURSE``) on seeds 0-9: the base crosses the finish line
  within ``COURSE_LIMIT_S`` of walking with no safety trip and no fall; obstacles passed k/6 as
  ``MujocoHal.track_course`` counts them (base x beyond the obstacle's x1, base above the ground
  there, in course order) and the time to finish. Target: >= 9/10.
- ``hard``: the same with ``difficulty: hard`` (sizes x1.5). Goal: >= 7/10.
- ``obstacles``: per kind a one-obstacle course ``[[kind, size]]`` on a ladder of sizes (``LADDERS``),
  10 trials a size (seeds 0-9: the seed moves the obstacle by U(-0.2, 0.2) m, the HAL has no reset
  noise). A trial passes when the base gets ``CLEAR_M`` past the obstacle's end (off it, for a box),
  above the ground there, within ``distance / TRIAL_MIN_SPEED`` of walking, and stays up
  ``SETTLE_S`` longer, with no fall or trip. The ladder climbs until a size is crossed in < 8/10
  (``--quick``: a size stops as soon as 8/10 is out of reach); the largest size crossed in >= 8/10
  is reported.

A trip: ``safety/status`` leaving ACTIVE (DAMPING, ESTOP) or naming a fault. A fall: |roll| or
|pitch| > 1 rad, or from the walk command on the base < 0.15 m above the lowest ground within ±0.3 m
along x (so a box edge or a hurdle under the base is not a fall; a gap counts at its deck level) or
beyond the deck's side. Failures say where the robot stopped (``CourseJudge.stopped_at``: before,
at, or astride an obstacle with the hind legs not over) and the time spent at each obstacle, from
``NEAR_M`` before it to ``CLEAR_M`` past it (``dwell_times``).

``python -m krabgraph.train.parkour_acceptance --bundle go2_walk,go2_rough,go2_parkour
[--rows course,hard,obstacles] [--seeds N] [--output FILE.md]`` prints markdown tables (one per row
kind and bundle, plus side-by-side tables for several bundles) and progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.launch import Executor, KrabgraphError, Param, build_graph
from krabgraph.launch.graph.declaration import GraphDecl
from krabgraph.msgs import RobotState, SafetyStatus
from krabgraph.nodes.mujoco.terrain import OBSTACLE_KINDS, PARKOUR_COURSE, Terrain, make_terrain
from krabgraph.nodes.policy.contract import load_contract
from krabgraph.nodes.rotations import roll_pitch
from krabgraph.train.acceptance import (
    FALL_ATTITUDE,
    FALL_HEIGHT,
    STAND_S,
    AcceptanceError,
    GroundTruthProbe,
    acceptance_graph,
)

SPEED = 0.5  # m/s, the walking command
COURSE_LIMIT_S = 40.0  # s of walking to cross the finish line (the default course takes ~27 s at 0.5 m/s)
TRIAL_MIN_SPEED = 0.25  # m/s: a one-obstacle trial may take twice as long as walking at the command
CLEAR_M = 0.5  # m: a trial's base must get this far past the obstacle's end (the hind feet are off it)
SETTLE_S = 1.0  # s the robot must stay up after clearing the obstacle
FOOTPRINT_M = 0.3  # m: the base-low fall is measured against the lowest ground within ±this along x
NEAR_M = 0.6  # m: the base this close before an obstacle's start is "at" it
PASS_FRACTION = 0.8  # a ladder size is crossed when >= this fraction of its trials pass
COURSE_TARGET, HARD_GOAL = 0.9, 0.7
ROW_NAMES = ("course", "hard", "obstacles")
NOUNS = {"step": "step-up", "box": "box", "gap": "gap", "hurdle": "hurdle"}


def _ladder(lo: float, hi: float, step: float) -> tuple[float, ...]:
    return tuple(round(lo + i * step, 3) for i in range(round((hi - lo) / step) + 1))


LADDERS: dict[str, tuple[float, ...]] = {
    "step": _ladder(0.10, 0.45, 0.05),
    "box": _ladder(0.10, 0.45, 0.05),
    "gap": _ladder(0.20, 0.80, 0.10),
    "hurdle": _ladder(0.05, 0.30, 0.05),
}


# -- judging -------------------------------------------------------------------------------------
def support_height(terrain: Terrain, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
    """The lowest ground within ±``FOOTPRINT_M`` along x of each (x, y), a gap counted at the deck
    level before it: the base-low fall is measured against this."""
    offsets = np.linspace(-FOOTPRINT_M, FOOTPRINT_M, 7)
    xs = np.asarray(x, dtype=float)[..., None] + offsets
    ys = np.broadcast_to(np.asarray(y, dtype=float)[..., None], xs.shape)
    h = np.asarray(terrain.height_at(xs, ys), dtype=float)
    for o in terrain.obstacles:
        if o.kind == "gap":
            h = np.where((xs >= o.x0) & (xs <= o.x1), np.maximum(h, o.deck_z), h)
    return h.min(axis=-1)


@dataclass
class CourseJudge:
    """Judges a run on a parkour course from ground-truth base samples (``update``) and safety trips
    (``trip``). Course mode (``clear_m`` None): done at the finish line. Trial mode: done ``settle_s``
    after the base got ``clear_m`` past the last obstacle's end. Both: done at a fall, a trip or
    ``limit_s`` of walking (from ``walk_t0``) without getting there. Times are graph times (s)."""

    terrain: Terrain
    walk_t0: float = STAND_S
    limit_s: float = COURSE_LIMIT_S
    clear_m: float | None = None
    settle_s: float = 0.0
    passed_t: list[float] = field(default_factory=list)  # when each obstacle was passed, in order
    finish_t: float | None = None
    clear_t: float | None = None
    fall_t: float | None = None
    fall_why: str = ""
    trip_t: float | None = None
    trip_why: str = ""
    timeout_t: float | None = None
    last_t: float = 0.0
    x_max: float = -math.inf
    y_abs_max: float = 0.0
    done: bool = False

    @property
    def target_x(self) -> float:
        """x the base must pass: the finish line, or a trial's last obstacle end + ``clear_m``."""
        if self.clear_m is None:
            assert self.terrain.finish_x is not None, "a course needs a finish line"
            return self.terrain.finish_x
        return self.terrain.obstacles[-1].x1 + self.clear_m

    def update(self, t: float, x: float, y: float, z: float, roll: float, pitch: float) -> bool:
        """Take one sample; return whether the run is decided."""
        if self.done:
            return True
        self.last_t = t
        walking = t - self.walk_t0
        if self.clear_t is None and self.finish_t is None and walking > self.limit_s + 1e-9:
            self.timeout_t = t
            self.done = True
            return True
        self.x_max, self.y_abs_max = max(self.x_max, x), max(self.y_abs_max, abs(y))
        why = ""
        if max(abs(roll), abs(pitch)) > FALL_ATTITUDE:
            why = f"attitude roll {roll:+.2f} pitch {pitch:+.2f} rad"
        elif walking >= 0 and abs(y) > self.terrain.params.get("width", math.inf) / 2:
            why = f"off the deck's side (y {y:+.2f} m)"
        elif walking >= 0 and (h := z - float(support_height(self.terrain, x, y))) < FALL_HEIGHT:
            why = f"base low ({h:.2f} m above the ground)"
        if why:
            self.fall_t, self.fall_why, self.done = t, why, True
            return True
        self._progress(t, x, y, z)
        if self.clear_m is None:
            self.done = self.finish_t is not None
        elif self.clear_t is None and x > self.target_x and z > self.terrain.height_at(x, y):
            self.clear_t = t
        if self.clear_t is not None and t >= self.clear_t + self.settle_s - 1e-9:
            self.done = True
        return self.done

    def _progress(self, t: float, x: float, y: float, z: float) -> None:
        """``MujocoHal.track_course``: obstacles passed in order, then the finish line."""
        obstacles, course = self.terrain.obstacles, self.terrain
        n = len(self.passed_t)
        ahead = obstacles[n].x1 if n < len(obstacles) else course.finish_x
        if self.finish_t is not None or ahead is None or x <= ahead or z <= course.height_at(x, y):
            return
        while len(self.passed_t) < len(obstacles) and x > obstacles[len(self.passed_t)].x1:
            self.passed_t.append(t)
        if len(self.passed_t) == len(obstacles) and course.finish_x is not None and x > course.finish_x:
            self.finish_t = t

    def trip(self, t: float, why: str) -> None:
        """A safety trip at graph time ``t``: the run is decided (failed) unless it already was."""
        if not self.done:
            self.trip_t, self.trip_why, self.done = t, why, True

    @property
    def passed(self) -> bool:
        """Finished (course) or cleared and settled (trial) with no fall, trip or timeout."""
        ok = self.fall_t is None and self.trip_t is None and self.timeout_t is None
        if self.clear_m is None:
            return ok and self.finish_t is not None
        return ok and self.clear_t is not None and self.last_t >= self.clear_t + self.settle_s - 1e-9

    def stuck_index(self) -> int | None:
        """The obstacle the robot was stopped at: the first not passed, or the last passed one while
        the base is less than ``CLEAR_M`` past its end (hind legs not over it); None when done."""
        obstacles, n = self.terrain.obstacles, len(self.passed_t)
        if self.finish_t is not None or self.clear_t is not None:
            return None
        if n and self.x_max < obstacles[n - 1].x1 + CLEAR_M:
            return n - 1
        return n if n < len(obstacles) else None

    def stopped_at(self) -> str:
        """Where the robot was stopped, relative to the obstacle it was stopped at (``stuck_index``)."""
        obstacles, n, k = self.terrain.obstacles, len(self.passed_t), self.stuck_index()
        if self.finish_t is not None or self.clear_t is not None:
            return "finished" if self.clear_m is None else "cleared"
        if k is None:
            return f"after the last obstacle ({self.terrain.finish_x - self.x_max:.2f} m short of the finish line)"
        o = obstacles[k]
        if k < n:
            return f"astride the {o.name} (base {self.x_max - o.x1:+.2f} m past its end, < {CLEAR_M:g} m)"
        if self.x_max < o.x0 - NEAR_M:
            return f"before the {o.name} (base {o.x0 - self.x_max:.2f} m short of it)"
        return f"at the {o.name} (base max {self.x_max - o.x0:+.2f} m from its start, {o.x1 - o.x0:.2f} m long)"


# -- the probe and one run -----------------------------------------------------------------------
class CourseProbe(GroundTruthProbe):
    """``GroundTruthProbe`` that judges a parkour run live (``CourseJudge``), records safety faults
    and stops the graph once the run is decided (with ``stop_on_fall`` false, not at a fall or trip:
    the base is recorded on, to see what followed)."""

    terrain_params = Param(dict, {}, "the parkour terrain's generator parameters")
    seed = Param(int, 0, "the terrain seed")
    walk_s = Param(float, STAND_S, "graph time the walking command starts", unit="s", ge=0)
    limit_s = Param(float, COURSE_LIMIT_S, "walking time allowed", unit="s", gt=0)
    clear_m = Param(float, -1.0, "trial: clear this far past the last obstacle; < 0 = course (finish line)", unit="m")
    settle_s = Param(float, 0.0, "trial: stay up this long after clearing", unit="s", ge=0)

    def on_configure(self) -> None:
        super().on_configure()
        terrain = make_terrain("parkour", seed=self.seed, **self.terrain_params)
        clear = self.clear_m if self.clear_m >= 0 else None
        self.judge = CourseJudge(terrain, self.walk_s, self.limit_s, clear, self.settle_s)
        self.faults: list[tuple[float, int, int, str]] = []  # (t, mode, fault, reason) on change

    def on_state(self, m: RobotState) -> None:
        if not m.has_base:
            return
        b = m.base
        t = m.header.stamp_ns * 1e-9
        p, o, v, w = b.position, b.orientation, b.linear_velocity, b.angular_velocity
        self.rows.append((t, p.x, p.y, p.z, o.w, o.x, o.y, o.z, v.x, v.y, v.z, w.x, w.y, w.z))
        roll, pitch = roll_pitch(o.w, o.x, o.y, o.z)
        if not self.stopping and self.judge.update(t, p.x, p.y, p.z, roll, pitch):
            if self.judge.fall_t is not None:
                self.fault_t, self.fault = self.judge.fall_t, self.judge.fall_why
            if self.stop_on_fall or self.judge.fall_t is None:  # else record on (a diagnosis)
                self._finish()

    def on_safety(self, m: SafetyStatus) -> None:
        t = self.now_ns() * 1e-9
        self.modes.append((t, m.mode))
        if not self.faults or self.faults[-1][1:3] != (m.mode, m.fault):
            self.faults.append((t, m.mode, m.fault, m.reason))
        if self.stopping or 0 < self.end_s <= t:
            return  # the graph's stop damps the robot: not a trip
        if m.mode == SafetyStatus.Mode.ACTIVE and m.fault == SafetyStatus.Fault.FAULT_NONE:
            self.was_active = True
        elif m.fault != SafetyStatus.Fault.FAULT_NONE or (self.was_active and m.mode != SafetyStatus.Mode.ACTIVE):
            mode, fault = SafetyStatus.Mode.Name(m.mode), SafetyStatus.Fault.Name(m.fault)
            self.judge.trip(t, f"{mode} {fault}: {m.reason}")
            self.fault_t, self.fault = t, f"safety {mode} {fault}: {m.reason}"
            if self.stop_on_fall:
                self._finish()


@dataclass(frozen=True)
class Outcome:
    """One judged run. Times ``*_s`` are walking times (s from the walk command); None = never."""

    bundle: str
    seed: int
    course: list[list[Any]]
    difficulty: str
    passed: bool
    obstacles: list[str]
    passed_s: list[float]
    finish_s: float | None
    clear_s: float | None
    fall_s: float | None
    fall_why: str
    trip_s: float | None
    trip_why: str
    timeout: bool
    stopped_at: str
    x_max: float
    y_abs_max: float
    obstacle_x: list[tuple[float, float]]
    near_s: float  # time spent from NEAR_M before to CLEAR_M past the obstacle it stopped at
    near_pitch_max: float  # largest |pitch| (rad) meanwhile
    near_z_max: float  # highest base height above the deck before that obstacle meanwhile
    last_x: tuple[float, float]  # base x range (m) over the run's last 5 s: stuck, or still trying?
    dwell_s: list[float | None]  # per obstacle: s from reaching it to clearing it (``dwell_times``)
    stuck: int | None  # index of the obstacle it was stopped at (``CourseJudge.stuck_index``)
    graph_s: float
    wall_s: float
    hal_progress: tuple[int, bool] | None = None  # MujocoHal.course_progress at the end: (passed, finished)

    @property
    def failure(self) -> str:
        """Why the run failed, in words ('' if it passed)."""
        if self.passed:
            return ""
        if self.trip_s is not None:
            return f"safety trip at {self.trip_s:.1f} s {self.stopped_at}: {self.trip_why}"
        if self.fall_s is not None:
            return f"fell at {self.fall_s:.1f} s {self.stopped_at}: {self.fall_why}"
        return f"timed out {self.stopped_at}"

    @property
    def failure_kind(self) -> str:
        """trip, fall, timeout or '' (passed)."""
        if self.passed:
            return ""
        return "trip" if self.trip_s is not None else "fall" if self.fall_s is not None else "timeout"


def parkour_graph(
    bundle: str,
    seed: int,
    course: Sequence[Sequence[Any]] = PARKOUR_COURSE,
    *,
    difficulty: str = "normal",
    limit_s: float = COURSE_LIMIT_S,
    clear_m: float | None = None,
    settle_s: float = 0.0,
) -> tuple[GraphDecl, float]:
    """``acceptance_graph`` on a parkour course with the probe replaced by ``CourseProbe``, and the
    graph time (s) the run may last: the stand, ``limit_s`` of walking and ``settle_s``."""
    params: dict[str, Any] = {"course": [[str(k), float(s)] for k, s in course], "difficulty": difficulty}
    duration = STAND_S + limit_s + settle_s + 0.1
    schedule = [[STAND_S, 0.0, 0.0, 0.0], [duration, SPEED, 0.0, 0.0]]
    decl = acceptance_graph(
        bundle, schedule, duration, terrain="parkour", terrain_params=params, seed=seed, steer="heading"
    )
    probe = decl.nodes["probe"]
    probe.class_ref = CourseProbe
    probe.params |= dict(
        terrain_params=params, seed=seed, walk_s=STAND_S, limit_s=limit_s,
        clear_m=-1.0 if clear_m is None else clear_m, settle_s=settle_s,
    )  # fmt: skip
    return decl, duration


def run_parkour(bundle: str, seed: int, course: Sequence[Sequence[Any]] = PARKOUR_COURSE, **options: Any) -> Outcome:
    """One run of ``parkour_graph`` (same arguments), judged by its ``CourseProbe``."""
    decl, duration = parkour_graph(bundle, seed, course, **options)
    wall = time.monotonic()
    ex = Executor(build_graph(decl))
    rc = ex.run(duration_s=duration, handle_signals=False)
    if rc != 0 or ex.failures:
        details = "; ".join(f"{node} in {where}" for node, where, _ in ex.failures) or f"exit code {rc}"
        raise AcceptanceError(f"bundle {bundle!r}, parkour {course}, seed {seed}: the graph failed ({details})")
    p: CourseProbe = ex.nodes["probe"]
    rows = np.array(p.rows, dtype=np.float64).reshape(-1, 14)
    hal = ex.nodes["hal"].course_progress
    out = outcome_of(p.judge, rows, bundle, seed, time.monotonic() - wall)
    return replace(out, hal_progress=None if hal is None else (hal[0], hal[2]))


def outcome_of(judge: CourseJudge, rows: np.ndarray, bundle: str, seed: int, wall_s: float) -> Outcome:
    """An ``Outcome`` from a judge and the probe's rows (t, position, quaternion wxyz, ...)."""
    terrain, t0 = judge.terrain, judge.walk_t0

    def walk(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 3)

    obstacles = terrain.obstacles
    k = judge.stuck_index()
    near_s = pitch_max = z_max = 0.0
    if k is not None and len(rows):
        o = obstacles[k]
        t, x, z = rows[:, 0], rows[:, 1], rows[:, 3]
        w, qx, qy, qz = rows[:, 4:8].T
        pitch = np.arcsin(np.clip(2 * (w * qy - qz * qx), -1, 1))
        near = (x >= o.x0 - NEAR_M) & (x <= o.x1 + CLEAR_M)
        if near.any():
            near_s = float(near.sum() * np.median(np.diff(t))) if len(t) > 1 else 0.0
            pitch_max = float(np.abs(pitch[near]).max())
            z_max = float((z[near] - o.deck_z).max())
    dwell = dwell_times(terrain, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]) if len(rows) else []
    last_x = (math.nan, math.nan)
    if len(rows):
        xs = rows[rows[:, 0] >= rows[-1, 0] - 5.0, 1]
        last_x = (round(float(xs.min()), 3), round(float(xs.max()), 3))
    return Outcome(
        bundle=bundle,
        seed=seed,
        course=[list(c) for c in terrain.params["course"]],
        difficulty=terrain.params["difficulty"],
        passed=judge.passed,
        obstacles=[o.name for o in obstacles],
        passed_s=[walk(t) for t in judge.passed_t],
        finish_s=walk(judge.finish_t),
        clear_s=walk(judge.clear_t),
        fall_s=walk(judge.fall_t),
        fall_why=judge.fall_why,
        trip_s=walk(judge.trip_t),
        trip_why=judge.trip_why,
        timeout=judge.timeout_t is not None,
        stopped_at=judge.stopped_at(),
        x_max=round(judge.x_max, 3),
        y_abs_max=round(judge.y_abs_max, 3),
        obstacle_x=[(round(o.x0, 3), round(o.x1, 3)) for o in obstacles],
        near_s=round(near_s, 2),
        near_pitch_max=round(pitch_max, 3),
        near_z_max=round(z_max, 3),
        last_x=last_x,
        dwell_s=dwell,
        stuck=k,
        graph_s=round(judge.last_t, 2),
        wall_s=round(wall_s, 2),
    )


def dwell_times(terrain: Terrain, t: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> list[float | None]:
    """Per obstacle, the time (s) from the base first coming within ``NEAR_M`` of its start to the
    base first being ``CLEAR_M`` past its end above the ground (or to the last sample if never);
    None if never reached. Time spent at an obstacle, counted only while the robot is there."""
    above = z > np.asarray(terrain.height_at(x, y))
    out: list[float | None] = []
    for o in terrain.obstacles:
        reached = np.flatnonzero(x >= o.x0 - NEAR_M)
        if not reached.size:
            out.append(None)
            continue
        cleared = np.flatnonzero((x > o.x1 + CLEAR_M) & above & (t >= t[reached[0]]))
        end = t[cleared[0]] if cleared.size else t[-1]
        out.append(round(float(end - t[reached[0]]), 2))
    return out


# -- rows ----------------------------------------------------------------------------------------
def course_runs(
    bundle: str, difficulty: str = "normal", seeds: Sequence[int] = range(10), progress: Callable[[str], None] = print
) -> list[Outcome]:
    """The default course on each seed: finish within ``COURSE_LIMIT_S`` of walking."""
    out = []
    for seed in seeds:
        r = run_parkour(bundle, seed, difficulty=difficulty)
        out.append(r)
        how = f"finished in {r.finish_s:.1f} s" if r.passed else r.failure
        passed = f"{len(r.passed_s)}/{len(r.obstacles)}"
        progress(f"{bundle} {difficulty} seed {seed}: {how}; obstacles {passed} ({r.wall_s:.0f} s wall)")
    return out


def trial_limit(terrain: Terrain) -> float:
    """Walking time (s) a one-obstacle trial gets: to ``CLEAR_M`` past the obstacle at ``TRIAL_MIN_SPEED``."""
    return math.ceil((terrain.obstacles[-1].x1 + CLEAR_M) / TRIAL_MIN_SPEED * 10) / 10


def obstacle_trial(bundle: str, kind: str, size: float, seed: int) -> Outcome:
    """One trial of a one-obstacle course ``[[kind, size]]``."""
    course = [[kind, size]]
    limit = trial_limit(make_terrain("parkour", seed=seed, course=course))
    return run_parkour(bundle, seed, course, limit_s=limit, clear_m=CLEAR_M, settle_s=SETTLE_S)


@dataclass(frozen=True)
class SizeResult:
    """The trials run at one ladder size (possibly stopped early once the verdict was known)."""

    size: float
    outcomes: list[Outcome]
    trials: int  # trials planned

    @property
    def passes(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def crossed(self) -> bool:
        return self.passes >= needed(self.trials)

    def count(self) -> str:
        """'8/10', or '1/4 (stopped)' when the verdict was known before every trial ran."""
        run = len(self.outcomes)
        return f"{self.passes}/{run}" + ("" if run == self.trials else f" of {self.trials} (stopped)")


def needed(trials: int) -> int:
    """Passes a size needs: ``PASS_FRACTION`` of its trials (8 of 10)."""
    return math.ceil(PASS_FRACTION * trials - 1e-9)


def ladder_search(
    sizes: Sequence[float], trial: Callable[[float, int], Outcome], seeds: Sequence[int], quick: bool = False
) -> list[SizeResult]:
    """Climb ``sizes`` (ascending): run ``trial(size, seed)`` for each seed and stop the climb at the
    first size not crossed. ``quick``: also stop a size once it can no longer be crossed (more than
    ``len(seeds) - needed`` failures)."""
    need, out = needed(len(seeds)), []
    for size in sizes:
        outcomes: list[Outcome] = []
        for seed in seeds:
            outcomes.append(trial(size, seed))
            if quick and sum(not o.passed for o in outcomes) > len(seeds) - need:
                break
        out.append(SizeResult(size, outcomes, len(seeds)))
        if not out[-1].crossed:
            break
    return out


def largest_crossed(results: Sequence[SizeResult]) -> float | None:
    """The largest size crossed before the first size that was not (None: not even the first)."""
    best = None
    for r in results:
        if not r.crossed:
            break
        best = r.size
    return best


def obstacle_ladders(
    bundle: str,
    kinds: Sequence[str] = OBSTACLE_KINDS,
    seeds: Sequence[int] = range(10),
    progress: Callable[[str], None] = print,
    quick: bool = False,
) -> dict[str, list[SizeResult]]:
    """``ladder_search`` per obstacle kind on ``LADDERS``."""
    out = {}
    for kind in kinds:

        def trial(size: float, seed: int, kind: str = kind) -> Outcome:
            r = obstacle_trial(bundle, kind, size, seed)
            how = f"cleared at {r.clear_s:.1f} s" if r.passed else r.failure
            progress(f"{bundle} {NOUNS[kind]} {size:.2f} m seed {seed}: {how} ({r.wall_s:.0f} s wall)")
            return r

        out[kind] = ladder_search(LADDERS[kind], trial, list(seeds), quick)
        best = largest_crossed(out[kind])
        progress(f"{bundle} {NOUNS[kind]}: largest crossed {fmt_size(best, kind)}")
    return out


# -- tables --------------------------------------------------------------------------------------
def fmt_size(size: float | None, kind: str) -> str:
    """A ladder verdict: '0.30 m', '< 0.10 m' (None: not even the first size)."""
    return f"< {LADDERS[kind][0]:.2f} m" if size is None else f"{size:.2f} m"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _t(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def render_course(outcomes: Sequence[Outcome], bundle: str, difficulty: str, wall_s: float = 0.0) -> str:
    """The course (or hard) row as a markdown table with its summary line."""
    n = len(outcomes)
    fin = sum(o.passed for o in outcomes)
    trips, falls = sum(o.trip_s is not None for o in outcomes), sum(o.fall_s is not None for o in outcomes)
    goal, word = (COURSE_TARGET, "target") if difficulty == "normal" else (HARD_GOAL, "goal")
    target = f"{word} ≥ {math.ceil(goal * n - 1e-9)}/{n}"
    sizes = ", ".join(outcomes[0].obstacles) if outcomes else ""
    lines = [
        f"`{bundle}` on the {difficulty} parkour course ({sizes}), vx {SPEED:g} m/s after a {STAND_S:g} s stand, "
        f"heading held; finish within {COURSE_LIMIT_S:g} s of walking; lockstep through graphs/walk.yaml with "
        "the safety node\n",
        "| seed | finished | time to finish | obstacles passed | longest at an obstacle | safety trip | fall "
        "| where it stopped | wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        trip = f"yes, {o.trip_s:.1f} s ({o.trip_why})" if o.trip_s is not None else "no"
        fall = f"yes, {o.fall_s:.1f} s ({o.fall_why})" if o.fall_s is not None else "no"
        where = "–" if o.passed else o.stopped_at + ("; timed out" if o.timeout else "")
        if not o.passed and o.near_s:
            where += f" ({o.near_s:.0f} s there, max pitch {o.near_pitch_max:.2f} rad"
            where += f", x {o.last_x[0]:.2f}-{o.last_x[1]:.2f} m in the last 5 s)" if o.timeout else ")"
        cells = [str(o.seed), "yes" if o.passed else "**no**", _t(o.finish_s), f"{len(o.passed_s)}/{len(o.obstacles)}"]
        cells += [slowest(o), trip, fall, where, f"{o.wall_s:.0f} s"]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    times = [o.finish_s for o in outcomes if o.passed and o.finish_s is not None]
    mean = f"; mean time to finish {np.mean(times):.1f} s" if times else ""
    lines.append(
        f"\n**finished without a trip or a fall: {fin}/{n}** ({target}); trips {trips}, falls {falls}{mean}; "
        f"wall {wall_s or sum(o.wall_s for o in outcomes):.0f} s\n"
    )
    return "\n".join(lines)


def slowest(o: Outcome) -> str:
    """The obstacle the robot spent longest at (``Outcome.dwell_s``; '+' = still there at the end)."""
    spans = [(d, k) for k, d in enumerate(o.dwell_s) if d is not None]
    if not spans:
        return "–"
    d, k = max(spans)
    still = k >= len(o.passed_s) or (o.clear_s is None and o.finish_s is None and k == o.stuck)
    return f"{o.obstacles[k]}: {d:.1f} s{'+' if still else ''}"


def _failure_counts(outcomes: Sequence[Outcome]) -> str:
    kinds = [o.failure_kind for o in outcomes if not o.passed]
    return ", ".join(f"{kinds.count(k)} {k}" for k in ("timeout", "fall", "trip") if kinds.count(k)) or "–"


def _example_failure(outcomes: Sequence[Outcome]) -> str:
    failed = [o for o in outcomes if not o.passed]
    if not failed:
        return ""
    o = failed[0]
    extra = f"; {o.near_s:.0f} s near it, max pitch {o.near_pitch_max:.2f} rad, base max {o.near_z_max:.2f} m"
    return f"seed {o.seed}: {o.failure}{extra if o.near_s else ''}"


def render_obstacles(ladders: dict[str, list[SizeResult]], bundle: str, wall_s: float = 0.0) -> str:
    """The obstacles row: per kind and size the trials crossed, with the failures' kinds."""
    seeds = next((r.trials for rs in ladders.values() for r in rs), 10)
    lines = [
        f"`{bundle}`, one obstacle per course (after {1.5:g} ± 0.2 m of deck; the seed moves it), vx {SPEED:g} m/s "
        f"after a {STAND_S:g} s stand, heading held; a trial passes when the base gets {CLEAR_M:g} m past the "
        f"obstacle's end above the ground within (distance / {TRIAL_MIN_SPEED:g} m/s) of walking and stays up "
        f"{SETTLE_S:g} s more, no fall, no safety trip; {seeds} trials a size (seeds 0-{seeds - 1}), a size is "
        f"crossed at ≥ {needed(seeds)}/{seeds}; the ladder stops at the first size not crossed\n",
        "| obstacle | size | crossed | verdict | failures | example failure | wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, results in ladders.items():
        for r in results:
            verdict = "crossed" if r.crossed else "**not crossed**"
            wall = sum(o.wall_s for o in r.outcomes)
            cells = [NOUNS[kind], f"{r.size:.2f} m", r.count(), verdict, _failure_counts(r.outcomes)]
            cells += [_example_failure(r.outcomes) or "–", f"{wall:.0f} s"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", f"| obstacle | ladder | largest crossed in ≥ {needed(seeds)}/{seeds} |", "|---|---|---|"]
    for kind, results in ladders.items():
        lad = LADDERS[kind]
        top = " (top of the ladder)" if results and results[-1].crossed and results[-1].size == lad[-1] else ""
        step = round(lad[1] - lad[0], 3)
        best = fmt_size(largest_crossed(results), kind) + top
        cells = [NOUNS[kind], f"{lad[0]:.2f}-{lad[-1]:.2f} m by {step:g}", best]
        lines.append("| " + " | ".join(cells) + " |")
    total = wall_s or sum(o.wall_s for rs in ladders.values() for r in rs for o in r.outcomes)
    lines.append(f"\nwall {total:.0f} s\n")
    return "\n".join(lines)


def render_side_by_side(results: dict[str, dict[str, Any]]) -> str:
    """Per-bundle course/hard rates and per-obstacle largest sizes, one column per bundle."""
    bundles = list(results)
    head = "| | " + " | ".join(f"`{b}`" for b in bundles) + " |"
    lines = [head, "|---" * (len(bundles) + 1) + "|"]
    for row, label in (("course", "default course finished"), ("hard", "hard course finished")):
        if any(row in results[b] for b in bundles):
            cells = []
            for b in bundles:
                outs = results[b].get(row)
                if outs is None:
                    cells.append("–")
                    continue
                mean_k = np.mean([len(o.passed_s) for o in outs]) if outs else math.nan
                cells.append(f"{sum(o.passed for o in outs)}/{len(outs)} (mean {mean_k:.1f}/6 obstacles)")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for kind in OBSTACLE_KINDS:
        if not any(kind in results[b].get("obstacles", {}) for b in bundles):
            continue
        cells = []
        for b in bundles:
            rs = results[b].get("obstacles", {}).get(kind)
            if rs is None:
                cells.append("–")
                continue
            best = fmt_size(largest_crossed(rs), kind)
            miss = next((r for r in rs if not r.crossed), None)
            cells.append(best + (f" ({miss.size:.2f} m: {miss.passes}/{len(miss.outcomes)})" if miss else " (top)"))
        trials = next((r.trials for b in bundles for r in results[b].get("obstacles", {}).get(kind, [])), 10)
        lines.append(f"| largest {NOUNS[kind]} (≥ {needed(trials)}/{trials}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- command line --------------------------------------------------------------------------------
def run_bundle(
    bundle: str,
    rows: Sequence[str],
    seeds: Sequence[int],
    kinds: Sequence[str],
    progress: Callable[[str], None],
    quick: bool = False,
) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    """Run ``rows`` for one bundle: (results by row, markdown by row, wall seconds by row)."""
    load_contract(bundle)  # a bad bundle fails here, before any run
    results: dict[str, Any] = {}
    tables: dict[str, str] = {}
    walls: dict[str, float] = {}
    for row in rows:
        wall = time.monotonic()
        if row in ("course", "hard"):
            difficulty = "normal" if row == "course" else "hard"
            results[row] = course_runs(bundle, difficulty, seeds, progress)
            walls[row] = time.monotonic() - wall
            tables[row] = render_course(results[row], bundle, difficulty, walls[row])
        else:
            results[row] = obstacle_ladders(bundle, kinds, seeds, progress, quick)
            walls[row] = time.monotonic() - wall
            tables[row] = render_obstacles(results[row], bundle, walls[row])
        progress(f"{bundle} {row}: done in {walls[row]:.0f} s wall")
    return results, tables, walls


def _jsonable(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bundle, rows in results.items():
        out[bundle] = {}
        for row, value in rows.items():
            if row == "obstacles":
                out[bundle][row] = {
                    k: [{"size": r.size, "trials": r.trials, "outcomes": [asdict(o) for o in r.outcomes]} for r in rs]
                    for k, rs in value.items()
                }
            else:
                out[bundle][row] = [asdict(o) for o in value]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m krabgraph.train.parkour_acceptance", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundle", required=True, help="policy bundle name(s), comma-separated")
    parser.add_argument("--rows", default=",".join(ROW_NAMES), help=f"comma-separated: {', '.join(ROW_NAMES)}")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1: course runs and trials per ladder size")
    parser.add_argument("--kinds", default=",".join(OBSTACLE_KINDS), help="obstacle kinds for the obstacles row")
    parser.add_argument("--output", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--json", type=Path, help="also write every run's outcome to this JSON file")
    parser.add_argument("--quick", action="store_true", help="stop a ladder size once 8/10 is out of reach")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the graph's log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(name)s: %(message)s")
    bundles = [b.strip() for b in args.bundle.split(",") if b.strip()]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [r for r in rows if r not in ROW_NAMES] + [k for k in kinds if k not in OBSTACLE_KINDS]
    if bad or args.seeds < 1 or not bundles:
        print(f"error: unknown row(s)/kind(s) {bad} or no bundle / seeds < 1", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: dict[str, dict[str, Any]] = {}
    parts: list[str] = []
    try:
        for bundle in bundles:
            results[bundle], tables, _ = run_bundle(bundle, rows, range(args.seeds), kinds, progress, args.quick)
            parts += [f"### `{bundle}`: {row}\n\n{tables[row]}" for row in rows]
            _write(args.output, args.json, "\n".join(parts), results)  # what is done so far
    except (ValueError, KrabgraphError, AcceptanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(bundles) > 1:
        parts.append("### Side by side\n\n" + render_side_by_side(results))
    text = "\n".join(parts)
    print(text)
    _write(args.output, args.json, text, results)
    return 0


def _write(output: Path | None, json_path: Path | None, text: str, results: dict[str, dict[str, Any]]) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_jsonable(results), indent=1))


__all__ = [
    "LADDERS",
    "CourseJudge",
    "CourseProbe",
    "Outcome",
    "SizeResult",
    "course_runs",
    "dwell_times",
    "ladder_search",
    "largest_crossed",
    "main",
    "needed",
    "obstacle_ladders",
    "obstacle_trial",
    "parkour_graph",
    "render_course",
    "render_obstacles",
    "render_side_by_side",
    "run_parkour",
    "support_height",
    "trial_limit",
]

if __name__ == "__main__":
    sys.exit(main())
