"""``StandInIsaacEnv``: an object shaped like an Isaac Lab environment, for testing without Isaac Sim.

A STAND-IN, NOT A SIMULATOR. It offers the attributes ``IsaacAdapter`` uses, with torch CPU
tensors of batch size 1 as Isaac Lab keeps them: ``scene["robot"]`` (joint names in Isaac Lab's
ANYmal-D order, ``data.joint_pos`` / ``joint_vel`` / ``applied_torque`` / ``default_joint_pos`` /
root state, ``set_joint_*_target``), ``scene.sensors`` (a contact sensor with ``net_forces_w`` and
a grid ray caster with ``pos_w`` / ``ray_hits_w``), ``sim.step``, ``cfg.sim.dt`` and
``cfg.decimation``, and action, command and observation managers. Its "physics": each joint moves
toward its position target with a first-order lag (``tau``), the torque is a PD law of the targets,
the base stays where a test puts it (``set_base``), rays hit ``terrain(x, y)``. Its observation
manager evaluates the formulas of Isaac Lab 2.3.2's velocity-task policy terms
(``isaaclab.envs.mdp.observations``: root_lin_vel_b, root_ang_vel_b, projected_gravity_b,
the command, joint_pos - default_joint_pos, joint_vel - default_joint_vel, the action manager's
action, pos_w.z - ray_hits_w.z - 0.5 clipped to [-1, 1]) on its own buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from krabgraph.nodes.rotations import projected_gravity, yaw_of

# Isaac Lab's articulation order for ANYmal-D (isaaclab_tasks .../velocity/mdp/symmetry/anymal.py).
ANYMAL_D_JOINTS = (
    "LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA",
    "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
    "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE",
)  # fmt: skip
# ANYMAL_D_CFG.init_state.joint_pos in that order.
ANYMAL_D_DEFAULT = (0.0, 0.0, 0.0, 0.0, 0.4, -0.4, 0.4, -0.4, -0.8, 0.8, -0.8, 0.8)
ANYMAL_D_BODIES = (
    "base",
    *(f"{leg}_{part}" for part in ("HIP", "THIGH", "SHANK", "FOOT") for leg in ("LF", "LH", "RF", "RH")),
)
Terrain = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _t(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


class StandInArticulation:
    """Joint buffers of one robot; joints lag behind their position targets (time constant ``tau``)."""

    def __init__(self, joint_names: Sequence[str], default_pos: Sequence[float], n_bodies: int, tau: float = 0.02):
        self._names = list(joint_names)
        self.tau = tau
        self.kp, self.kd, self.effort_limit = 40.0, 5.0, 80.0
        n = len(self._names)
        self.data = SimpleNamespace(
            default_joint_pos=_t([default_pos]),
            default_joint_vel=torch.zeros(1, n),
            joint_pos=_t([default_pos]),
            joint_vel=torch.zeros(1, n),
            applied_torque=torch.zeros(1, n),
            joint_pos_target=torch.zeros(1, n),
            joint_vel_target=torch.zeros(1, n),
            joint_effort_target=torch.zeros(1, n),
            root_pos_w=_t([[0.0, 0.0, 0.6]]),
            root_quat_w=_t([[1.0, 0.0, 0.0, 0.0]]),
            root_lin_vel_b=torch.zeros(1, 3),
            root_ang_vel_b=torch.zeros(1, 3),
            root_lin_vel_w=torch.zeros(1, 3),
            body_lin_acc_w=torch.zeros(1, n_bodies, 3),
        )

    @property
    def joint_names(self) -> list[str]:
        return list(self._names)

    def set_joint_position_target(self, target: torch.Tensor, joint_ids: Any = None, env_ids: Any = None) -> None:
        self.data.joint_pos_target[:, slice(None) if joint_ids is None else joint_ids] = target

    def set_joint_velocity_target(self, target: torch.Tensor, joint_ids: Any = None, env_ids: Any = None) -> None:
        self.data.joint_vel_target[:, slice(None) if joint_ids is None else joint_ids] = target

    def set_joint_effort_target(self, target: torch.Tensor, joint_ids: Any = None, env_ids: Any = None) -> None:
        self.data.joint_effort_target[:, slice(None) if joint_ids is None else joint_ids] = target

    def write_data_to_sim(self) -> None:
        d = self.data
        tau = self.kp * (d.joint_pos_target - d.joint_pos) + self.kd * (d.joint_vel_target - d.joint_vel)
        d.applied_torque = torch.clamp(tau + d.joint_effort_target, -self.effort_limit, self.effort_limit)

    def physics_step(self, dt: float) -> None:
        d = self.data
        d.joint_vel = (d.joint_pos_target - d.joint_pos) / self.tau
        d.joint_pos = d.joint_pos + d.joint_vel * dt


class StandInContactSensor:
    """Net contact forces per body (N, world frame), set by the test."""

    def __init__(self, body_names: Sequence[str]):
        self.body_names = list(body_names)
        self.cfg = SimpleNamespace(force_threshold=1.0)
        self.data = SimpleNamespace(net_forces_w=torch.zeros(1, len(self.body_names), 3))

    def set_force(self, body: str, force: Sequence[float]) -> None:
        self.data.net_forces_w[0, self.body_names.index(body)] = _t(force)


class StandInRayCaster:
    """A yaw-aligned GridPattern ray caster over ``terrain(x, y) -> z`` (nan or inf: no hit)."""

    def __init__(self, terrain: Terrain | None = None, ordering: str = "xy", size=(1.6, 1.0), resolution: float = 0.1):
        self.cfg = SimpleNamespace(
            pattern_cfg=SimpleNamespace(resolution=resolution, size=tuple(size), ordering=ordering),
            offset=SimpleNamespace(pos=(0.0, 0.0, 20.0)),
            max_distance=1.0e6,
        )
        xs = np.arange(-size[0] / 2, size[0] / 2 + 1.0e-9, resolution)
        ys = np.arange(-size[1] / 2, size[1] / 2 + 1.0e-9, resolution)
        gx, gy = np.meshgrid(xs, ys, indexing="xy" if ordering == "xy" else "ij")
        self.points = np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)  # ray order, base yaw frame
        self.num_rays = len(self.points)
        self.terrain = terrain or (lambda x, y: np.zeros_like(x))
        self.data = SimpleNamespace(pos_w=torch.zeros(1, 3), ray_hits_w=torch.zeros(1, self.num_rays, 3))

    def update(self, robot: StandInArticulation) -> None:
        pos = robot.data.root_pos_w[0].numpy().astype(np.float64)
        yaw = yaw_of(*robot.data.root_quat_w[0].numpy().astype(np.float64))
        c, s = np.cos(yaw), np.sin(yaw)
        hx = pos[0] + c * self.points[:, 0] - s * self.points[:, 1]
        hy = pos[1] + s * self.points[:, 0] + c * self.points[:, 1]
        hz = np.asarray(self.terrain(hx, hy), dtype=np.float64)
        hz = np.where(np.isfinite(hz), hz, np.inf)
        self.data.pos_w = _t([pos])
        self.data.ray_hits_w = _t(np.stack([hx, hy, hz], axis=1)[None])


class StandInScene:
    def __init__(self, robot: StandInArticulation, sensors: dict[str, Any]):
        self.robot = robot
        self.sensors = sensors

    def __getitem__(self, key: str) -> Any:
        if key == "robot":
            return self.robot
        return self.sensors[key]

    def write_data_to_sim(self) -> None:
        self.robot.write_data_to_sim()

    def update(self, dt: float) -> None:
        scanner = self.sensors.get("height_scanner")
        if scanner is not None:
            scanner.update(self.robot)


class StandInSim:
    def __init__(self, scene: StandInScene, dt: float):
        self.scene, self.dt = scene, dt
        self.steps = 0
        self.renders = 0

    def step(self, render: bool = False) -> None:
        self.steps += 1
        self.scene.robot.physics_step(self.dt)

    def render(self) -> None:
        self.renders += 1

    def has_gui(self) -> bool:
        return False

    def has_rtx_sensors(self) -> bool:
        return False


class JointPositionAction:
    """Stand-in of Isaac Lab's JointPositionAction term: processed = raw × scale + offset."""

    def __init__(self, robot: StandInArticulation, scale: float = 0.5):
        self._joint_ids = slice(None)
        self._scale = scale
        self._offset = robot.data.default_joint_pos.clone()
        n = len(robot.joint_names)
        self.raw_actions = torch.zeros(1, n)
        self.processed_actions = torch.zeros(1, n)

    def process_actions(self, actions: torch.Tensor) -> None:
        self.raw_actions[:] = actions
        self.processed_actions = self.raw_actions * self._scale + self._offset


class StandInActionManager:
    def __init__(self, term: Any):
        self._term = term
        self.active_terms = ["joint_pos"]
        self.action = torch.zeros_like(term.raw_actions)
        self.processed = 0

    def get_term(self, name: str) -> Any:
        return {"joint_pos": self._term}[name]

    def process_action(self, action: torch.Tensor) -> None:
        self.processed += 1
        self.action[:] = action
        self._term.process_actions(action)


class StandInCommandManager:
    def __init__(self) -> None:
        self._terms = {"base_velocity": SimpleNamespace(vel_command_b=torch.zeros(1, 3))}

    def get_term(self, name: str) -> Any:
        return self._terms[name]


class StandInObservationManager:
    """The velocity task's policy group (235 values with a height scanner, 48 without)."""

    def __init__(self, env: StandInIsaacEnv):
        self.env = env
        n = len(env.robot.joint_names)
        names = ["base_lin_vel", "base_ang_vel", "projected_gravity", "velocity_commands"]
        names += ["joint_pos", "joint_vel", "actions"]
        dims = [(3,), (3,), (3,), (3,), (n,), (n,), (n,)]
        scanner = env.scene.sensors.get("height_scanner")
        if scanner is not None:
            names.append("height_scan")
            dims.append((scanner.num_rays,))
        self.active_terms = {"policy": names}
        self.group_obs_term_dim = {"policy": dims}

    def compute(self, update_history: bool = False) -> dict[str, torch.Tensor]:
        env = self.env
        d = env.robot.data
        parts = [
            d.root_lin_vel_b,
            d.root_ang_vel_b,
            _t([projected_gravity(d.root_quat_w[0].numpy())]),
            env.command_manager.get_term("base_velocity").vel_command_b,
            d.joint_pos - d.default_joint_pos,
            d.joint_vel - d.default_joint_vel,
            env.action_manager.action,
        ]
        scanner = env.scene.sensors.get("height_scanner")
        if scanner is not None:
            scan = scanner.data.pos_w[:, 2:3] - scanner.data.ray_hits_w[..., 2] - 0.5
            parts.append(torch.clamp(scan, -1.0, 1.0))
        return {"policy": torch.cat(parts, dim=1)}


class StandInIsaacEnv:
    """A STAND-IN shaped like Isaac Lab's ``ManagerBasedRLEnv`` with one environment (see module docstring)."""

    def __init__(
        self,
        *,
        joint_names: Sequence[str] = ANYMAL_D_JOINTS,
        default_joint_pos: Sequence[float] = ANYMAL_D_DEFAULT,
        body_names: Sequence[str] = ANYMAL_D_BODIES,
        height_scanner: bool = True,
        terrain: Terrain | None = None,
        scan_ordering: str = "xy",
        sim_dt: float = 0.005,
        decimation: int = 4,
    ):
        self.device = "cpu"
        self.cfg = SimpleNamespace(
            sim=SimpleNamespace(dt=sim_dt, render_interval=decimation, gravity=(0.0, 0.0, -9.81)),
            decimation=decimation,
        )
        self.robot = StandInArticulation(joint_names, default_joint_pos, len(body_names))
        sensors: dict[str, Any] = {"contact_forces": StandInContactSensor(body_names)}
        if height_scanner:
            sensors["height_scanner"] = StandInRayCaster(terrain, ordering=scan_ordering)
        self.scene = StandInScene(self.robot, sensors)
        self.sim = StandInSim(self.scene, sim_dt)
        self.action_manager = StandInActionManager(JointPositionAction(self.robot))
        self.command_manager = StandInCommandManager()
        self.observation_manager = StandInObservationManager(self)
        self.closed = False
        self.scene.update(sim_dt)

    @property
    def unwrapped(self) -> StandInIsaacEnv:
        return self

    def set_base(self, *, pos=None, quat_wxyz=None, lin_vel_b=None, ang_vel_b=None, lin_vel_w=None) -> None:
        """Put the base somewhere (the stand-in never moves it)."""
        d = self.robot.data
        for key, value in (
            ("root_pos_w", pos),
            ("root_quat_w", quat_wxyz),
            ("root_lin_vel_b", lin_vel_b),
            ("root_ang_vel_b", ang_vel_b),
            ("root_lin_vel_w", lin_vel_w),
        ):
            if value is not None:
                setattr(d, key, _t([value]))
        self.scene.update(self.cfg.sim.dt)

    def reset(self, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
        return self.observation_manager.compute(), {}

    def close(self) -> None:
        self.closed = True


__all__ = ["ANYMAL_D_BODIES", "ANYMAL_D_DEFAULT", "ANYMAL_D_JOINTS", "StandInIsaacEnv"]
