"""Ray-cast exteroception on the CPU with ``mujoco.mj_multiRay``: height scan and depth image.

Both sensors see only geoms outside the robot's geom groups (``Scene.world_geomgroup``), so the
robot never occludes itself.

* ``HeightScanner``: Isaac Lab's GridPattern (default 1.6 m x 1.0 m at 0.1 m -> 11 x 17 = 187
  points), yaw-aligned around the base or, with ``center`` (m, base yaw frame), around a point
  ahead of it (a look-ahead scan), value = base z - hit z - offset, shape [n_y, n_x] with x
  varying fastest when flattened. ``mj_multiRay`` casts from one point, so all rays leave a
  common origin ``RAY_ORIGIN_HEIGHT`` above the base and pass through the grid points at base
  height: they are vertical to within 1 mrad, which moves a sample by at most 1 mm per metre of
  height difference. Rays that hit nothing within ``max_distance`` below the base read as a hit
  at base z - ``max_distance`` (value ``max_distance - offset``).
* ``DepthCamera``: pinhole camera with square pixels, mounted on the base (position, roll/pitch/
  yaw in the base frame; camera x = optical axis forward, y left, z up). Returns metric depth
  along the optical axis, float32 [height, width], row 0 at the top. Pixels with no hit within
  ``max_range`` read ``miss_value``: 0 (default, "no return" as in the DepthImage message) or
  ``max_range``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mujoco
import numpy as np

from krabgraph.msgs import DepthImage, HeightScan, set_array
from krabgraph.nodes.mujoco.heightfield import grid_pattern
from krabgraph.nodes.mujoco.scene import Scene
from krabgraph.nodes.rotations import matrix_from_rpy, yaw_of_matrix

RAY_ORIGIN_HEIGHT = 1000.0  # m above the base: common origin of the height-scan rays


class HeightScanner:
    """Height samples of the terrain around the base (see module docstring)."""

    def __init__(
        self,
        scene: Scene,
        size: Sequence[float] = (1.6, 1.0),
        resolution: float = 0.1,
        offset: float = 0.5,
        max_distance: float = 3.0,
        center: Sequence[float] = (0.0, 0.0),
    ):
        self.scene = scene
        self.size = (float(size[0]), float(size[1]))
        self.resolution = float(resolution)
        self.offset = float(offset)
        self.max_distance = float(max_distance)
        self.center = (float(center[0]), float(center[1]))
        self.grid = grid_pattern(self.size, self.resolution, self.center)
        self.shape = self.grid.shape[:2]
        n = self.grid.shape[0] * self.grid.shape[1]
        self._xy = self.grid.reshape(n, 2)
        self._vec = np.zeros((n, 3))
        self._geomid = np.zeros(n, dtype=np.int32)
        self._dist = np.zeros(n)

    def scan(self, data: mujoco.MjData) -> np.ndarray:
        """Heights, float32 [n_y, n_x], for the current state of ``data`` (needs kinematics done)."""
        s = self.scene
        base = data.xpos[s.base_body]
        rot = data.xmat[s.base_body]
        yaw = yaw_of_matrix(rot.reshape(3, 3))
        c, sn = math.cos(yaw), math.sin(yaw)
        origin = np.array([base[0], base[1], base[2] + RAY_ORIGIN_HEIGHT])
        self._vec[:, 0] = c * self._xy[:, 0] - sn * self._xy[:, 1]
        self._vec[:, 1] = sn * self._xy[:, 0] + c * self._xy[:, 1]
        self._vec[:, 2] = -RAY_ORIGIN_HEIGHT
        self._vec /= np.linalg.norm(self._vec, axis=1, keepdims=True)
        cutoff = RAY_ORIGIN_HEIGHT + self.max_distance + 10.0
        mujoco.mj_multiRay(
            s.model, data, origin, self._vec.reshape(-1), s.world_geomgroup, 1, -1,
            self._geomid, self._dist, None, len(self._dist), cutoff,
        )  # fmt: skip
        hit_z = origin[2] + self._dist * self._vec[:, 2]
        floor = base[2] - self.max_distance
        hit_z = np.where((self._geomid >= 0) & (hit_z >= floor), hit_z, floor)
        return (base[2] - hit_z - self.offset).astype(np.float32).reshape(self.shape)

    def message(self, data: mujoco.MjData, stamp_ns: int, msg: HeightScan | None = None) -> HeightScan:
        """A filled ``HeightScan`` message (``msg`` reused if given)."""
        msg = msg if msg is not None else HeightScan()
        msg.header.stamp_ns = stamp_ns
        msg.header.frame_id = self.scene.robot.base_body
        set_array(msg.heights, self.scan(data), np.float32)
        msg.resolution = self.resolution
        msg.size_x, msg.size_y = self.size
        msg.offset = self.offset
        msg.max_distance = self.max_distance
        msg.center_x, msg.center_y = self.center
        return msg


class DepthCamera:
    """Forward depth image by ray casting (see module docstring). Defaults: 58 x 87 pixels,
    58° vertical field of view, 2 m range, mounted at the Go2's head pitched 30° down."""

    def __init__(
        self,
        scene: Scene,
        width: int = 87,
        height: int = 58,
        fovy_deg: float = 58.0,
        max_range: float = 2.0,
        mount_pos: Sequence[float] = (0.33, 0.0, 0.04),
        mount_rpy_deg: Sequence[float] = (0.0, 30.0, 0.0),
        miss_value: str = "zero",
    ):
        if miss_value not in ("zero", "max"):
            raise ValueError(f"miss_value must be 'zero' or 'max', got {miss_value!r}")
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.fovy_deg = float(fovy_deg)
        self.max_range = float(max_range)
        self.miss = 0.0 if miss_value == "zero" else self.max_range
        self.mount_pos = np.asarray(mount_pos, dtype=float)
        self.mount_rot = matrix_from_rpy(*np.radians(np.asarray(mount_rpy_deg, dtype=float)))
        f = (self.height / 2) / math.tan(math.radians(self.fovy_deg) / 2)
        u = (np.arange(self.width) + 0.5 - self.width / 2) / f  # rightwards
        v = (np.arange(self.height) + 0.5 - self.height / 2) / f  # downwards
        uu, vv = np.meshgrid(u, v, indexing="xy")
        rays = np.stack([np.ones_like(uu), -uu, -vv], axis=-1).reshape(-1, 3)
        norm = np.linalg.norm(rays, axis=1)
        self._rays_cam = rays / norm[:, None]  # unit directions, camera frame
        self._axis_cos = 1.0 / norm  # cosine between each ray and the optical axis
        n = len(norm)
        self._geomid = np.zeros(n, dtype=np.int32)
        self._dist = np.zeros(n)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """Depth image, float32 [height, width], for the current state of ``data``."""
        s = self.scene
        base_rot = data.xmat[s.base_body].reshape(3, 3)
        origin = data.xpos[s.base_body] + base_rot @ self.mount_pos
        vec = self._rays_cam @ (base_rot @ self.mount_rot).T
        mujoco.mj_multiRay(
            s.model, data, origin, vec.reshape(-1), s.world_geomgroup, 1, -1,
            self._geomid, self._dist, None, len(self._dist), self.max_range / self._axis_cos.min(),
        )  # fmt: skip
        depth = self._dist * self._axis_cos
        depth = np.where((self._geomid >= 0) & (depth <= self.max_range), depth, self.miss)
        return depth.astype(np.float32).reshape(self.height, self.width)

    def message(self, data: mujoco.MjData, stamp_ns: int, msg: DepthImage | None = None) -> DepthImage:
        """A filled ``DepthImage`` message (``msg`` reused if given)."""
        msg = msg if msg is not None else DepthImage()
        msg.header.stamp_ns = stamp_ns
        msg.header.frame_id = "depth_camera"
        set_array(msg.depth, self.render(data), np.float32)
        msg.height, msg.width = self.height, self.width
        msg.fovy_deg = self.fovy_deg
        msg.max_range = self.max_range
        return msg


__all__ = ["RAY_ORIGIN_HEIGHT", "DepthCamera", "HeightScanner", "grid_pattern"]
