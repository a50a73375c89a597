"""The MJX training model: the runtime's robot (same MJCF, same description) on the tile height field.

Starts from the MJCF the asset resolver finds and ``scene.apply_description`` (joint ranges, foot
contact, torque motors at the effort limits), exactly as the CPU HAL does, then changes only what
MJX needs or what training throughput needs; ``MJX_CHANGES`` lists each change with its reason
(train/README.md repeats it).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from krabgraph.nodes.assets import resolve_asset
from krabgraph.nodes.mujoco.heightfield import TileGrid
from krabgraph.nodes.mujoco.scene import add_heightfield, apply_description, joint_actuators, object_id
from krabgraph.nodes.robots import RobotDescription

MJX_CHANGES = (
    "visual meshes and mesh assets removed (MJX has no mesh rendering; they do not collide)",
    "collision cylinders replaced by capsules of the same radius and half-length (MJX has no cylinder-box "
    "collision); they are disabled anyway, see below",
    "only the four foot spheres collide, with the terrain height field (MJX throughput); knees and base "
    "are checked against the terrain kinematically (penalty / termination)",
    "all geom margins 0 (MJX refuses margins on height-field pairs)",
    "pyramidal friction cone instead of elliptic (elliptic cones gave NaN environments in MJX)",
    "solver iterations 4, line-search iterations 8 (MuJoCo's 100/50 run ~100x slower in MJX)",
    "physics step 5 ms with 4 steps per 20 ms policy step, the description's 2.5 ms with 8 in the CPU HAL "
    "(twice the MJX throughput; actuator delay and gain randomization cover the difference)",
    "terrain: one height field of curriculum tiles, no floor plane",
)


@dataclass(frozen=True, eq=False)
class TrainingModel:
    """Compiled model plus name-resolved addresses, per joint in the description's order."""

    model: mujoco.MjModel
    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    actuator_id: np.ndarray  # per joint: index into ctrl
    base_body: int
    foot_geoms: np.ndarray
    foot_radius: np.ndarray
    calf_bodies: np.ndarray  # knee points: the calf bodies' origins
    stand_height: float  # m, base height above flat ground in the default pose with the feet just touching


def build_training_model(
    robot: RobotDescription, grid: TileGrid, dt: float, iterations: int, ls: int, impratio: float = 1.0
) -> TrainingModel:
    """Compile the MJX-ready model (see ``MJX_CHANGES``)."""
    spec = mujoco.MjSpec.from_file(str(resolve_asset(robot.model, base_dir=robot.source.parent)))
    apply_description(spec, robot)
    feet = set(robot.foot_geoms)
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            spec.delete(geom)
            continue
        if geom.type == mujoco.mjtGeom.mjGEOM_CYLINDER:
            geom.type = mujoco.mjtGeom.mjGEOM_CAPSULE
        geom.margin = 0.0
        geom.gap = 0.0
        if geom.name in feet:
            geom.contype, geom.conaffinity = 1, 0
        else:
            geom.contype, geom.conaffinity = 0, 0
    for mesh in list(spec.meshes):
        spec.delete(mesh)
    spec.option.timestep = dt
    spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
    spec.option.iterations = iterations
    spec.option.ls_iterations = ls
    spec.option.impratio = impratio
    terrain = add_heightfield(spec, grid.field)
    terrain.contype, terrain.conaffinity = 0, 1
    terrain.margin = 0.0
    model = spec.compile()

    joints = [object_id(model, mujoco.mjtObj.mjOBJ_JOINT, n, robot) for n in robot.joint_names]
    feet_ids = np.array([object_id(model, mujoco.mjtObj.mjOBJ_GEOM, n, robot) for n in robot.foot_geoms])
    calves = np.array([model.geom_bodyid[g] for g in feet_ids])
    base = object_id(model, mujoco.mjtObj.mjOBJ_BODY, robot.base_body, robot)
    data = mujoco.MjData(model)
    data.qpos[model.jnt_qposadr[joints]] = robot.default_pos
    data.qpos[2] = 1.0
    mujoco.mj_kinematics(model, data)
    lowest = float(np.min(data.geom_xpos[feet_ids, 2] - model.geom_size[feet_ids, 0]))
    return TrainingModel(
        model=model,
        qpos_adr=model.jnt_qposadr[joints].copy(),
        dof_adr=model.jnt_dofadr[joints].copy(),
        actuator_id=joint_actuators(model, joints),
        base_body=base,
        foot_geoms=feet_ids,
        foot_radius=model.geom_size[feet_ids, 0].copy(),
        calf_bodies=calves,
        stand_height=1.0 - lowest,
    )


__all__ = ["MJX_CHANGES", "TrainingModel", "build_training_model"]
