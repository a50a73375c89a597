"""A training task as tables: observation terms, reward weights, randomization ranges, PPO settings.

The actor's observation terms are the runtime's (``krabgraph.nodes.policy.observations``), named
and scaled exactly as the exported ``contract.yaml`` will say; the critic adds privileged terms.
Rewards are Isaac Lab's velocity-task terms (weights per second: they are multiplied by the
control period, as Isaac Lab's reward manager does), plus fine tracking kernels and a stand-still
term; the per-step total is clipped at zero (legged_gym's ``only_positive_rewards``), so ending an
episode early never pays. Units: SI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from krabgraph.nodes.mujoco.heightfield import PARKOUR_TILE_KINDS


@dataclass(frozen=True)
class ObsTerm:
    """One observation term: the runtime term ``name`` with the contract's scale/clip/options, plus
    the uniform noise (in the term's units, before clip and scale) the actor sees in training."""

    name: str
    scale: float = 1.0
    clip: tuple[float, float] | None = None
    noise: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


SCAN_SHAPE = (11, 17)  # [n_y, n_x]: the MuJoCo HAL's 1.6 m x 1.0 m grid at 0.1 m (Isaac Lab's GridPattern)
SCAN_SIZE = (1.6, 1.0)  # m, x by y
SCAN_RESOLUTION = 0.1  # m
SCAN_OFFSET = 0.5  # m, subtracted from base height minus ground height
PARKOUR_SCAN_CENTER = (0.4, 0.0)  # m: the look-ahead grid spans 0.4 m behind to 1.2 m ahead of the base


def scan_term(center: tuple[float, float] = (0.0, 0.0)) -> ObsTerm:
    """The actor's height scan: the HAL's grid, centred on the base or, with ``center`` (m, base yaw
    frame), on a point ahead of it; the contract carries the centre so every scan source matches."""
    options: dict[str, Any] = {"shape": list(SCAN_SHAPE), "offset": SCAN_OFFSET}
    if tuple(center) != (0.0, 0.0):
        options["center"] = [float(center[0]), float(center[1])]
    return ObsTerm("height_scan", clip=(-1.0, 1.0), noise=0.05, options=options)


ACTOR_TERMS = (
    ObsTerm("base_ang_vel", scale=0.25, noise=0.2),
    ObsTerm("projected_gravity", noise=0.05),
    ObsTerm("velocity_commands"),
    ObsTerm("joint_pos_rel", noise=0.01),
    ObsTerm("joint_vel_rel", scale=0.05, noise=1.5),
    ObsTerm("last_action"),
    scan_term(),
)
# Privileged critic terms (after the noise-free actor terms): (name, size).
CRITIC_EXTRAS = (("base_lin_vel", 3), ("friction", 1), ("added_mass", 1), ("gain_scale", 1), ("push", 3))

REWARD_WEIGHTS = {
    "track_lin_vel_xy": 1.5,  # exp(-|v_cmd - v|^2 / 0.25)
    "track_ang_vel_z": 1.0,  # exp(-(w_cmd - w)^2 / 0.25)
    "track_lin_vel_xy_fine": 1.0,  # exp(-|v_cmd - v|^2 / 0.02)
    "track_ang_vel_z_fine": 1.0,  # exp(-(w_cmd - w)^2 / 0.02)
    "lin_vel_z": -2.0,
    "ang_vel_xy": -0.05,
    "joint_torques": -2e-4,
    "joint_acc": -2.5e-7,
    "action_rate": -0.01,
    "feet_air_time": 0.25,  # legged_gym: sum over feet of (air time - 0.5 s) at touchdown, while moving
    "knee_contact": -1.0,  # a knee (calf origin) below the ground + 2 cm: MJX collides feet only
    "flat_orientation": -1.0,
    "joint_limits": -5.0,  # how far beyond the joint range (rad)
    "stand_still": -0.5,  # |q - q0|_1 when the command is zero
}


@dataclass(frozen=True)
class Randomization:
    """Domain randomization: per environment at start (friction, mass, CoM, gains) or per episode
    (delay), and pushes during episodes."""

    friction: tuple[float, float] = (0.4, 1.2)
    added_mass: tuple[float, float] = (-1.0, 3.0)  # kg on the base
    com_shift: tuple[float, float, float] = (0.05, 0.03, 0.03)  # m, uniform +- per axis
    gain_scale: tuple[float, float] = (0.8, 1.2)  # kp and kd, each
    delay_steps: tuple[int, int] = (0, 4)  # physics steps of actuator delay: 0-20 ms at 5 ms
    push_interval_s: tuple[float, float] = (4.0, 8.0)
    push_impulse: float = 40.0  # N s, largest horizontal impulse (ramped in over push_ramp_iterations)
    push_duration_s: float = 0.1
    push_ramp_iterations: int = 400
    reset_joint_noise: float = 0.1  # rad


@dataclass(frozen=True)
class Commands:
    """Velocity command sampling (body frame), resampled every ``resample_s``."""

    vx: tuple[float, float] = (-1.0, 1.2)
    vy: tuple[float, float] = (-0.6, 0.6)
    yaw: tuple[float, float] = (-1.2, 1.2)
    standing: float = 0.1  # fraction of commands that are zero
    zero_yaw: float = 0.25  # fraction with yaw rate zero (heading hold)
    resample_s: float = 10.0
    heading_gain: float = 0.0  # > 0: the yaw command holds heading +x (world): gain * heading error, clipped to yaw
    # environments on tiles of these kinds draw their commands from ``free`` instead, without the
    # heading hold: stage 2 keeps stage 1's backward, sideways and turning commands alive there
    free_kinds: tuple[str, ...] = ()
    free: Commands | None = None


@dataclass(frozen=True)
class TerrainConfig:
    rows: int = 10
    kinds: tuple[str, ...] = ("flat", "rough", "slope_up", "slope_down", "stairs_up", "stairs_down", "boxes", "boxes")
    tile_size: float = 8.0
    resolution: float = 0.05
    border: float = 8.0
    max_init_level: int = 3
    spawn_jitter: float = 0.5  # m, uniform +- on the platform
    generator: str = "rough_tiles"  # heightfield.TILE_GENERATORS
    spawn_yaw: float = math.pi  # rad, uniform +- at spawn
    fall_ground_span: float = 0.0  # m, > 0: the fall height is over the lowest ground within +- this along the base
    smoke_kinds: tuple[str, ...] = ("flat", "stairs_up", "boxes")
    difficulty: tuple[tuple[str, tuple[float, float]], ...] = ()  # per kind (easiest, hardest row): overrides

    def generator_kwargs(self) -> dict[str, Any]:
        """Extra arguments of the tile generator (only what this configuration overrides)."""
        return {"difficulty": dict(self.difficulty)} if self.difficulty else {}


@dataclass(frozen=True)
class PPOConfig:
    """rsl_rl 5.x runner settings (Isaac Lab's Go2 rough-terrain values, entropy halved)."""

    num_steps_per_env: int = 24
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    activation: str = "elu"
    init_noise_std: float = 1.0
    learning_rate: float = 1e-3
    num_learning_epochs: int = 5
    num_mini_batches: int = 4
    clip_param: float = 0.2
    entropy_coef: float = 0.005  # Isaac Lab: 0.01; halved from iteration 812 on (std stayed ~1.04)
    value_loss_coef: float = 1.0
    gamma: float = 0.99
    lam: float = 0.95
    desired_kl: float = 0.01
    max_grad_norm: float = 1.0
    obs_normalization: bool = True
    symmetry: bool = True  # left-right mirrored samples in every mini-batch

    def runner_cfg(self) -> dict[str, Any]:
        """The ``train_cfg`` dict of rsl_rl's ``OnPolicyRunner``."""
        model = {
            "class_name": "rsl_rl.models.MLPModel",
            "hidden_dims": list(self.hidden_dims),
            "activation": self.activation,
            "obs_normalization": self.obs_normalization,
        }
        algorithm: dict[str, Any] = {
            "class_name": "rsl_rl.algorithms.PPO",
            "num_learning_epochs": self.num_learning_epochs,
            "num_mini_batches": self.num_mini_batches,
            "clip_param": self.clip_param,
            "gamma": self.gamma,
            "lam": self.lam,
            "value_loss_coef": self.value_loss_coef,
            "entropy_coef": self.entropy_coef,
            "learning_rate": self.learning_rate,
            "max_grad_norm": self.max_grad_norm,
            "schedule": "adaptive",
            "desired_kl": self.desired_kl,
        }
        if self.symmetry:
            algorithm["symmetry_cfg"] = {
                "data_augmentation_func": "krabgraph.train.symmetry:augment",
                "use_data_augmentation": True,
            }
        distribution = {"class_name": "rsl_rl.modules.GaussianDistribution", "init_std": self.init_noise_std}
        return {
            "num_steps_per_env": self.num_steps_per_env,
            "save_interval": 10**9,  # the trainer saves on its own schedule
            "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
            "actor": model | {"distribution_cfg": distribution},
            "critic": dict(model),
            "algorithm": algorithm,
            "check_for_nan": False,  # the environment resets and counts NaN environments itself
        }


@dataclass(frozen=True)
class TaskConfig:
    """Everything that defines one training task; the bundle's contract is written from it."""

    name: str = "go2_rough"
    robot: str = "go2"
    description: str = (
        "Go2 velocity tracking on rough terrain (stairs, boxes, slopes, noise) with the height scan; "
        "trained by krabgraph.train (MJX + rsl_rl PPO)."
    )
    num_envs: int = 8192
    total_env_steps: int = 480_000_000
    episode_s: float = 20.0
    physics_dt: float = 0.005  # s; the description's 2.5 ms halves MJX throughput (see train/README.md)
    action_scale: float = 0.25
    action_clip: float = 5.0
    solver_iterations: int = 4
    ls_iterations: int = 8
    impratio: float = 1.0
    actor_terms: tuple[ObsTerm, ...] = ACTOR_TERMS
    critic_extras: tuple[tuple[str, int], ...] = CRITIC_EXTRAS
    rewards: dict[str, float] = field(default_factory=lambda: dict(REWARD_WEIGHTS))
    randomization: Randomization = Randomization()
    commands: Commands = Commands()
    terrain: TerrainConfig = TerrainConfig()
    ppo: PPOConfig = PPOConfig()
    seed: int = 0
    init_from: str | None = None  # task whose checkpoint warm-starts a new run (actor, critic, normalizers)

    @property
    def scan_center(self) -> tuple[float, float]:
        """The height-scan grid's centre (m, base yaw frame), from the actor's ``height_scan`` term."""
        for term in self.actor_terms:
            if term.name == "height_scan":
                x, y = term.options.get("center", (0.0, 0.0))
                return (float(x), float(y))
        return (0.0, 0.0)

    def smoke(self) -> TaskConfig:
        """A CPU-sized variant: a few environments, a small terrain, short rollouts (no warm start:
        its networks are smaller)."""
        return replace(
            self,
            num_envs=8,
            total_env_steps=8 * 8 * 3,
            terrain=replace(self.terrain, rows=2, kinds=self.terrain.smoke_kinds, tile_size=4.0, border=2.0),
            ppo=replace(self.ppo, num_steps_per_env=8, hidden_dims=(32, 32), num_mini_batches=2),
            init_from=None,
        )


# -- stage 2: parkour tiles, warm-started from go2_rough ----------------------------------------------
PARKOUR_REWARD_WEIGHTS = {
    "track_lin_vel_xy": 1.0,
    "track_lin_vel_dir": 1.0,  # Extreme Parkour: min(v . c_hat, |c|) / |c|, so leaping forward is not penalized
    "track_lin_vel_xy_fine": 0.5,
    "track_ang_vel_z": 0.5,
    "track_heading": 0.5,  # Extreme Parkour's yaw tracking: exp(-|heading error|), heading +x
    "lin_vel_z": -1.0,  # halved from stage 1: climbing and jumping move the base vertically
    "ang_vel_xy": -0.05,
    "joint_torques": -1e-4,
    "joint_acc": -2.5e-7,
    "action_rate": -0.01,
    "feet_air_time": 0.25,
    "knee_contact": -1.0,
    "body_penetration": -10.0,  # Robot Parkour Learning's penetration depth (m): legs and base collide only here
    "feet_edge": -1.0,  # Extreme Parkour: feet in contact on a terrain edge
    "flat_orientation": -0.5,
    "joint_limits": -5.0,
    "stand_still": -0.5,
}

GO2_PARKOUR = TaskConfig(
    name="go2_parkour",
    description=(
        "Go2 parkour with the height scan: boxes up and down, gaps, hurdles and stepping stones under "
        "velocity commands (heading held by the yaw command); warm-started from go2_rough, trained by "
        "krabgraph.train (MJX + rsl_rl PPO)."
    ),
    total_env_steps=900_000_000,
    rewards=dict(PARKOUR_REWARD_WEIGHTS),
    commands=Commands(
        vx=(0.3, 1.0),
        vy=(-0.2, 0.2),
        yaw=(-1.0, 1.0),
        standing=0.05,
        zero_yaw=0.0,
        heading_gain=1.0,
        free_kinds=("stairs_up", "rough"),
        free=Commands(yaw=(-1.5, 1.5)),  # 1 rad/s turns inside the range, not at its edge
    ),
    terrain=TerrainConfig(
        kinds=PARKOUR_TILE_KINDS,
        border=12.0,
        generator="parkour_tiles",
        spawn_yaw=0.3,
        fall_ground_span=0.25,
        smoke_kinds=("box_up", "gap", "hurdle", "rough"),
    ),
    actor_terms=(*ACTOR_TERMS[:-1], scan_term(PARKOUR_SCAN_CENTER)),
    init_from="go2_rough",
)

# -- ANYmal-D on rough terrain in Isaac Lab's Isaac-Velocity-Rough-Anymal-D-v0 policy layout ---------
# The actor sees Isaac Lab's 235 terms in its order, unscaled, with its training noise; actions are
# q0 + 0.5 a. The rest of the recipe (rewards, randomization, curriculum, symmetry, observation
# normalization inside the network) is krabgraph's, with Isaac Lab's ANYmal-D values where it has them.
ANYMAL_D_ACTOR_TERMS = (
    ObsTerm("base_lin_vel", noise=0.1),
    ObsTerm("base_ang_vel", noise=0.2),
    ObsTerm("projected_gravity", noise=0.05),
    ObsTerm("velocity_commands"),
    ObsTerm("joint_pos_rel", noise=0.01),
    ObsTerm("joint_vel_rel", noise=1.5),
    ObsTerm("last_action"),
    replace(scan_term(), noise=0.1),
)

ANYMAL_D_ROUGH = TaskConfig(
    name="anymal_d_rough",
    robot="anymal_d",
    description=(
        "ANYmal-D velocity tracking on rough terrain (stairs, boxes, slopes, noise) in Isaac Lab's "
        "Isaac-Velocity-Rough-Anymal-D-v0 policy layout (235 observations, actions q0 + 0.5 a); "
        "trained by krabgraph.train (MJX + rsl_rl PPO)."
    ),
    total_env_steps=600_000_000,
    action_scale=0.5,  # Isaac Lab's JointPositionActionCfg scale
    actor_terms=ANYMAL_D_ACTOR_TERMS,
    rewards=REWARD_WEIGHTS | {"joint_torques": -1e-5},  # Isaac Lab's ANYmal-D torque weight (80 N·m motors)
    # Isaac Lab's +-5 kg; pushes up to go2_rough's change of velocity (40 N s on 15 kg: 2.6 m/s), not Isaac
    # Lab's 0.5 m/s (30 N s here until 209.8 M steps; raised to this from the next run on)
    randomization=Randomization(added_mass=(-5.0, 5.0), push_impulse=150.0),
    commands=Commands(vx=(-1.0, 1.5), vy=(-1.0, 1.0), yaw=(-1.5, 1.5)),  # 1 m/s and 1 rad/s inside the range
    terrain=TerrainConfig(  # Isaac Lab's rough generator reaches 0.23 m risers and 0.2 m boxes
        difficulty=(
            ("rough", (0.02, 0.10)),
            ("slope_up", (0.0, 0.4)),
            ("slope_down", (0.0, 0.4)),
            ("stairs_up", (0.05, 0.23)),
            ("stairs_down", (0.05, 0.23)),
            ("boxes", (0.05, 0.20)),
        )
    ),
)

TASKS = {"go2_rough": TaskConfig(), "go2_parkour": GO2_PARKOUR, "anymal_d_rough": ANYMAL_D_ROUGH}


def get_task(name: str) -> TaskConfig:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


__all__ = [
    "ANYMAL_D_ROUGH",
    "GO2_PARKOUR",
    "PARKOUR_SCAN_CENTER",
    "TASKS",
    "Commands",
    "ObsTerm",
    "PPOConfig",
    "Randomization",
    "TaskConfig",
    "TerrainConfig",
    "get_task",
    "scan_term",
]
