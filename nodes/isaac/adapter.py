"""Every Isaac Sim / Isaac Lab call krabgraph makes, behind ``IsaacAdapter``.

Launch (``IsaacAdapter.launch``): ``isaaclab.app.AppLauncher(headless=..., device=...)`` starts
Isaac Sim (it must come before any other Isaac import); ``import isaaclab_tasks`` registers the
stock tasks and ``task_package`` (optional) is imported to register more (e.g. a parkour extension
providing ``Isaac-Parkour-Anymal-D-v0``); ``isaaclab_tasks.utils.parse_env_cfg(task, device,
num_envs=1)`` gives the task's env cfg, whose policy observation noise is switched off (it only
feeds the debug observation); ``gymnasium.make(task, cfg=cfg)`` builds the environment and
``env.reset(seed=...)`` applies the task's reset events once.

Actions: the contract is the single source of truth. A ``JointCommand`` already carries joint
position targets in rad, computed by the policy node from the bundle's action scale and offset, so
the adapter writes them by joint NAME straight into the articulation
(``scene["robot"].set_joint_position_target`` / ``set_joint_velocity_target`` /
``set_joint_effort_target``) and never calls ``env.step``. Isaac Lab's action term (raw action ×
scale + offset) is bypassed: feeding it would apply a second, task-side copy of the scale and offset
that can silently disagree with the contract. Bypassing ``env.step`` also skips its rewards,
terminations, automatic resets, command resampling and interval events (random pushes): the
graph, not the task, decides what happens to the robot. The task's actuator models are kept (for
ANYmal-D the LSTM actuator network), so a command's kp/kd do not apply. For the debug observation
only, the raw action Isaac Lab's own ``JointPositionAction`` would have needed for those targets
(``(target - offset) / scale``, its own scale and offset) is put into its action manager with
``process_action`` (never ``apply_action``), and the graph's velocity command into the command
term's ``vel_command_b``, so ``obs["policy"]`` reads what a Lab-run policy would have read.

Stepping (``step``): one control step = ``cfg.decimation`` physics steps of ``cfg.sim.dt``, each
``scene.write_data_to_sim()``, ``sim.step(render=False)``, ``sim.render()`` every
``render_interval`` steps when a GUI or RTX sensor needs it, ``scene.update(dt)``: the loop of
``ManagerBasedEnv.step`` minus its action manager.

Reading (``read``), Isaac Lab conventions: joints by name from ``joint_names``; ``joint_pos``,
``joint_vel``, ``applied_torque``; root pose ``root_pos_w``, ``root_quat_w`` (w, x, y, z); twist
``root_lin_vel_b``, ``root_ang_vel_b`` (body frame), ``root_lin_vel_w``; IMU acceleration from
``body_lin_acc_w`` of the root body minus gravity, rotated into the body frame (zeros if the
articulation does not provide it); feet from the contact sensor's ``net_forces_w`` (in contact above
its ``force_threshold``); height scan from the ray caster as ``pos_w.z - ray_hits_w.z - offset``
(``mdp.height_scan``; ``pos_w`` is the base, the cfg's ``(0, 0, 20)`` offset moves only the ray
starts), reshaped to ``[n_y, n_x]`` x fastest for either grid ``ordering``. Rays that hit nothing
(Isaac Lab: ``inf``, which its observation clips to -1) follow the ``HeightScan`` convention instead:
a hit at base z − ``max_distance`` (value ``max_distance − offset``, +1 after the clip).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.nodes.hal_io import RobotSnapshot
from krabgraph.nodes.rotations import rotate_inverse

ISAAC_MODULES = ("isaacsim", "isaaclab")
REQUIREMENTS = (
    "the Isaac HAL needs NVIDIA Isaac Sim 5.1 and Isaac Lab 2.3.2 on an RTX-class NVIDIA GPU "
    "(Isaac Sim does not support data-center GPUs without RT cores such as A100/H100)"
)
HOW_TO_GET = (
    "run it in the images/isaacsim container (docker build -f images/isaacsim/Dockerfile -t krabgraph-isaacsim . ; "
    "see images/isaacsim/README.md), or install Isaac Sim 5.1 and Isaac Lab 2.3.2 and krabgraph into Isaac Sim's Python"
)
GRAVITY = (0.0, 0.0, -9.81)


class IsaacUnavailableError(KrabgraphError):
    """Isaac Sim or Isaac Lab cannot be imported here."""


class IsaacTaskError(KrabgraphError):
    """The task, its robot or its sensors do not fit what the HAL was asked for."""


def missing_isaac_modules() -> list[str]:
    """The top-level Isaac modules that are not importable (located without importing them)."""
    missing = []
    for name in ISAAC_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_isaac() -> None:
    """Raise the one ``IsaacUnavailableError`` that says what is needed and how to get it."""
    missing = missing_isaac_modules()
    if missing:
        raise IsaacUnavailableError(
            f"Isaac Sim is not available here (cannot import {', '.join(missing)}): {REQUIREMENTS}; {HOW_TO_GET}"
        )


@dataclass(frozen=True)
class ScanGrid:
    """Geometry of a grid ray caster: ``shape`` (n_y, n_x), flattened ``ordering`` of its rays."""

    shape: tuple[int, int]
    resolution: float  # m
    size: tuple[float, float]  # (x, y) m
    ordering: str  # "xy": x fastest (Isaac Lab's default), "yx": y fastest
    offset: float  # m subtracted from every value
    max_distance: float  # m below the base that a ray reaches


@dataclass(frozen=True, eq=False)
class IsaacSnapshot(RobotSnapshot):
    """One reading of the simulated robot (per-joint arrays in articulation order), plus the scan.

    The IMU is the base: ``imu_quat``/``imu_gyro`` are the root orientation and body angular velocity.
    """

    scan: np.ndarray | None = None  # m, float32 [n_y, n_x], x fastest; None without a height scanner


def grid_shape(size: Sequence[float], resolution: float) -> tuple[int, int]:
    """(n_y, n_x) of Isaac Lab's GridPattern: ``arange(-s/2, s/2 + 1e-9, resolution)`` per axis."""
    n_x, n_y = (len(np.arange(-s / 2, s / 2 + 1.0e-9, resolution)) for s in size)
    return n_y, n_x


class IsaacAdapter:
    """One Isaac Lab environment with ``num_envs == 1`` seen through krabgraph's conventions.

    ``env`` is the gymnasium environment (or its ``unwrapped`` ManagerBasedRLEnv). ``feet`` are
    body names of the contact sensor; ``scan_offset`` is subtracted from height-scan values.
    """

    def __init__(
        self,
        env: Any,
        *,
        feet: Sequence[str] = (),
        contact_sensor: str = "contact_forces",
        height_scanner: str = "height_scanner",
        scan_offset: float = 0.5,
        command_term: str = "base_velocity",
        observation_group: str = "policy",
        app: Any = None,
    ):
        import torch

        self._torch = torch
        self.gym_env = env
        self.env = getattr(env, "unwrapped", env)
        self.app = app
        self.device = self.env.device
        self.robot = self.env.scene["robot"]
        self.joint_names: tuple[str, ...] = tuple(self.robot.joint_names)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        cfg = self.env.cfg
        self.physics_dt = float(cfg.sim.dt)
        self.decimation = int(cfg.decimation)
        self.render_interval = max(1, int(getattr(cfg.sim, "render_interval", self.decimation)))
        self.gravity = np.asarray(getattr(cfg.sim, "gravity", GRAVITY), dtype=np.float64)
        self.command_term = command_term
        self.observation_group = observation_group
        self.physics_steps = 0
        sensors = self.env.scene.sensors
        self._contacts, self._foot_ids, self.foot_names = self._feet(sensors.get(contact_sensor), feet)
        self._scanner = sensors.get(height_scanner)
        self.scan_grid = None if self._scanner is None else self._scan_grid(self._scanner, scan_offset)
        self._accel_available = True

    # -- launch ------------------------------------------------------------------------------
    @classmethod
    def launch(
        cls,
        task: str,
        *,
        headless: bool = True,
        device: str = "cuda:0",
        task_package: str = "",
        seed: int = 0,
        **kwargs: Any,
    ) -> IsaacAdapter:
        """Start Isaac Sim, build ``task`` with one environment, reset it and wrap it."""
        require_isaac()
        from isaaclab.app import AppLauncher

        with _keep_signal_handlers():
            app = AppLauncher(headless=headless, device=device).app
        try:
            env = _make_env(task, device=device, task_package=task_package)
            env.reset(seed=seed)
            return cls(env, app=app, **kwargs)
        except BaseException:
            app.close()
            raise

    # -- properties --------------------------------------------------------------------------
    @property
    def step_dt(self) -> float:
        """Control period of the task (s): physics dt × decimation."""
        return self.physics_dt * self.decimation

    @property
    def sim_time(self) -> float:
        """Simulated seconds since this adapter was created."""
        return self.physics_steps * self.physics_dt

    def indices(self, names: Sequence[str]) -> list[int]:
        """Articulation indices of joints ``names``; ``IsaacTaskError`` names unknown joints."""
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise IsaacTaskError(
                f"the task's robot has no joint(s) {', '.join(unknown)} (joints: {', '.join(self.joint_names)})"
            )
        return [self._index[n] for n in names]

    def default_joint_pos(self) -> np.ndarray:
        """The task's default joint positions (rad), articulation order."""
        return _numpy(self.robot.data.default_joint_pos)[0].astype(np.float64)

    # -- actions -----------------------------------------------------------------------------
    def set_joint_targets(
        self,
        names: Sequence[str],
        position: np.ndarray,
        velocity: np.ndarray | None = None,
        effort: np.ndarray | None = None,
    ) -> None:
        """Write targets for joints ``names`` (rad, rad/s, N·m) into the articulation's buffers."""
        ids = self.indices(names)
        robot = self.robot
        robot.set_joint_position_target(self._tensor(position), joint_ids=ids)
        n = len(ids)
        robot.set_joint_velocity_target(self._tensor(np.zeros(n) if velocity is None else velocity), joint_ids=ids)
        robot.set_joint_effort_target(self._tensor(np.zeros(n) if effort is None else effort), joint_ids=ids)

    def step(self) -> None:
        """Advance one control step: ``decimation`` physics steps with the current targets."""
        env = self.env
        sim, scene = env.sim, env.scene
        rendering = bool(sim.has_gui() or sim.has_rtx_sensors())
        for _ in range(self.decimation):
            self.physics_steps += 1
            scene.write_data_to_sim()
            sim.step(render=False)
            if rendering and self.physics_steps % self.render_interval == 0:
                sim.render()
            scene.update(dt=self.physics_dt)

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> IsaacSnapshot:
        """The robot's state now (see the module docstring for frames and sources)."""
        data = self.robot.data
        quat = _numpy(data.root_quat_w)[0].astype(np.float64)
        forces = np.zeros((len(self._foot_ids), 3))
        contact = np.zeros(len(self._foot_ids), dtype=bool)
        if self._contacts is not None:
            forces = _numpy(self._contacts.data.net_forces_w)[0][self._foot_ids].astype(np.float64)
            contact = np.linalg.norm(forces, axis=1) > float(self._contacts.cfg.force_threshold)
        ang_vel_b = _numpy(data.root_ang_vel_b)[0].astype(np.float64)
        return IsaacSnapshot(
            time=self.sim_time,
            joint_names=self.joint_names,
            q=_numpy(data.joint_pos)[0].astype(np.float64),
            qd=_numpy(data.joint_vel)[0].astype(np.float64),
            tau=_numpy(data.applied_torque)[0].astype(np.float64),
            imu_quat=quat,
            imu_gyro=ang_vel_b,
            imu_accel=self._accel(data, quat),
            base_pos=_numpy(data.root_pos_w)[0].astype(np.float64),
            base_quat=quat,
            base_lin_vel=_numpy(data.root_lin_vel_b)[0].astype(np.float64),
            base_ang_vel=ang_vel_b,
            base_lin_vel_world=_numpy(data.root_lin_vel_w)[0].astype(np.float64),
            foot_names=self.foot_names,
            foot_contact=contact,
            foot_force=forces,
            scan=None if self.scan_grid is None else self.scan(),
        )

    def scan(self) -> np.ndarray:
        """Height scan (m), float32 ``[n_y, n_x]`` with x fastest when flattened."""
        grid = self.scan_grid
        data = self._scanner.data
        base_z = float(_numpy(data.pos_w)[0, 2])
        hits_z = _numpy(data.ray_hits_w)[0, :, 2].astype(np.float64)
        hits_z = np.where(np.isfinite(hits_z), hits_z, base_z - grid.max_distance)
        values = base_z - hits_z - grid.offset
        n_y, n_x = grid.shape
        heights = values.reshape(n_x, n_y).T if grid.ordering == "yx" else values.reshape(n_y, n_x)
        return np.ascontiguousarray(heights, dtype=np.float32)

    def lab_observation(self) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """Isaac Lab's own observation of ``observation_group`` (flat float32) and its labels."""
        manager = self.env.observation_manager
        group = manager.compute().get(self.observation_group)
        if group is None:
            return None
        names = manager.active_terms[self.observation_group]
        dims = manager.group_obs_term_dim[self.observation_group]
        if isinstance(group, Mapping):
            values = np.concatenate([_numpy(group[n])[0].reshape(-1) for n in names])
        else:
            values = _numpy(group)[0].reshape(-1)
        labels = tuple(f"{n}[{i}]" for n, dim in zip(names, dims, strict=True) for i in range(math.prod(dim)))
        return values.astype(np.float32), labels

    # -- debug mirrors (never applied to the robot) -------------------------------------------
    def mirror_velocity_command(self, vx: float, vy: float, yaw_rate: float) -> bool:
        """Put the graph's velocity command into the task's command term (debug observation only)."""
        try:
            term = self.env.command_manager.get_term(self.command_term)
        except (AttributeError, KeyError):
            return False
        buffer = getattr(term, "vel_command_b", None)
        if buffer is None:
            return False
        buffer[0, :3] = self._tensor([vx, vy, yaw_rate])[0]
        return True

    def mirror_action(self, targets: np.ndarray) -> bool:
        """Fill Isaac Lab's action buffers with the raw action its joint-position terms would need
        for ``targets`` (rad, articulation order); only ``last_action`` of the debug observation reads it.
        """
        manager = self.env.action_manager
        raws = []
        for name in manager.active_terms:
            term = manager.get_term(name)
            if type(term).__name__ != "JointPositionAction":
                return False
            ids = term._joint_ids
            target = self._tensor(np.asarray(targets, dtype=np.float64)[ids])
            raws.append((target - term._offset) / term._scale)
        if not raws:
            return False
        manager.process_action(self._torch.cat(raws, dim=1))
        return True

    def close(self) -> None:
        """Close the environment, then Isaac Sim."""
        with contextlib.suppress(Exception):
            self.gym_env.close()
        if self.app is not None:
            self.app.close()
            self.app = None

    # -- helpers -----------------------------------------------------------------------------
    def _tensor(self, values: Any) -> Any:
        arr = np.asarray(values, dtype=np.float32).reshape(1, -1)
        return self._torch.as_tensor(arr, device=self.device)

    def _accel(self, data: Any, quat: np.ndarray) -> np.ndarray | None:
        if not self._accel_available:
            return None
        try:
            acc_w = _numpy(data.body_lin_acc_w)[0, 0].astype(np.float64)
        except (AttributeError, TypeError, IndexError):
            self._accel_available = False
            return None
        return rotate_inverse(quat, acc_w - self.gravity)

    def _feet(self, sensor: Any, feet: Sequence[str]) -> tuple[Any, list[int], tuple[str, ...]]:
        if not feet:
            return None, [], ()
        if sensor is None:
            raise IsaacTaskError(f"the task has no contact sensor for the feet {', '.join(feet)}")
        names = list(sensor.body_names)
        missing = [f for f in feet if f not in names]
        if missing:
            raise IsaacTaskError(
                f"the contact sensor has no body {', '.join(missing)} (bodies: {', '.join(names)}); "
                "fix `feet` in the robot description"
            )
        return sensor, [names.index(f) for f in feet], tuple(feet)

    @staticmethod
    def _scan_grid(sensor: Any, offset: float) -> ScanGrid:
        cfg = sensor.cfg
        pattern = cfg.pattern_cfg
        size = (float(pattern.size[0]), float(pattern.size[1]))
        shape = grid_shape(size, float(pattern.resolution))
        if shape[0] * shape[1] != int(sensor.num_rays):
            raise IsaacTaskError(
                f"height scanner casts {sensor.num_rays} rays but its grid {size} m at {pattern.resolution} m "
                f"has {shape[0] * shape[1]}; only GridPattern scanners are supported"
            )
        start_height = float(cfg.offset.pos[2])
        return ScanGrid(
            shape=shape,
            resolution=float(pattern.resolution),
            size=size,
            ordering=str(getattr(pattern, "ordering", "xy")),
            offset=float(offset),
            max_distance=float(cfg.max_distance) - start_height,
        )


def _numpy(tensor: Any) -> np.ndarray:
    """A torch tensor (any device) or array as a NumPy array on the CPU."""
    if hasattr(tensor, "detach"):
        return tensor.detach().to("cpu").numpy()
    return np.asarray(tensor)


def _make_env(task: str, *, device: str, task_package: str) -> Any:
    """The gymnasium environment of ``task`` with one env (Isaac Sim must be running)."""
    import gymnasium as gym
    import isaaclab_tasks  # noqa: F401 - registers the Isaac-* tasks
    from isaaclab_tasks.utils import parse_env_cfg

    if task_package:
        try:
            importlib.import_module(task_package)
        except ModuleNotFoundError as exc:
            raise IsaacTaskError(
                f"task_package {task_package!r} cannot be imported ({exc}); install the extension that provides "
                f"{task!r} into Isaac Sim's Python"
            ) from None
    if task not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("Isaac-"))
        hint = "" if task_package else "; if an extension provides it, set task_package"
        raise IsaacTaskError(f"unknown Isaac Lab task {task!r}{hint} (registered: {', '.join(known)})")
    cfg = parse_env_cfg(task, device=device, num_envs=1)
    policy_group = getattr(getattr(cfg, "observations", None), "policy", None)
    if policy_group is not None and hasattr(policy_group, "enable_corruption"):
        policy_group.enable_corruption = False  # the debug observation is compared noise-free
    return gym.make(task, cfg=cfg)


@contextlib.contextmanager
def _keep_signal_handlers():
    """Restore SIGINT/SIGTERM handlers after Isaac Sim starts: AppLauncher installs its own, which
    close the app at once; the executor's stop the graph first and close Isaac Sim on shutdown."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


__all__ = [
    "IsaacAdapter",
    "IsaacSnapshot",
    "IsaacTaskError",
    "IsaacUnavailableError",
    "ScanGrid",
    "grid_shape",
    "missing_isaac_modules",
    "require_isaac",
]
