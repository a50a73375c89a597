"""Terrains built from boxes (MuJoCo collides meshes as convex hulls, boxes exactly) and height fields.

``make_terrain(kind, seed, **params)`` returns a ``Terrain``: a ground plane at ``floor_z`` plus a
tuple of axis-aligned ``Box`` es and, for ``rough``, the trainer's height-field tiles. Every
generator is deterministic for a given seed and keeps a clear, flat start area (ground height 0)
around the origin so the robot spawns on flat ground. Courses lie ahead of the robot, along +x.
``Terrain.height_at`` gives the expected ground height for tests and spawning; a parkour course also
lists its ``obstacles`` and its ``finish_x`` (for progress reports). Units: m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from krabgraph.nodes.mujoco.heightfield import HeightField, parkour_tiles, rough_tiles

TERRAIN_KINDS = ("flat", "stairs", "steps", "parkour", "rough", "parkour_tiles")


class TerrainError(ValueError):
    """Unknown terrain kind or invalid terrain parameters."""


@dataclass(frozen=True)
class Box:
    """Axis-aligned box: center and half-sizes (m), world frame."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]

    @property
    def top(self) -> float:
        return self.center[2] + self.half_size[2]

    def covers(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether points (x, y) lie within the box's footprint."""
        cx, cy, _ = self.center
        hx, hy, _ = self.half_size
        return (np.abs(np.asarray(x) - cx) <= hx) & (np.abs(np.asarray(y) - cy) <= hy)


@dataclass(frozen=True)
class Obstacle:
    """One obstacle of a course along +x: ``x0`` to ``x1`` (m; a step-up has x0 = x1), ``size`` its
    height (step, box, hurdle) or length (gap), on a deck whose top is ``deck_z`` before it."""

    name: str  # e.g. "0.30 m gap"
    kind: str  # step | box | gap | hurdle
    x0: float
    x1: float
    size: float
    deck_z: float


@dataclass(frozen=True)
class Terrain:
    """A ground plane at ``floor_z`` plus boxes and an optional height field; a course also has
    ``obstacles`` and a finish line at ``finish_x``. ``params`` records how it was generated."""

    kind: str
    seed: int
    boxes: tuple[Box, ...]
    floor_z: float = 0.0
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    heightfield: HeightField | None = field(default=None, compare=False)
    obstacles: tuple[Obstacle, ...] = ()  # a course's obstacles, in order along +x
    finish_x: float | None = None  # a course's finish line (x, m)

    def height_at(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """Ground height (m) at (x, y): the highest of the boxes covering the point, the height field
        (if any) and ``floor_z``."""
        xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        h = np.full(np.broadcast(xs, ys).shape, self.floor_z)
        if self.heightfield is not None:
            h = np.maximum(h, self.heightfield.height_at(xs, ys))
        for box in self.boxes:
            h = np.where(box.covers(xs, ys), np.maximum(h, box.top), h)
        return float(h) if h.ndim == 0 else h


def make_terrain(kind: str = "flat", seed: int = 0, **params: Any) -> Terrain:
    """Build terrain ``kind`` (one of ``TERRAIN_KINDS``) from a seed and generator parameters."""
    try:
        generator = _GENERATORS[kind]
    except KeyError:
        raise TerrainError(f"unknown terrain {kind!r}; choose one of: {', '.join(TERRAIN_KINDS)}") from None
    try:
        return generator(seed=seed, **params)
    except TypeError as exc:
        raise TerrainError(f"terrain {kind!r}: {exc}") from None


def flat(seed: int = 0) -> Terrain:
    """An empty ground plane at z = 0."""
    return Terrain("flat", seed, ())


def stairs(
    seed: int = 0,
    step_height: float = 0.05,
    step_width: float = 0.3,
    step_count: int = 6,
    width: float = 3.0,
    start: float = 1.0,
    landing: float = 1.0,
    descend: bool = True,
    length: float = 0.0,
    gap: float = 0.5,
    step_width_range: tuple[float, float] | None = None,
    start_jitter: float = 0.0,
) -> Terrain:
    """A flight of ``step_count`` steps up along +x starting ``start`` m ahead, a ``landing`` m long
    landing at the top, then (if ``descend``) steps back down to the ground. Each step is one box
    from the ground to its tread.

    Courses: with ``length`` > 0, flights (which must descend) repeat, ``gap`` m of flat ground
    apart, until they cover at least ``length`` m from the first step. Drawn from ``seed``: the
    first step ``start`` + U(0, ``start_jitter``) m ahead, and with ``step_width_range`` = (lo, hi)
    each flight's tread width U(lo, hi) instead of ``step_width``. The defaults give one flight and
    use no random numbers."""
    _require(step_height > 0 and step_width > 0 and step_count >= 1, "step height/width/count must be positive")
    _require(start >= 0.5, "start must leave at least 0.5 m of flat ground ahead of the origin")
    _require(length <= 0 or (descend and gap >= 0), "a course (length > 0) needs descend: true and gap >= 0")
    _require(start_jitter >= 0, "start_jitter must be >= 0")
    if step_width_range is not None:
        lo, hi = (float(v) for v in step_width_range)
        _require(0 < lo <= hi, "step_width_range must be (lo, hi) with 0 < lo <= hi")
    rng = np.random.default_rng(seed)
    x0 = x = start + (rng.uniform(0.0, start_jitter) if start_jitter > 0 else 0.0)
    boxes: list[Box] = []
    up = [step_height * (i + 1) for i in range(step_count)]
    while True:
        tread = rng.uniform(lo, hi) if step_width_range is not None else step_width
        tops = [*up, up[-1]]
        lengths = [tread] * step_count + [landing]
        if descend:
            tops += up[-2::-1]
            lengths += [tread] * (step_count - 1)
        for top, run in zip(tops, lengths, strict=True):
            boxes.append(Box((x + run / 2, 0.0, top / 2), (run / 2, width / 2, top / 2)))
            x += run
        if x - x0 >= length:
            break
        x += gap
    params = dict(step_height=step_height, step_width=step_width, step_count=step_count, width=width, start=start)
    params |= dict(landing=landing, descend=descend, length=length, gap=gap)
    params |= dict(step_width_range=step_width_range, start_jitter=start_jitter)
    return Terrain("stairs", seed, tuple(boxes), params=params)


def steps(
    seed: int = 0,
    max_height: float = 0.05,
    cell: float = 0.4,
    size: float = 8.0,
    clearance: float = 0.8,
) -> Terrain:
    """Random step field: a ``size`` x ``size`` grid of ``cell`` m boxes centered at the origin with
    heights uniform in [0, ``max_height``]; cells touching the square |x|, |y| < ``clearance`` stay
    flat. Heights are drawn for every cell, so the pattern does not depend on ``clearance``."""
    _require(max_height > 0 and cell > 0 and size >= cell, "max_height, cell and size must be positive")
    rng = np.random.default_rng(seed)
    n = round(size / cell)
    heights = rng.uniform(0.0, max_height, size=(n, n))
    edges = (np.arange(n) - n / 2) * cell  # lower edge of each cell along x and y
    boxes = []
    for i, x0 in enumerate(edges):
        for j, y0 in enumerate(edges):
            touches_start = x0 < clearance and x0 + cell > -clearance and y0 < clearance and y0 + cell > -clearance
            h = float(heights[i, j])
            if touches_start or h < 1e-3:
                continue
            boxes.append(Box((x0 + cell / 2, y0 + cell / 2, h / 2), (cell / 2, cell / 2, h / 2)))
    params = dict(max_height=max_height, cell=cell, size=size, clearance=clearance)
    return Terrain("steps", seed, tuple(boxes), params=params)


PARKOUR_COURSE: tuple[tuple[str, float], ...] = (
    ("step", 0.15),
    ("box", 0.20),
    ("gap", 0.30),
    ("hurdle", 0.15),
    ("box", 0.30),
    ("gap", 0.50),
)
DIFFICULTY_SCALE = {"normal": 1.0, "hard": 1.5}  # parkour: heights and gap lengths times this
OBSTACLE_KINDS = ("step", "box", "gap", "hurdle")
_NOUNS = {"step": "step-up", "box": "box", "gap": "gap", "hurdle": "hurdle"}


def parkour(
    seed: int = 0,
    course: Sequence[Sequence[Any]] = PARKOUR_COURSE,
    difficulty: str = "normal",
    width: float = 4.0,
    start: float = 1.5,
    run_up: float = 1.5,
    jitter: float = 0.2,
    box_length: float = 1.0,
    hurdle_thickness: float = 0.05,
    runout: float = 3.0,
    pit_depth: float = 0.5,
) -> Terrain:
    """A parkour course along +x on a ``width`` m wide deck (top z = 0 at the start) over a pit (floor
    at -``pit_depth``): ``course`` is a list of ``[kind, size]`` obstacles, in order, each after
    ``run_up`` m of flat deck (the first ``start`` m ahead of the origin), then ``run_up`` m of flat
    deck to the finish line and ``runout`` m beyond it. Kinds (size in m): ``step`` raises the deck
    by its height for the rest of the course; ``box`` is ``box_length`` m of deck its height higher
    (up and down); ``gap`` is a pit of its length (no deck); ``hurdle`` is a ``hurdle_thickness`` m
    bar of its height across the deck. ``difficulty: hard`` multiplies every size by 1.5
    (``DIFFICULTY_SCALE``). The seed moves only positions: ``start`` and each run-up by
    U(-``jitter``, ``jitter``) m. The default course (``PARKOUR_COURSE``): 0.15 m step-up, 0.20 m
    box, 0.30 m gap, 0.15 m hurdle, 0.30 m box, 0.50 m gap. ``Terrain.obstacles`` and
    ``Terrain.finish_x`` describe it."""
    _require(difficulty in DIFFICULTY_SCALE, f"difficulty must be one of {', '.join(DIFFICULTY_SCALE)}")
    _require(width >= 1.0 and pit_depth > 0 and runout >= 0, "need width >= 1 m, pit_depth > 0, runout >= 0")
    _require(box_length > 0 and hurdle_thickness > 0, "box_length and hurdle_thickness must be positive")
    _require(0 <= jitter < run_up and start - jitter >= 0.6, "need 0 <= jitter < run_up and start - jitter >= 0.6")
    spec: list[tuple[str, float]] = []
    for item in course:
        _require(
            len(item) == 2 and item[0] in OBSTACLE_KINDS, f"course items are [kind, size], kind in {OBSTACLE_KINDS}"
        )
        _require(float(item[1]) > 0, f"obstacle size must be > 0 m, got {item[1]}")
        spec.append((str(item[0]), round(float(item[1]) * DIFFICULTY_SCALE[difficulty], 6)))
    rng = np.random.default_rng(seed)
    half_w = width / 2
    boxes: list[Box] = []
    obstacles: list[Obstacle] = []

    def deck(x0: float, x1: float, top: float) -> None:
        height = top + pit_depth
        boxes.append(Box(((x0 + x1) / 2, 0.0, top - height / 2), ((x1 - x0) / 2, half_w, height / 2)))

    def ahead(run: float) -> float:
        return run + rng.uniform(-jitter, jitter) if jitter > 0 else run

    level = 0.0  # deck top
    x_deck = -2.0  # where the current flat deck piece begins
    x = ahead(start)
    for kind, size in spec:
        name = f"{size:.2f} m {_NOUNS[kind]}" if round(size, 2) == size else f"{size:.3f} m {_NOUNS[kind]}"
        if kind == "step":
            deck(x_deck, x, level)
            obstacles.append(Obstacle(name, kind, x, x, size, level))
            level += size
            x_deck = x
        elif kind == "box":
            deck(x_deck, x, level)
            deck(x, x + box_length, level + size)
            obstacles.append(Obstacle(name, kind, x, x + box_length, size, level))
            x_deck = x = x + box_length
        elif kind == "gap":
            deck(x_deck, x, level)
            obstacles.append(Obstacle(name, kind, x, x + size, size, level))
            x_deck = x = x + size
        else:
            t = hurdle_thickness
            boxes.append(Box((x + t / 2, 0.0, level + size / 2), (t / 2, half_w, size / 2)))
            obstacles.append(Obstacle(name, kind, x, x + t, size, level))
            x += t
        x += ahead(run_up)
    deck(x_deck, x + runout, level)
    params = dict(course=[list(c) for c in course], difficulty=difficulty, width=width, start=start, run_up=run_up)
    params |= dict(jitter=jitter, box_length=box_length, hurdle_thickness=hurdle_thickness, runout=runout)
    params |= dict(pit_depth=pit_depth)
    return Terrain(
        "parkour", seed, tuple(boxes), floor_z=-pit_depth, params=params, obstacles=tuple(obstacles), finish_x=x
    )


def rough(seed: int = 0, rows: int = 4, tile_size: float = 8.0) -> Terrain:
    """The trainer's rough-terrain tiles as a height field (``heightfield.rough_tiles``): ``rows``
    difficulty levels along +y, one column per tile kind along +x; the robot starts on the
    platform of the flat, easiest tile at the origin."""
    _require(rows >= 1 and tile_size >= 3.0, "need rows >= 1 and tile_size >= 3 m")
    grid = rough_tiles(seed, rows=rows, tile_size=tile_size)
    floor = float(grid.field.heights.min()) - 0.1
    params = dict(rows=rows, tile_size=tile_size, kinds=grid.kinds)
    return Terrain("rough", seed, (), floor_z=floor, params=params, heightfield=grid.field)


def parkour_tiles_terrain(seed: int = 0, rows: int = 4, tile_size: float = 8.0) -> Terrain:
    """The trainer's stage-2 parkour tiles as a height field (``heightfield.parkour_tiles``, the
    go2_parkour task's kinds): ``rows`` difficulty levels along +y, one column per kind along +x;
    the robot starts on the start platform of the easiest ``box_up`` tile at the origin, facing
    its obstacles (+x), and walking on crosses every column's tile at that difficulty."""
    _require(rows >= 1 and tile_size >= 4.0, "need rows >= 1 and tile_size >= 4 m")
    grid = parkour_tiles(seed, rows=rows, tile_size=tile_size)
    floor = float(grid.field.heights.min()) - 0.1
    params = dict(rows=rows, tile_size=tile_size, kinds=grid.kinds)
    return Terrain("parkour_tiles", seed, (), floor_z=floor, params=params, heightfield=grid.field)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise TerrainError(message)


_GENERATORS: dict[str, Callable[..., Terrain]] = {
    "flat": flat,
    "stairs": stairs,
    "steps": steps,
    "parkour": parkour,
    "rough": rough,
    "parkour_tiles": parkour_tiles_terrain,
}

__all__ = [
    "DIFFICULTY_SCALE",
    "PARKOUR_COURSE",
    "TERRAIN_KINDS",
    "Box",
    "HeightField",
    "Obstacle",
    "Terrain",
    "TerrainError",
    "flat",
    "make_terrain",
    "parkour",
    "parkour_tiles_terrain",
    "rough",
    "stairs",
    "steps",
]
