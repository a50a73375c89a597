"""The robot and its world for Foxglove's 3D panel: transforms, robot geoms, terrain, height scan.

Pure geometry on NumPy and MuJoCo, turned into ``foxglove.messages`` values:

- ``RobotModel``: forward kinematics of a robot description's MuJoCo model (``build_scene``, the
  same model the MuJoCo HAL simulates). ``transforms(state)`` gives ``world -> base`` (the state's
  base pose) and each body relative to its parent (frame ids = body names) from the state's joint
  positions, by name.
- ``robot_entities``: one ``SceneEntity`` per body, locked to the body's frame: boxes, spheres,
  ellipsoids, cylinders, capsules (a cylinder and two spheres) and meshes (a ``TriangleListPrimitive``
  of the model's mesh, its vertices merged on a ``MESH_CELL_M`` grid). Geoms of MuJoCo's default
  visible groups (0-2) are drawn in their colour, the others (collision geoms) faint.
- ``terrain_entities``: the terrain a MuJoCo HAL built (``make_terrain``): its boxes as cubes, the
  ground plane as a thin slab, a height field as a triangle list (MuJoCo's triangulation).
- ``scan_points``: a ``HeightScan`` in the world frame (the grid of ``nodes/mujoco/sensors.py`` placed
  at the base's position and yaw; z = base z - value - offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from krabgraph.msgs import HeightScan, RobotState, to_numpy

if TYPE_CHECKING:
    from krabgraph.nodes.mujoco.terrain import Terrain

MESH_CELL_M = 0.005  # mesh vertices closer than this are merged (the Go2's 400 k triangles become ~70 k)
VISIBLE_GROUPS = (0, 1, 2)  # MuJoCo's viewer shows these geom groups by default
COLLISION_ALPHA = 0.3
FLOOR_MARGIN_M = 5.0  # the ground slab reaches this far beyond the terrain's boxes
FLOOR_MIN_M = 20.0
FLOOR_THICKNESS_M = 0.01
TERRAIN_RGBA = (0.55, 0.5, 0.42, 1.0)
FLOOR_RGBA = (0.3, 0.35, 0.4, 1.0)
MAX_FIELD_VERTICES = 100_000  # a larger height field is drawn from every k-th sample
WORLD = "world"

Pose7 = tuple[tuple[float, float, float], tuple[float, float, float, float]]  # position, quaternion (w, x, y, z)


@dataclass(frozen=True)
class FrameSpec:
    """One transform: ``child`` in ``parent``; quaternion scalar first (w, x, y, z)."""

    parent: str
    child: str
    position: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]


class RobotModel:
    """Forward kinematics of one robot description's MuJoCo model (see the module docstring)."""

    def __init__(self, robot_name: str):
        import mujoco

        from krabgraph.nodes.mujoco.scene import build_scene
        from krabgraph.nodes.robots import load_robot

        scene = build_scene(load_robot(robot_name))
        self.mujoco = mujoco
        self.name = scene.robot.name
        self.model = scene.model
        self.data = mujoco.MjData(self.model)
        self.base = scene.base_body
        self.base_name = self._body_name(self.base)
        self.bodies = [int(b) for b in scene.robot_bodies]  # base first: MuJoCo numbers parents first
        self.body_names = [self._body_name(b) for b in self.bodies]
        self.joint_qpos = dict(zip(scene.robot.joint_names, (int(a) for a in scene.qpos_adr), strict=True))
        b = scene.base_qpos_adr
        self.data.qpos[b : b + 7] = (0, 0, 0, 1, 0, 0, 0)  # FK with the base at the origin: poses relative to it
        self.data.qpos[scene.qpos_adr] = scene.robot.default_pos

    def _body_name(self, body: int) -> str:
        return self.mujoco.mj_id2name(self.model, self.mujoco.mjtObj.mjOBJ_BODY, body) or f"body{body}"

    def set_joints(self, names: list[str], positions: np.ndarray) -> list[str]:
        """Joint positions by name; returns the names this robot does not have."""
        unknown = []
        for name, q in zip(names, positions, strict=False):
            adr = self.joint_qpos.get(name)
            if adr is None:
                unknown.append(name)
            elif math.isfinite(q):
                self.data.qpos[adr] = q
        return unknown

    def body_frames(self) -> list[FrameSpec]:
        """Each non-base body relative to its parent, for the joint positions set last."""
        mj, model, data = self.mujoco, self.model, self.data
        mj.mj_kinematics(model, data)
        out = []
        inv = np.zeros(4)
        rel_q = np.zeros(4)
        rel_p = np.zeros(3)
        for body, name in zip(self.bodies[1:], self.body_names[1:], strict=True):
            parent = int(model.body_parentid[body])
            mj.mju_negQuat(inv, data.xquat[parent])
            mj.mju_mulQuat(rel_q, inv, data.xquat[body])
            mj.mju_rotVecQuat(rel_p, data.xpos[body] - data.xpos[parent], inv)
            out.append(FrameSpec(self._body_name(parent), name, _tuple3(rel_p), _tuple4(rel_q)))
        return out

    def transforms(self, state: RobotState) -> list[FrameSpec]:
        """``world -> base`` from the state's base pose (``base_pose``), then every body from its parent."""
        self.set_joints(list(state.joints.name), _positions(state))
        return [FrameSpec(WORLD, self.base_name, *base_pose(state)), *self.body_frames()]

    def geoms(self) -> list[tuple[str, int]]:
        """(body name, geom id) of every geom on the robot's bodies."""
        names = dict(zip(self.bodies, self.body_names, strict=True))
        return [(names[int(b)], g) for g, b in enumerate(self.model.geom_bodyid) if int(b) in names]


def _positions(state: RobotState) -> np.ndarray:
    try:
        return np.asarray(to_numpy(state.joints.position), dtype=float).reshape(-1)
    except ValueError:
        return np.zeros(0)


def base_pose(state: RobotState) -> Pose7:
    """The base's position and orientation: the ground truth when the state has it (``has_base``),
    else the origin with the IMU's orientation (a real robot without an estimator)."""
    if state.has_base:
        p, q = state.base.position, state.base.orientation
        return (p.x, p.y, p.z), _unit((q.w, q.x, q.y, q.z))
    q = state.imu.orientation
    return (0.0, 0.0, 0.0), _unit((q.w, q.x, q.y, q.z))


def _unit(q: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    n = math.sqrt(sum(v * v for v in q))
    return (1.0, 0.0, 0.0, 0.0) if not math.isfinite(n) or n < 1e-9 else tuple(v / n for v in q)  # type: ignore[return-value]


def _tuple3(v: Any) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _tuple4(v: Any) -> tuple[float, float, float, float]:
    return float(v[0]), float(v[1]), float(v[2]), float(v[3])


def yaw_of_quaternion(q: tuple[float, float, float, float]) -> float:
    w, x, y, z = q
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# -- foxglove messages ------------------------------------------------------------------------------
def timestamp(ns: int):
    from foxglove.messages import Timestamp

    return Timestamp(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000)


def _pose(position: Any, quaternion_wxyz: Any):
    from foxglove.messages import Pose, Quaternion, Vector3

    w, x, y, z = (float(v) for v in quaternion_wxyz)
    px, py, pz = (float(v) for v in position)
    return Pose(position=Vector3(x=px, y=py, z=pz), orientation=Quaternion(x=x, y=y, z=z, w=w))


def _vec(x: float, y: float, z: float):
    from foxglove.messages import Vector3

    return Vector3(x=float(x), y=float(y), z=float(z))


def _color(rgba: Any):
    from foxglove.messages import Color

    r, g, b, a = (float(v) for v in rgba)
    return Color(r=r, g=g, b=b, a=a)


def frame_transforms(frames: list[FrameSpec], stamp_ns: int):
    """A ``foxglove.FrameTransforms`` of ``frames``, all stamped ``stamp_ns``."""
    from foxglove.messages import FrameTransform, FrameTransforms, Quaternion, Vector3

    t = timestamp(stamp_ns)
    return FrameTransforms(
        transforms=[
            FrameTransform(
                timestamp=t,
                parent_frame_id=f.parent,
                child_frame_id=f.child,
                translation=Vector3(x=f.position[0], y=f.position[1], z=f.position[2]),
                rotation=Quaternion(w=f.quaternion[0], x=f.quaternion[1], y=f.quaternion[2], z=f.quaternion[3]),
            )
            for f in frames
        ]
    )


@dataclass
class Primitives:
    """The primitives of one scene entity, as ``SceneEntity`` takes them."""

    cubes: list = field(default_factory=list)
    spheres: list = field(default_factory=list)
    cylinders: list = field(default_factory=list)
    triangles: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.cubes) + len(self.spheres) + len(self.cylinders) + len(self.triangles)

    def entity(self, entity_id: str, frame_id: str, stamp_ns: int):
        from foxglove.messages import SceneEntity

        return SceneEntity(
            timestamp=timestamp(stamp_ns),
            frame_id=frame_id,
            id=entity_id,
            frame_locked=True,
            cubes=self.cubes,
            spheres=self.spheres,
            cylinders=self.cylinders,
            triangles=self.triangles,
        )


def robot_entities(robot: RobotModel, stamp_ns: int) -> list:
    """One ``SceneEntity`` per robot body with its geoms (see the module docstring)."""
    by_body: dict[str, Primitives] = {}
    for body, geom in robot.geoms():
        _add_geom(by_body.setdefault(body, Primitives()), robot, geom)
    return [p.entity(f"robot/{body}", body, stamp_ns) for body, p in by_body.items() if p.count]


def geom_color(model: Any, geom: int) -> tuple[float, float, float, float]:
    """The geom's material colour (or its own), faint outside MuJoCo's default visible groups."""
    mat = int(model.geom_matid[geom])
    r, g, b, a = (float(v) for v in (model.mat_rgba[mat] if mat >= 0 else model.geom_rgba[geom]))
    if int(model.geom_group[geom]) not in VISIBLE_GROUPS:
        a = min(a, COLLISION_ALPHA)
    return r, g, b, a


def _add_geom(out: Primitives, robot: RobotModel, geom: int) -> None:
    from foxglove.messages import CubePrimitive, CylinderPrimitive, SpherePrimitive

    mj, model = robot.mujoco, robot.model
    kind, size = int(model.geom_type[geom]), model.geom_size[geom]
    pos, quat = model.geom_pos[geom], model.geom_quat[geom]
    pose, color = _pose(pos, quat), _color(geom_color(model, geom))
    types = mj.mjtGeom
    if kind == types.mjGEOM_BOX:
        out.cubes.append(CubePrimitive(pose=pose, size=_vec(*(2 * size)), color=color))
    elif kind == types.mjGEOM_SPHERE:
        d = 2 * size[0]
        out.spheres.append(SpherePrimitive(pose=pose, size=_vec(d, d, d), color=color))
    elif kind == types.mjGEOM_ELLIPSOID:
        out.spheres.append(SpherePrimitive(pose=pose, size=_vec(*(2 * size)), color=color))
    elif kind == types.mjGEOM_CYLINDER:
        d = 2 * size[0]
        out.cylinders.append(CylinderPrimitive(pose=pose, size=_vec(d, d, 2 * size[1]), color=color))
    elif kind == types.mjGEOM_CAPSULE:
        _add_capsule(out, pos, quat, size, color)
    elif kind == types.mjGEOM_MESH:
        vertices, faces = mesh_arrays(model, int(model.geom_dataid[geom]))
        out.triangles.append(triangle_list(vertices, faces, pose, color))


def _add_capsule(out: Primitives, pos: np.ndarray, quat: np.ndarray, size: np.ndarray, color: Any) -> None:
    from foxglove.messages import CylinderPrimitive, SpherePrimitive

    d, half = 2 * size[0], size[1]
    axis = _rotate(quat, np.array([0.0, 0.0, half]))
    out.cylinders.append(CylinderPrimitive(pose=_pose(pos, quat), size=_vec(d, d, 2 * half), color=color))
    for end in (pos + axis, pos - axis):
        out.spheres.append(SpherePrimitive(pose=_pose(end, quat), size=_vec(d, d, d), color=color))


def _rotate(quat: np.ndarray, v: np.ndarray) -> np.ndarray:
    w, x, y, z = quat
    u = np.array([x, y, z])
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def mesh_arrays(model: Any, mesh: int, cell: float = MESH_CELL_M) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's vertices and triangles, vertices within ``cell`` merged (triangles that collapse dropped)."""
    v0, nv = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
    f0, nf = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
    return simplify_mesh(model.mesh_vert[v0 : v0 + nv], model.mesh_face[f0 : f0 + nf], cell)


def simplify_mesh(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: one vertex per occupied ``cell`` grid cell; degenerate triangles dropped."""
    keys = np.round(np.asarray(vertices) / cell).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    tri = inverse.reshape(-1)[np.asarray(faces)]
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return np.asarray(vertices, dtype=float)[first], tri[keep]


def triangle_list(vertices: np.ndarray, faces: np.ndarray, pose: Any, color: Any):
    from foxglove.messages import Point3, TriangleListPrimitive

    points = [Point3(x=x, y=y, z=z) for x, y, z in np.asarray(vertices, dtype=float).tolist()]
    return TriangleListPrimitive(pose=pose, points=points, color=color, indices=np.asarray(faces).reshape(-1).tolist())


def terrain_entities(terrain: Terrain, stamp_ns: int) -> list:
    """The terrain as ``SceneEntity`` values in the world frame: ``terrain/boxes`` (one cube per box),
    ``terrain/ground`` (the plane at ``floor_z``) and, with a height field, ``terrain/heightfield``."""
    from foxglove.messages import CubePrimitive

    identity = (1.0, 0.0, 0.0, 0.0)
    boxes = Primitives(
        cubes=[
            CubePrimitive(
                pose=_pose(b.center, identity),
                size=_vec(*(2 * np.asarray(b.half_size))),
                color=_color(_shade(TERRAIN_RGBA, i)),
            )
            for i, b in enumerate(terrain.boxes)
        ]
    )
    (x0, y0), (x1, y1) = _extent(terrain)
    ground = Primitives(
        cubes=[
            CubePrimitive(
                pose=_pose(((x0 + x1) / 2, (y0 + y1) / 2, terrain.floor_z - FLOOR_THICKNESS_M / 2), identity),
                size=_vec(x1 - x0, y1 - y0, FLOOR_THICKNESS_M),
                color=_color(FLOOR_RGBA),
            )
        ]
    )
    out = [boxes.entity("terrain/boxes", WORLD, stamp_ns), ground.entity("terrain/ground", WORLD, stamp_ns)]
    if terrain.heightfield is not None:
        field = Primitives(triangles=[heightfield_triangles(terrain.heightfield)])
        out.append(field.entity("terrain/heightfield", WORLD, stamp_ns))
    return out


def _shade(rgba: tuple[float, float, float, float], i: int) -> tuple[float, float, float, float]:
    k = 0.8 + 0.35 * ((i * 0.618) % 1.0)
    return min(rgba[0] * k, 1.0), min(rgba[1] * k, 1.0), min(rgba[2] * k, 1.0), rgba[3]


def _extent(terrain: Terrain) -> tuple[tuple[float, float], tuple[float, float]]:
    """The ground slab's corners: the boxes' and height field's footprint plus a margin, at least
    ``FLOOR_MIN_M`` square around the origin."""
    lo = np.array([-FLOOR_MIN_M / 2, -FLOOR_MIN_M / 2])
    hi = -lo
    for b in terrain.boxes:
        c, h = np.asarray(b.center[:2]), np.asarray(b.half_size[:2])
        lo, hi = np.minimum(lo, c - h - FLOOR_MARGIN_M), np.maximum(hi, c + h + FLOOR_MARGIN_M)
    if terrain.heightfield is not None:
        o, e = np.asarray(terrain.heightfield.origin), np.asarray(terrain.heightfield.extent)
        lo, hi = np.minimum(lo, o - FLOOR_MARGIN_M), np.maximum(hi, o + e + FLOOR_MARGIN_M)
    return (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1]))


def heightfield_triangles(field: Any, max_vertices: int = MAX_FIELD_VERTICES):
    """A height field as one triangle list: two triangles per cell as MuJoCo splits it, from every
    ``k``-th sample when the grid holds more than ``max_vertices``."""
    heights = np.asarray(field.heights, dtype=float)
    k = max(1, math.ceil(math.sqrt(heights.size / max_vertices)))
    h = heights[::k, ::k]
    n_y, n_x = h.shape
    xs = field.origin[0] + np.arange(n_x) * field.resolution * k
    ys = field.origin[1] + np.arange(n_y) * field.resolution * k
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    vertices = np.stack([gx, gy, h], axis=-1).reshape(-1, 3)
    i = (np.arange(n_y - 1)[:, None] * n_x + np.arange(n_x - 1)[None, :]).reshape(-1)
    faces = np.concatenate(
        [np.stack([i, i + 1, i + n_x + 1], axis=1), np.stack([i, i + n_x + 1, i + n_x], axis=1)]
    )  # (0,0),(1,0),(1,1) and (0,0),(1,1),(0,1): ``heightfield.surface_height``
    return triangle_list(vertices, faces, _pose((0, 0, 0), (1, 0, 0, 0)), _color(TERRAIN_RGBA))


def scene_update(entities: list):
    from foxglove.messages import SceneUpdate

    return SceneUpdate(entities=entities)


# -- height scan ------------------------------------------------------------------------------------
class ScanShapeError(ValueError):
    """A HeightScan whose heights do not fill the grid its geometry fields describe."""


def scan_points(scan: HeightScan, position: tuple[float, float, float], quaternion: Any) -> np.ndarray:
    """The scan's samples as world points [n, 3]: the grid (``grid_pattern`` of its size, resolution
    and centre) turned by the base's yaw and moved to its position; z = base z - value - offset."""
    from krabgraph.nodes.mujoco.heightfield import grid_pattern

    heights = np.asarray(to_numpy(scan.heights), dtype=float)
    grid = grid_pattern((scan.size_x, scan.size_y), scan.resolution, (scan.center_x, scan.center_y))
    if heights.size != grid.shape[0] * grid.shape[1]:
        raise ScanShapeError(
            f"{heights.size} heights for a {grid.shape[1]} x {grid.shape[0]} grid "
            f"(size {scan.size_x:g} x {scan.size_y:g} m at {scan.resolution:g} m)"
        )
    yaw = yaw_of_quaternion(tuple(quaternion))
    c, s = math.cos(yaw), math.sin(yaw)
    xy = grid.reshape(-1, 2)
    x = position[0] + c * xy[:, 0] - s * xy[:, 1]
    y = position[1] + s * xy[:, 0] + c * xy[:, 1]
    z = position[2] - heights.reshape(-1) - scan.offset
    return np.stack([x, y, z], axis=1)


def point_cloud(points: np.ndarray, stamp_ns: int, frame_id: str = WORLD):
    """A ``foxglove.PointCloud`` of float32 x, y, z."""
    from foxglove.messages import PackedElementField, PackedElementFieldNumericType, PointCloud

    f32 = PackedElementFieldNumericType.Float32
    return PointCloud(
        timestamp=timestamp(stamp_ns),
        frame_id=frame_id,
        pose=_pose((0, 0, 0), (1, 0, 0, 0)),
        point_stride=12,
        fields=[PackedElementField(name=n, offset=4 * i, type=f32) for i, n in enumerate("xyz")],
        data=np.ascontiguousarray(points, dtype="<f4").tobytes(),
    )


__all__ = [
    "FrameSpec",
    "RobotModel",
    "ScanShapeError",
    "base_pose",
    "frame_transforms",
    "point_cloud",
    "robot_entities",
    "scan_points",
    "scene_update",
    "simplify_mesh",
    "terrain_entities",
]
