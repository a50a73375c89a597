"""The terrain as the trainer sees it on the GPU: height lookups, the height scan, the curriculum.

Heights come from ``krabgraph.nodes.mujoco.heightfield.surface_height`` evaluated with
``jax.numpy``: the formula of MuJoCo's triangulated height-field surface, the one the CPU HAL's
ray-cast scan hits (MJX rays do not hit height fields). The scan grid, yaw alignment, offset and
ordering are the HAL's (``HeightScanner``): values ``base z - ground z - offset``, x fastest.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from krabgraph.nodes.mujoco.heightfield import TileGrid, grid_pattern, surface_height


class TerrainArrays(NamedTuple):
    """Device arrays of the tile grid (passed into jitted functions as arguments, not constants)."""

    heights: jax.Array  # [n_y, n_x]
    centers: jax.Array  # [rows, cols, 3] platform centre of each tile
    scan_xy: jax.Array  # [n_scan, 2] scan points in the base's yaw frame, x fastest
    edges: jax.Array | None = None  # [n_y, n_x] bool: samples on or next to a terrain edge (parkour tasks)


EDGE_STEP = 0.04  # m: a height difference between neighbouring samples above this is an edge


def terrain_arrays(
    grid: TileGrid,
    scan_size: tuple[float, float],
    scan_resolution: float,
    edges: bool = False,
    scan_center: tuple[float, float] = (0.0, 0.0),
) -> TerrainArrays:
    pattern = grid_pattern(
        scan_size, scan_resolution, scan_center
    )  # [n_y, n_x, 2], x along columns: x fastest flattened
    return TerrainArrays(
        heights=jnp.asarray(grid.field.heights),
        centers=jnp.asarray(grid.centers, dtype=jnp.float32),
        scan_xy=jnp.asarray(pattern.reshape(-1, 2), dtype=jnp.float32),
        edges=jnp.asarray(edge_mask(grid.field.heights)) if edges else None,
    )


def edge_mask(heights: np.ndarray, step: float = EDGE_STEP) -> np.ndarray:
    """Extreme Parkour's edge mask from the height array: samples whose height differs from a
    4-neighbour's by more than ``step``, dilated by one sample (the one-sample ramp on each side)."""
    h = np.asarray(heights, np.float64)
    edge = np.zeros(h.shape, bool)
    dx = np.abs(np.diff(h, axis=1)) > step
    dy = np.abs(np.diff(h, axis=0)) > step
    edge[:, :-1] |= dx
    edge[:, 1:] |= dx
    edge[:-1] |= dy
    edge[1:] |= dy
    grown = edge.copy()
    grown[:, 1:] |= edge[:, :-1]
    grown[:, :-1] |= edge[:, 1:]
    grown[1:] |= edge[:-1]
    grown[:-1] |= edge[1:]
    return grown


def on_edge(grid: TileGrid, edges: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Whether world points (any shape) lie at an edge sample (nearest sample of ``edge_mask``)."""
    field = grid.field
    n_y, n_x = edges.shape
    ix = jnp.clip(jnp.round((x - field.origin[0]) / field.resolution).astype(jnp.int32), 0, n_x - 1)
    iy = jnp.clip(jnp.round((y - field.origin[1]) / field.resolution).astype(jnp.int32), 0, n_y - 1)
    return edges[iy, ix]


def ground_height(grid: TileGrid, arrays: TerrainArrays, x: jax.Array, y: jax.Array) -> jax.Array:
    """Ground height (m) under world points (any shape)."""
    field = grid.field
    return surface_height(arrays.heights, field.resolution, field.origin, x, y, xp=jnp)


def height_scan(grid: TileGrid, heights, scan_xy, base_pos, yaw, offset: float, xp=jnp):
    """The HAL's height scan for one base: ``base z - ground z - offset`` at the yaw-aligned grid points
    ``scan_xy`` [n, 2] (x fastest); ``xp`` is ``jax.numpy`` (training) or ``numpy`` (tests)."""
    c, s = xp.cos(yaw), xp.sin(yaw)
    px, py = scan_xy[:, 0], scan_xy[:, 1]
    wx = base_pos[0] + c * px - s * py
    wy = base_pos[1] + s * px + c * py
    field = grid.field
    return base_pos[2] - surface_height(heights, field.resolution, field.origin, wx, wy, xp=xp) - offset


def update_level(
    level: jax.Array, walked: jax.Array, commanded: jax.Array, rows: int, tile_size: float, key: jax.Array
) -> jax.Array:
    """legged_gym's terrain curriculum for one finished episode: up a row after walking more than
    half a tile, down a row after walking less than half the commanded distance; robots that
    solve the hardest row restart on a random row."""
    up = walked > tile_size / 2
    down = (walked < 0.5 * commanded) & ~up
    new = level + up.astype(jnp.int32) - down.astype(jnp.int32)
    random_row = jax.random.randint(key, (), 0, rows)
    return jnp.where(new >= rows, random_row, jnp.clip(new, 0, rows - 1))


__all__ = [
    "TerrainArrays",
    "edge_mask",
    "ground_height",
    "height_scan",
    "on_edge",
    "terrain_arrays",
    "update_level",
]
