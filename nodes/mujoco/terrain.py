"""Terrains built from boxes (MuJoCo collides meshes as convex hulls, boxes exactly) and height fields.

``make_terrain(kind, seed, **params)`` returns a ``Terrain``: a ground plane at ``floor_z`` plus a
tuple of axis-aligned ``Box`` es and, for ``rough``, the trainer's height-field tiles. Every
generator is deterministic for a given seed and keeps a clear, flat start area (ground height 0)
around the origin so the robot spawns on flat ground. Courses lie ahead of the robot, along +x.
``Terrain.height_at`` gives the expected ground height for tests and spawning. Units: m.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from krabgraph.nodes.mujoco.heightfield import HeightField, rough_tiles

TERRAIN_KINDS = ("flat", "stairs", "steps", "parkour", "rough")


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
class Terrain:
    """A ground plane at ``floor_z`` plus boxes and an optional height field. ``params`` records how
    it was generated."""

    kind: str
    seed: int
    boxes: tuple[Box, ...]
    floor_z: float = 0.0
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    heightfield: HeightField | None = field(default=None, compare=False)

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


def parkour(
    seed: int = 0,
    length: float = 12.0,
    width: float = 1.6,
    clearance: float = 1.0,
    pit_depth: float = 0.5,
    box_height: tuple[float, float] = (0.05, 0.15),
    gap_width: tuple[float, float] = (0.10, 0.30),
    hurdle_height: tuple[float, float] = (0.05, 0.12),
    segment_length: tuple[float, float] = (0.8, 1.2),
) -> Terrain:
    """A course along +x on a ``width`` m wide deck (top z = 0) over a pit (floor at -``pit_depth``):
    random segments of raised boxes to climb, gaps in the deck and thin hurdles, then a 2 m finish.
    The deck spans x in [-2, ``clearance``] before the first obstacle."""
    _require(length > clearance and width > 0 and pit_depth > 0, "need length > clearance, width > 0, pit_depth > 0")
    rng = np.random.default_rng(seed)
    boxes: list[Box] = []
    half_w = width / 2

    def deck(x0: float, x1: float, top: float = 0.0) -> None:
        height = top + pit_depth
        boxes.append(Box(((x0 + x1) / 2, 0.0, top - height / 2), ((x1 - x0) / 2, half_w, height / 2)))

    deck(-2.0, clearance)
    x = clearance
    while x < length:
        kind = ("box", "gap", "hurdle")[rng.integers(3)]
        seg = rng.uniform(*segment_length)
        if kind == "gap":
            x += rng.uniform(*gap_width)
            deck(x, x + seg)
        elif kind == "box":
            deck(x, x + seg, top=rng.uniform(*box_height))
        else:
            deck(x, x + seg)
            thickness, height = rng.uniform(0.05, 0.10), rng.uniform(*hurdle_height)
            hx = x + 0.3
            boxes.append(Box((hx + thickness / 2, 0.0, height / 2), (thickness / 2, half_w, height / 2)))
        x += seg
    deck(x, x + 2.0)
    params = dict(length=length, width=width, clearance=clearance, pit_depth=pit_depth, box_height=box_height)
    params |= dict(gap_width=gap_width, hurdle_height=hurdle_height, segment_length=segment_length)
    return Terrain("parkour", seed, tuple(boxes), floor_z=-pit_depth, params=params)


def rough(seed: int = 0, rows: int = 4, tile_size: float = 8.0) -> Terrain:
    """The trainer's rough-terrain tiles as a height field (``heightfield.rough_tiles``): ``rows``
    difficulty levels along +y, one column per tile kind along +x; the robot starts on the
    platform of the flat, easiest tile at the origin."""
    _require(rows >= 1 and tile_size >= 3.0, "need rows >= 1 and tile_size >= 3 m")
    grid = rough_tiles(seed, rows=rows, tile_size=tile_size)
    floor = float(grid.field.heights.min()) - 0.1
    params = dict(rows=rows, tile_size=tile_size, kinds=grid.kinds)
    return Terrain("rough", seed, (), floor_z=floor, params=params, heightfield=grid.field)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise TerrainError(message)


_GENERATORS: dict[str, Callable[..., Terrain]] = {
    "flat": flat,
    "stairs": stairs,
    "steps": steps,
    "parkour": parkour,
    "rough": rough,
}

__all__ = [
    "TERRAIN_KINDS",
    "Box",
    "HeightField",
    "Terrain",
    "TerrainError",
    "flat",
    "make_terrain",
    "parkour",
    "rough",
    "stairs",
    "steps",
]
