"""Height fields: a grid of ground heights, and the rough-terrain tiles the trainer learns on.

``HeightField`` is a regular grid of heights (m), row index along y, column index along x, sample
``[0, 0]`` at ``origin``. Between samples the surface is MuJoCo's: each cell is split into two
triangles along the diagonal from its (x0, y0) corner to its (x1, y1) corner, so
``HeightField.height_at`` returns exactly what a ray cast onto the MuJoCo ``hfield`` geom hits.
The trainer evaluates the same formula in JAX (``krabgraph.train.terrain``).

``rough_tiles`` builds the curriculum grid: ``rows`` difficulty levels (row 0 easiest) by
``len(kinds)`` columns of terrain kinds, each tile ``tile_size`` m square with a flat platform in
its centre where robots spawn, surrounded by a flat ``border``. Kinds: ``flat``, ``rough``
(smoothed uniform noise), ``slope_up`` / ``slope_down`` (pyramid slopes rising to / falling to the
platform), ``stairs_up`` / ``stairs_down`` (pyramid stairs rising to / falling to the platform),
``boxes`` (a random grid of flat-topped boxes). Difficulty ``d`` in [0, 1] scales each kind
linearly between the ranges in ``DIFFICULTY``.

``parkour_tiles`` builds the stage-2 grid the same way, with parkour kinds laid across the path
of a robot walking +x: each such tile starts with a flat ``PARKOUR_START`` m platform at its -x end
(the spawn point) followed by obstacles spanning the tile's width. Kinds: ``box_up`` (boxes on
the ground: up, across, down), ``box_down`` (a deck with wells: down, across, up), ``gap`` (pits
``GAP_DEPTH`` deep across the path), ``hurdle`` (thin bars across the path), ``stepping_stones``
(square stones over a pit); any ``rough_tiles`` kind may be mixed in (spawn at its centre).
Difficulty scales each parkour kind between the ranges in ``PARKOUR_DIFFICULTY``. Vertical edges
are one-sample ramps (MuJoCo's triangulation): a gap of width ``w`` is below the deck over exactly
``w`` and at the pit floor over ``w - 2 * resolution``. Units: m.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TILE_KINDS = ("flat", "rough", "slope_up", "slope_down", "stairs_up", "stairs_down", "boxes")

# (easiest, hardest) parameter of each kind: noise amplitude, slope (rise over run), riser or box height.
DIFFICULTY = {
    "rough": (0.01, 0.06),
    "slope_up": (0.0, 0.35),
    "slope_down": (0.0, 0.35),
    "stairs_up": (0.03, 0.16),
    "stairs_down": (0.03, 0.16),
    "boxes": (0.02, 0.15),
}
STAIR_TREAD = 0.30  # m
BOX_CELL = 0.45  # m, footprint of one box in the ``boxes`` kind
NOISE_CELL = 0.20  # m, correlation length of the ``rough`` kind's noise
PLATFORM = 2.0  # m, side of the flat spawn platform in every tile's centre

PARKOUR_KINDS = ("box_up", "box_down", "gap", "hurdle", "stepping_stones")
# (easiest, hardest): box height, drop height, gap width, bar height, gap between stones.
PARKOUR_DIFFICULTY = {  # the hardest row is above the runtime's `hard` course (boxes 0.45, gaps 0.75 m)
    "box_up": (0.05, 0.50),
    "box_down": (0.05, 0.50),
    "gap": (0.10, 0.80),
    "hurdle": (0.05, 0.30),
    "stepping_stones": (0.05, 0.25),
}
# go2_parkour's columns: the parkour kinds (gaps twice) and 2 of 8 stage-1 columns against forgetting
PARKOUR_TILE_KINDS = ("box_up", "box_down", "gap", "gap", "hurdle", "stepping_stones", "stairs_up", "rough")
PARKOUR_START = 2.0  # m, flat start platform at the -x end of a parkour tile; spawn in its middle
PARKOUR_END = 0.5  # m, flat run-out before the +x edge
GAP_DEPTH = 1.0  # m, depth of gaps and of the pit under stepping stones
BOX_LENGTH = 1.0  # m along x of a box top (box_up) or a well floor (box_down); the same flat between
GAP_LANDING = 1.0  # m of deck after each gap
HURDLE_PITCH = 1.5  # m from one hurdle to the next
# m, top of a bar along x (plus a one-sample ramp each side), alternating along a tile: the thin bar is
# the runtime course's (0.05 m, under the scan's 0.1 m spacing, so it is not seen on every step)
HURDLE_THICKNESS = (0.10, 0.05)
STONE_SIZE = (0.50, 0.35)  # m, side of a stepping stone at the easiest and the hardest row


def grid_pattern(
    size: Sequence[float] = (1.6, 1.0), resolution: float = 0.1, center: Sequence[float] = (0.0, 0.0)
) -> np.ndarray:
    """Isaac Lab's GridPattern offsets in the base's yaw frame: [n_y, n_x, 2] (x, y), x along columns,
    moved by ``center`` (m; ``(0.4, 0)`` puts the grid's middle 0.4 m ahead of the base)."""
    eps = 1e-9
    xs = np.arange(-size[0] / 2, size[0] / 2 + eps, resolution) + center[0]
    ys = np.arange(-size[1] / 2, size[1] / 2 + eps, resolution) + center[1]
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([gx, gy], axis=-1)


@dataclass(frozen=True, eq=False)
class HeightField:
    """Ground heights on a regular grid: ``heights[iy, ix]`` at ``origin + (ix, iy) * resolution``."""

    heights: np.ndarray  # float32 [n_y, n_x], m
    resolution: float  # m between samples
    origin: tuple[float, float]  # world (x, y) of sample [0, 0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.heights.shape  # type: ignore[return-value]

    @property
    def extent(self) -> tuple[float, float]:
        """Size (x, y) in m from the first to the last sample."""
        n_y, n_x = self.shape
        return (n_x - 1) * self.resolution, (n_y - 1) * self.resolution

    @property
    def center(self) -> tuple[float, float]:
        ex, ey = self.extent
        return self.origin[0] + ex / 2, self.origin[1] + ey / 2

    def height_at(self, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
        """Surface height (m) at world (x, y), MuJoCo's triangulation; clamped to the grid's edge."""
        return surface_height(self.heights, self.resolution, self.origin, np.asarray(x, float), np.asarray(y, float))


def surface_height(heights, resolution, origin, x, y, xp=np):
    """Height of MuJoCo's triangulated height-field surface at (x, y); ``xp`` is numpy or jax.numpy.

    Cell (ix, iy) spans [x_ix, x_ix+1] x [y_iy, y_iy+1]; with fractions (fx, fy) the point lies in
    the triangle (0,0),(1,0),(1,1) when fx >= fy, else in (0,0),(0,1),(1,1).
    """
    n_y, n_x = heights.shape
    gx = xp.clip((x - origin[0]) / resolution, 0.0, n_x - 1.000001)
    gy = xp.clip((y - origin[1]) / resolution, 0.0, n_y - 1.000001)
    ix, iy = xp.floor(gx).astype(xp.int32), xp.floor(gy).astype(xp.int32)
    fx, fy = gx - ix, gy - iy
    h00, h10 = heights[iy, ix], heights[iy, ix + 1]
    h01, h11 = heights[iy + 1, ix], heights[iy + 1, ix + 1]
    lower = h00 + fx * (h10 - h00) + fy * (h11 - h10)  # fx >= fy
    upper = h00 + fy * (h01 - h00) + fx * (h11 - h01)  # fx < fy
    return xp.where(fx >= fy, lower, upper)


@dataclass(frozen=True, eq=False)
class TileGrid:
    """The curriculum grid: a height field plus what each tile is."""

    field: HeightField
    kinds: tuple[str, ...]  # per column
    rows: int  # difficulty levels
    tile_size: float  # m
    centers: np.ndarray  # [rows, cols, 3] world position of each tile's platform centre (z = its height)

    def difficulty(self, row: int) -> float:
        return row / max(self.rows - 1, 1)


def _blank_grid(rows: int, cols: int, tile_size: float, resolution: float, border: float):
    """Zero heights for ``rows`` x ``cols`` tiles plus the border, zero tile centres, the samples per
    tile and border, and one tile's sample coordinates (x, y) relative to its centre."""
    n_tile = round(tile_size / resolution)
    n_border = round(border / resolution)
    heights = np.zeros((2 * n_border + rows * n_tile + 1, 2 * n_border + cols * n_tile + 1), dtype=np.float64)
    centers = np.zeros((rows, cols, 3))
    local = (np.arange(n_tile + 1) - n_tile / 2) * resolution
    lx, ly = np.meshgrid(local, local, indexing="xy")
    return heights, centers, n_tile, n_border, lx, ly


def rough_tiles(
    seed: int = 0,
    rows: int = 10,
    kinds: Sequence[str] = ("flat", "rough", "slope_up", "slope_down", "stairs_up", "stairs_down", "boxes", "boxes"),
    tile_size: float = 8.0,
    resolution: float = 0.05,
    border: float = 4.0,
    difficulty: Mapping[str, tuple[float, float]] | None = None,
) -> TileGrid:
    """Build the tile grid (see module docstring); deterministic for a seed. Tile (0, 0)'s
    platform centre is at the world origin. ``difficulty`` overrides ``DIFFICULTY`` per kind
    (easiest, hardest row), for a robot of another size."""
    unknown = [k for k in kinds if k not in TILE_KINDS]
    if unknown:
        raise ValueError(f"unknown tile kind(s) {unknown}; choose from {', '.join(TILE_KINDS)}")
    if rows < 1 or not kinds or tile_size < PLATFORM + 1.0 or resolution <= 0 or border < 0:
        raise ValueError("need rows >= 1, at least one kind, tile_size >= 3 m, resolution > 0, border >= 0")
    ranges = DIFFICULTY | dict(difficulty or {})
    rng = np.random.default_rng(seed)
    heights, centers, n_tile, n_border, lx, ly = _blank_grid(rows, len(kinds), tile_size, resolution, border)
    for r in range(rows):
        d = r / max(rows - 1, 1)
        for c, kind in enumerate(kinds):
            tile = _tile(kind, d, lx, ly, tile_size, resolution, rng, ranges)
            y0, x0 = n_border + r * n_tile, n_border + c * n_tile
            heights[y0 : y0 + n_tile + 1, x0 : x0 + n_tile + 1] = tile
            centers[r, c] = (c * tile_size, r * tile_size, tile[n_tile // 2, n_tile // 2])
    origin = (-border - tile_size / 2, -border - tile_size / 2)
    field = HeightField(heights.astype(np.float32), float(resolution), origin)
    return TileGrid(field, tuple(kinds), rows, float(tile_size), centers)


def _tile(
    kind: str,
    d: float,
    lx: np.ndarray,
    ly: np.ndarray,
    size: float,
    res: float,
    rng: np.random.Generator,
    ranges: Mapping[str, tuple[float, float]] = DIFFICULTY,
) -> np.ndarray:
    """Heights of one tile (local grid ``lx``, ``ly`` around its centre); edges at height 0."""
    lo, hi = ranges.get(kind, (0.0, 0.0))
    p = lo + d * (hi - lo)
    half = size / 2
    ring = np.maximum(np.abs(lx), np.abs(ly))  # square distance from the centre
    on_platform = ring <= PLATFORM / 2
    if kind == "flat":
        return np.zeros_like(lx)
    if kind == "rough":
        n = round(size / NOISE_CELL) + 1
        coarse = rng.uniform(-p, p, size=(n, n))
        ix = np.clip(((lx + half) / NOISE_CELL).astype(int), 0, n - 1)
        iy = np.clip(((ly + half) / NOISE_CELL).astype(int), 0, n - 1)
        noise = coarse[iy, ix]
        # one smoothing pass: neighbouring blocks blend over one sample, as rubble does
        noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(np.roll(noise, 1, 0), 1, 1)) / 4
        return np.where(on_platform, 0.0, noise) * _edge_fade(ring, half, res)
    if kind in ("slope_up", "slope_down"):
        # height rises (up) or falls (down) with the distance from the platform; edges at 0
        run = np.clip(ring - PLATFORM / 2, 0.0, half - PLATFORM / 2)
        total = p * (half - PLATFORM / 2)
        rise = total - p * run  # platform at +total, edges at 0
        return rise if kind == "slope_down" else -rise
    if kind in ("stairs_up", "stairs_down"):
        steps_from_edge = np.floor(np.clip(half - ring, 0.0, half - PLATFORM / 2) / STAIR_TREAD)
        top = np.floor((half - PLATFORM / 2) / STAIR_TREAD)
        h = np.minimum(steps_from_edge, top) * p
        # stairs_down: the platform is the top, the robot walks down; stairs_up: a pit it climbs out of
        return h if kind == "stairs_down" else -h
    if kind == "boxes":
        n = int(np.ceil(size / BOX_CELL)) + 1
        cells = rng.uniform(0.0, p, size=(n, n))
        ix = np.clip(((lx + half) / BOX_CELL).astype(int), 0, n - 1)
        iy = np.clip(((ly + half) / BOX_CELL).astype(int), 0, n - 1)
        return np.where(on_platform, 0.0, cells[iy, ix]) * _edge_fade(ring, half, res)
    raise ValueError(f"unknown tile kind {kind!r}")


def parkour_tiles(
    seed: int = 0,
    rows: int = 10,
    kinds: Sequence[str] = PARKOUR_TILE_KINDS,
    tile_size: float = 8.0,
    resolution: float = 0.05,
    border: float = 12.0,
) -> TileGrid:
    """The stage-2 parkour grid (see module docstring); ``centers`` are the spawn points. The
    spawn point of column 0's tiles is at world x = 0 (parkour kinds); row ``r`` lies at y = r * tile_size."""
    unknown = [k for k in kinds if k not in PARKOUR_KINDS + TILE_KINDS]
    if unknown:
        raise ValueError(f"unknown tile kind(s) {unknown}; choose from {', '.join(PARKOUR_KINDS + TILE_KINDS)}")
    if rows < 1 or not kinds or tile_size < PARKOUR_START + 2.0 or resolution <= 0 or border < 0:
        raise ValueError("need rows >= 1, at least one kind, tile_size >= 4 m, resolution > 0, border >= 0")
    rng = np.random.default_rng(seed)
    heights, centers, n_tile, n_border, lx, ly = _blank_grid(rows, len(kinds), tile_size, resolution, border)
    half = tile_size / 2
    start_x = -half + PARKOUR_START / 2  # spawn point of a parkour tile, local x
    for r in range(rows):
        d = r / max(rows - 1, 1)
        for c, kind in enumerate(kinds):
            parkour = kind in PARKOUR_KINDS
            tile = (
                _parkour_tile(kind, d, lx, ly, tile_size, resolution)
                if parkour
                else _tile(kind, d, lx, ly, tile_size, resolution, rng)
            )
            y0, x0 = n_border + r * n_tile, n_border + c * n_tile
            heights[y0 : y0 + n_tile + 1, x0 : x0 + n_tile + 1] = tile
            sx = start_x if parkour else 0.0
            ix = round((sx + half) / resolution)
            centers[r, c] = (c * tile_size + sx - start_x, r * tile_size, tile[n_tile // 2, ix])
    origin = (-border - half - start_x, -border - half)
    field = HeightField(heights.astype(np.float32), float(resolution), origin)
    return TileGrid(field, tuple(kinds), rows, float(tile_size), centers)


def parkour_obstacles(kind: str, d: float, tile_size: float, resolution: float = 0.05) -> list[tuple[float, float]]:
    """The obstacles of a parkour tile along x (local, tile centre at 0): (start, end) of each box
    top, well, gap, bar top or stone field; snapped to the sample grid."""
    snap = lambda v: round(v / resolution) * resolution  # noqa: E731
    lo, hi = PARKOUR_DIFFICULTY[kind]
    p = lo + d * (hi - lo)
    half = tile_size / 2
    x, end = -half + PARKOUR_START, half - PARKOUR_END
    if kind in ("box_up", "box_down"):
        length, pitch = BOX_LENGTH, 2 * BOX_LENGTH
    elif kind == "gap":
        length = max(snap(p), 2 * resolution)
        pitch = length + GAP_LANDING
    elif kind == "hurdle":
        spans = []
        while x + HURDLE_THICKNESS[len(spans) % 2] <= end + 1e-9:
            spans.append((snap(x), snap(x + HURDLE_THICKNESS[len(spans) % 2])))
            x += HURDLE_PITCH
        return spans
    else:
        return [(snap(x), snap(end))]
    spans = []
    while x + length <= end + 1e-9:
        spans.append((snap(x), snap(x + length)))
        x += pitch
    return spans


def _parkour_tile(kind: str, d: float, lx: np.ndarray, ly: np.ndarray, size: float, res: float) -> np.ndarray:
    """Heights of one parkour tile; obstacles span the tile's width, crossed by walking +x."""
    lo, hi = PARKOUR_DIFFICULTY[kind]
    p = lo + d * (hi - lo)
    eps = res * 1e-3
    spans = parkour_obstacles(kind, d, size, res)
    inside = lambda a, b: (lx >= a - eps) & (lx <= b + eps)  # noqa: E731  # closed: both edge samples
    between = lambda a, b: (lx > a + eps) & (lx < b - eps)  # noqa: E731  # open: the opening is exactly b - a
    h = np.zeros_like(lx)
    if kind == "box_up":
        for a, b in spans:
            h = np.where(inside(a, b), p, h)
    elif kind == "box_down":
        h = np.full_like(lx, p)
        for a, b in spans:
            h = np.where(inside(a, b), 0.0, h)
    elif kind == "gap":
        for a, b in spans:
            h = np.where(between(a, b), -GAP_DEPTH, h)
    elif kind == "hurdle":
        for a, b in spans:
            h = np.where(inside(a, b), p, h)
    elif kind == "stepping_stones":
        (a, b), stone = spans[0], STONE_SIZE[0] + d * (STONE_SIZE[1] - STONE_SIZE[0])
        pitch = stone + p
        # stone cells from the pit's start along x, centred on the tile's axis along y
        fx = np.mod(lx - a, pitch)
        fy = np.mod(ly + stone / 2, pitch)
        on_stone = (fx <= stone + eps) & (fy <= stone + eps)
        h = np.where(between(a, b) & ~on_stone, -GAP_DEPTH, h)
    ring = np.maximum(np.abs(lx), np.abs(ly))
    return h * _edge_fade(ring, size / 2, res)


TILE_GENERATORS = {"rough_tiles": rough_tiles, "parkour_tiles": parkour_tiles}


def _edge_fade(ring: np.ndarray, half: float, res: float) -> np.ndarray:
    """1 inside the tile, 0 on its outermost sample ring, so neighbouring tiles meet at height 0."""
    return (ring < half - res / 2).astype(float)


__all__ = [
    "DIFFICULTY",
    "PARKOUR_DIFFICULTY",
    "PARKOUR_KINDS",
    "PARKOUR_TILE_KINDS",
    "TILE_GENERATORS",
    "TILE_KINDS",
    "HeightField",
    "TileGrid",
    "grid_pattern",
    "parkour_obstacles",
    "parkour_tiles",
    "rough_tiles",
    "surface_height",
]
