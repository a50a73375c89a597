"""The batched rough-terrain velocity task on MJX: reset, step, observations, rewards, curriculum.

Every function here describes ONE environment; ``RoughEnv`` vmaps them over all environments and
jits the result. Per policy step (``control_dt``): actions → joint targets (the contract's action
map), ``decimation`` physics steps with the PD law and motor limits of the CPU HAL (targets
delayed by each environment's actuator delay), pushes as a force on the base, then rewards,
terminations (fall, exploded/NaN, time-out), curriculum and automatic reset, command
resampling, and the actor's (noisy) and critic's observations.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from mujoco import mjx

from krabgraph.nodes.mujoco.heightfield import TILE_GENERATORS
from krabgraph.nodes.robots import RobotDescription, load_robot
from krabgraph.nodes.robots.motor import limit_torque
from krabgraph.nodes.rotations import projected_gravity, quat_from_yaw, rotation_matrix, yaw_of_matrix
from krabgraph.train import observations as obs_terms
from krabgraph.train import rewards as reward_terms
from krabgraph.train.config import SCAN_OFFSET, SCAN_RESOLUTION, SCAN_SHAPE, SCAN_SIZE, Commands, TaskConfig
from krabgraph.train.model import build_training_model
from krabgraph.train.terrain import TerrainArrays, ground_height, height_scan, on_edge, terrain_arrays, update_level

EXPLODED_SPEED = 100.0  # m/s or rad/s in any velocity component: the environment blew up
BASE_HALF_LENGTH = 0.2  # m, front and rear points of the base for body_penetration (the trunk is ~0.38 m)
CALF_POINTS = (0.25, 0.5, 0.75)  # fractions from knee to foot sampled for body_penetration


class EnvState(NamedTuple):
    """Per-environment state beyond MuJoCo's (vmapped: every field gains a leading env axis)."""

    data: mjx.Data
    key: jax.Array
    obs_key: jax.Array  # noise key of the current observation (recomputing it gives the same values)
    command: jax.Array  # [3] vx, vy, yaw rate (body frame)
    last_action: jax.Array  # [n] clipped network output
    target: jax.Array  # [n] joint targets in effect (rad)
    last_joint_vel: jax.Array  # [n]
    tau: jax.Array  # [n] torques of the last physics step
    air_time: jax.Array  # [feet] s
    step: jax.Array  # policy steps in this episode
    cmd_timer: jax.Array  # policy steps until the command is resampled
    push_timer: jax.Array  # policy steps until the next push
    push_left: jax.Array  # policy steps the current push still lasts
    push_force: jax.Array  # [3] N, world frame
    origin: jax.Array  # [3] spawn point of the episode
    commanded: jax.Array  # m, integral of |commanded planar speed| over the episode
    level: jax.Array  # terrain row (difficulty)
    column: jax.Array  # terrain column (kind)
    delay: jax.Array  # physics steps of actuator delay
    gain_scale: jax.Array  # [2] kp, kd multipliers
    added_mass: jax.Array  # kg on the base
    friction: jax.Array  # foot friction coefficient


class StepOut(NamedTuple):
    reward: jax.Array
    done: jax.Array
    time_out: jax.Array
    exploded: jax.Array
    fell: jax.Array
    terms: dict  # per reward term, weighted, per step


# Model fields randomized per environment (vmapped over the env axis; the rest is shared).
RANDOMIZED_FIELDS = ("geom_friction", "body_mass", "body_ipos")


class RoughEnv:
    """All environments of one task on the default JAX device."""

    def __init__(self, task: TaskConfig, robot: RobotDescription | None = None):
        self.task = task
        self.robot = robot or load_robot(task.robot)
        r = self.robot
        tc = task.terrain
        generate = TILE_GENERATORS[tc.generator]
        self.grid = generate(
            task.seed, tc.rows, tc.kinds, tc.tile_size, tc.resolution, tc.border, **tc.generator_kwargs()
        )
        free = [kind in task.commands.free_kinds for kind in self.grid.kinds]
        self._free_columns = jnp.asarray(free) if task.commands.free is not None and any(free) else None
        self.tm = build_training_model(
            r, self.grid, task.physics_dt, task.solver_iterations, task.ls_iterations, task.impratio
        )
        self.decimation = round(r.control_dt / task.physics_dt)
        if abs(self.decimation * task.physics_dt - r.control_dt) > 1e-9:
            raise ValueError(f"control_dt {r.control_dt} is not a multiple of physics_dt {task.physics_dt}")
        self.num_envs = task.num_envs
        self.num_actions = r.num_joints
        self.max_steps = round(task.episode_s / r.control_dt)
        # parkour reward inputs are computed only for tasks that weight a term reading them
        self.parkour_inputs = any(task.rewards.get(name, 0.0) for name in reward_terms.PARKOUR_TERMS)
        self.arrays = terrain_arrays(
            self.grid, SCAN_SIZE, SCAN_RESOLUTION, edges=self.parkour_inputs, scan_center=task.scan_center
        )
        # leg points for body_penetration: hips (the calves' parent bodies), knees, feet
        self.thigh_bodies = np.asarray(self.tm.model.body_parentid[self.tm.calf_bodies])
        self.actor_terms = task.actor_terms
        self.joints = r.joint_names  # the policy's joint order = the description's
        self._consts = dict(
            q0=jnp.asarray(r.default_pos, jnp.float32),
            lower=jnp.asarray(r.pos_lower, jnp.float32),
            upper=jnp.asarray(r.pos_upper, jnp.float32),
            kp=jnp.asarray(r.kp, jnp.float32),
            kd=jnp.asarray(r.kd, jnp.float32),
            effort=jnp.asarray(r.effort_limit, jnp.float32),
            saturation=jnp.asarray(r.saturation, jnp.float32),
            vel_limit=jnp.asarray(r.velocity_limit, jnp.float32),
        )
        self.model = mjx.put_model(self.tm.model)
        self.batched_model, self.model_axes = None, None
        self.reward_weights = {k: float(v) for k, v in task.rewards.items() if v != 0.0}
        self._step = jax.jit(jax.vmap(self._env_step, in_axes=(None, None, 0, 0, None)), donate_argnums=(2,))
        self._obs = jax.jit(jax.vmap(self._observe, in_axes=(None, 0)))

    # -- set-up ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> EnvState:
        """Randomize the per-environment model and spawn every environment (levels up to max_init_level)."""
        n, dr = self.num_envs, self.task.randomization
        k_fric, k_mass, k_com, k_gain, k_level, k_envs = jax.random.split(key, 6)
        friction = jax.random.uniform(k_fric, (n,), minval=dr.friction[0], maxval=dr.friction[1])
        added = jax.random.uniform(k_mass, (n,), minval=dr.added_mass[0], maxval=dr.added_mass[1])
        com = jax.random.uniform(k_com, (n, 3), minval=-1.0, maxval=1.0) * jnp.asarray(dr.com_shift)
        gains = jax.random.uniform(k_gain, (n, 2), minval=dr.gain_scale[0], maxval=dr.gain_scale[1])
        self.batched_model, self.model_axes = self._randomized_model(friction, added, com)
        rows, cols = self.task.terrain.rows, len(self.task.terrain.kinds)
        level = jax.random.randint(k_level, (n,), 0, min(self.task.terrain.max_init_level, rows - 1) + 1)
        column = jnp.arange(n) % cols
        data = jax.vmap(lambda _: mjx.make_data(self.model))(jnp.arange(n))
        keys = jax.random.split(k_envs, n)
        spawn = jax.jit(jax.vmap(self._spawn, in_axes=(None, 0, 0, 0, 0, 0, 0, 0)))
        state = spawn(self.arrays, data, keys, level, column, gains, added, friction)
        self._step = jax.jit(jax.vmap(self._env_step, in_axes=(self.model_axes, None, 0, 0, None)), donate_argnums=(2,))
        return state

    def _randomized_model(self, friction: jax.Array, added: jax.Array, com: jax.Array):
        m, tm = self.model, self.tm
        n = friction.shape[0]
        geom_friction = jnp.tile(m.geom_friction[None], (n, 1, 1)).at[:, tm.foot_geoms, 0].set(friction[:, None])
        body_mass = jnp.tile(m.body_mass[None], (n, 1)).at[:, tm.base_body].add(added)
        body_ipos = jnp.tile(m.body_ipos[None], (n, 1, 1)).at[:, tm.base_body].add(com)
        batched = m.replace(geom_friction=geom_friction, body_mass=body_mass, body_ipos=body_ipos)
        axes = jax.tree_util.tree_map(lambda _: None, m)
        axes = axes.replace(geom_friction=0, body_mass=0, body_ipos=0)
        return batched, axes

    # -- one environment ---------------------------------------------------------------------------
    def _spawn(self, arrays: TerrainArrays, data: mjx.Data, key, level, column, gains, added, friction) -> EnvState:
        """A fresh episode on tile (level, column): default pose (+ noise), random yaw, at rest."""
        task, c = self.task, self._consts
        k_xy, k_yaw, k_q, k_cmd, k_push, k_delay, k_obs, key = jax.random.split(key, 8)
        center = arrays.centers[level, column]
        jitter = task.terrain.spawn_jitter
        xy = center[:2] + jax.random.uniform(k_xy, (2,), minval=-jitter, maxval=jitter)
        yaw_range = task.terrain.spawn_yaw
        yaw = jax.random.uniform(k_yaw, (), minval=-yaw_range, maxval=yaw_range)
        noise = task.randomization.reset_joint_noise
        q = jnp.clip(
            c["q0"] + jax.random.uniform(k_q, c["q0"].shape, minval=-noise, maxval=noise), c["lower"], c["upper"]
        )
        z = ground_height(self.grid, arrays, xy[0], xy[1]) + self.tm.stand_height + 0.03
        qpos = data.qpos.at[0:3].set(jnp.array([xy[0], xy[1], z]))
        qpos = qpos.at[3:7].set(quat_from_yaw(yaw, xp=jnp))
        qpos = qpos.at[self.tm.qpos_adr].set(q)
        data = data.replace(
            qpos=qpos,
            qvel=jnp.zeros_like(data.qvel),
            qacc_warmstart=jnp.zeros_like(data.qacc_warmstart),
            ctrl=jnp.zeros_like(data.ctrl),
            xfrc_applied=jnp.zeros_like(data.xfrc_applied),
            time=jnp.zeros_like(data.time),
        )
        n = self.num_actions
        dr = task.randomization
        return EnvState(
            data=data,
            key=key,
            obs_key=k_obs,
            command=self._hold_heading(self._sample_command(k_cmd, column), yaw, column),
            last_action=jnp.zeros(n),
            target=q,
            last_joint_vel=jnp.zeros(n),
            tau=jnp.zeros(n),
            air_time=jnp.zeros(len(self.tm.foot_geoms)),
            step=jnp.zeros((), jnp.int32),
            cmd_timer=jnp.asarray(round(task.commands.resample_s / self.robot.control_dt), jnp.int32),
            push_timer=self._push_interval(k_push),
            push_left=jnp.zeros((), jnp.int32),
            push_force=jnp.zeros(3),
            origin=jnp.array([xy[0], xy[1], z]),
            commanded=jnp.zeros(()),
            level=jnp.asarray(level, jnp.int32),
            column=jnp.asarray(column, jnp.int32),
            delay=jax.random.randint(k_delay, (), dr.delay_steps[0], dr.delay_steps[1] + 1),
            gain_scale=gains,
            added_mass=added,
            friction=friction,
        )

    def _sample_command(self, key: jax.Array, column: jax.Array) -> jax.Array:
        """A command from ``Commands``, or from ``Commands.free`` on a tile of ``Commands.free_kinds``."""
        cc = self.task.commands
        if self._free_columns is None:
            return self._draw_command(cc, key)
        k_task, k_free = jax.random.split(key)
        free = self._draw_command(cc.free, k_free)
        return jnp.where(self._free_columns[column], free, self._draw_command(cc, k_task))

    @staticmethod
    def _draw_command(cc: Commands, key: jax.Array) -> jax.Array:
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        cmd = jnp.stack(
            [
                jax.random.uniform(k1, (), minval=cc.vx[0], maxval=cc.vx[1]),
                jax.random.uniform(k2, (), minval=cc.vy[0], maxval=cc.vy[1]),
                jax.random.uniform(k3, (), minval=cc.yaw[0], maxval=cc.yaw[1]),
            ]
        )
        cmd = jnp.where(jax.random.uniform(k4) < cc.zero_yaw, cmd.at[2].set(0.0), cmd)
        return jnp.where(jax.random.uniform(k5) < cc.standing, jnp.zeros(3), cmd)

    def _hold_heading(self, command: jax.Array, yaw: jax.Array, column: jax.Array) -> jax.Array:
        """With ``Commands.heading_gain`` > 0, the yaw command steers the base's heading to +x (not on
        the tiles whose commands are free)."""
        cc = self.task.commands
        if cc.heading_gain <= 0.0:
            return command
        rate = jnp.clip(cc.heading_gain * _wrap(-yaw), cc.yaw[0], cc.yaw[1])
        held = command.at[2].set(jnp.where(jnp.any(command != 0.0), rate, 0.0))
        return held if self._free_columns is None else jnp.where(self._free_columns[column], command, held)

    def _push_interval(self, key: jax.Array) -> jax.Array:
        lo, hi = self.task.randomization.push_interval_s
        dt = self.robot.control_dt
        return jax.random.randint(key, (), round(lo / dt), round(hi / dt) + 1)

    def _env_step(self, model, arrays: TerrainArrays, s: EnvState, action: jax.Array, push_scale: jax.Array):
        task, c, tm = self.task, self._consts, self.tm
        dt = self.robot.control_dt
        action = jnp.clip(action, -task.action_clip, task.action_clip)
        target = c["q0"] + task.action_scale * action
        kp, kd = c["kp"] * s.gain_scale[0], c["kd"] * s.gain_scale[1]
        push = jnp.where(s.push_left > 0, s.push_force, jnp.zeros(3))
        xfrc = s.data.xfrc_applied.at[tm.base_body, 0:3].set(push)

        def physics_step(data: mjx.Data, k: jax.Array):
            goal = jnp.where(k < s.delay, s.target, target)
            q, qd = data.qpos[tm.qpos_adr], data.qvel[tm.dof_adr]
            tau = limit_torque(kp * (goal - q) - kd * qd, qd, c["effort"], c["vel_limit"], c["saturation"], xp=jnp)
            data = data.replace(ctrl=data.ctrl.at[tm.actuator_id].set(tau), xfrc_applied=xfrc)
            return mjx.step(model, data), tau

        data, taus = jax.lax.scan(physics_step, s.data, jnp.arange(self.decimation))
        tau = taus[-1]

        # -- what happened -------------------------------------------------------------------------
        k = _Kinematics.of(self, arrays, data)
        exploded = ~(jnp.isfinite(data.qpos).all() & jnp.isfinite(data.qvel).all())
        exploded |= jnp.abs(data.qvel).max() > EXPLODED_SPEED
        pitch = jnp.arcsin(jnp.clip(k.gravity[0], -1.0, 1.0))
        roll = jnp.arctan2(-k.gravity[1], -k.gravity[2])
        r = self.robot  # a fall as the robot description defines it (the safety node's too)
        base_clearance = k.base_clearance
        span = task.terrain.fall_ground_span
        if span > 0.0:  # the lowest ground under the base's length: hurdles pass under it
            ends = data.qpos[0:2] + jnp.outer(jnp.array([span, -span]), jnp.array([jnp.cos(k.yaw), jnp.sin(k.yaw)]))
            lowest = jnp.min(ground_height(self.grid, arrays, ends[:, 0], ends[:, 1]))
            base_clearance = jnp.maximum(base_clearance, data.qpos[2] - lowest)
        fell = (
            (jnp.abs(roll) > r.fall_max_tilt)
            | (jnp.abs(pitch) > r.fall_max_tilt)
            | (base_clearance < r.fall_min_base_height)
        )
        time_out = s.step + 1 >= self.max_steps

        contact = k.foot_clearance < 0.01
        first_contact = contact & (s.air_time > 0)
        inputs = reward_terms.RewardInputs(
            command=s.command,
            lin_vel=k.lin_vel,
            ang_vel=k.ang_vel,
            gravity=k.gravity,
            joint_pos=k.joint_pos,
            joint_vel=k.joint_vel,
            last_joint_vel=s.last_joint_vel,
            default_joint_pos=c["q0"],
            lower=c["lower"],
            upper=c["upper"],
            tau=tau,
            action=action,
            last_action=s.last_action,
            air_time=s.air_time + dt,
            first_contact=first_contact,
            knee_clearance=k.knee_clearance,
            dt=dt,
        )
        if self.parkour_inputs:
            inputs = inputs._replace(**self._parkour_inputs(arrays, data, contact, k.yaw, s.column))
        terms = {name: w * dt * reward_terms.TERMS[name](inputs) for name, w in self.reward_weights.items()}
        reward = jnp.maximum(sum(terms.values()), 0.0)
        reward = jnp.where(exploded, 0.0, jnp.nan_to_num(reward))

        done = exploded | fell | time_out
        key, k_cmd, k_push, k_force, k_level, k_spawn, k_obs = jax.random.split(s.key, 7)

        # -- commands and pushes -------------------------------------------------------------------
        cmd_timer = s.cmd_timer - 1
        resample = cmd_timer <= 0
        command = jnp.where(resample, self._sample_command(k_cmd, s.column), s.command)
        command = self._hold_heading(command, k.yaw, s.column)
        cmd_timer = jnp.where(resample, round(task.commands.resample_s / dt), cmd_timer)
        push_timer = s.push_timer - 1
        start_push = push_timer <= 0
        angle = jax.random.uniform(k_force, (), minval=-jnp.pi, maxval=jnp.pi)
        impulse = jax.random.uniform(jax.random.fold_in(k_force, 1)) * task.randomization.push_impulse * push_scale
        duration = task.randomization.push_duration_s
        force = jnp.array([jnp.cos(angle), jnp.sin(angle), 0.0]) * impulse / duration
        push_force = jnp.where(start_push, force, s.push_force)
        push_left = jnp.where(start_push, round(duration / dt), jnp.maximum(s.push_left - 1, 0))
        push_timer = jnp.where(start_push, self._push_interval(k_push), push_timer)

        stepped = EnvState(
            data=data,
            key=key,
            obs_key=k_obs,
            command=command,
            last_action=action,
            target=target,
            last_joint_vel=k.joint_vel,
            tau=tau,
            air_time=jnp.where(contact, 0.0, s.air_time + dt),
            step=s.step + 1,
            cmd_timer=cmd_timer,
            push_timer=push_timer,
            push_left=push_left,
            push_force=push_force,
            origin=s.origin,
            commanded=s.commanded + jnp.linalg.norm(s.command[:2]) * dt,
            level=s.level,
            column=s.column,
            delay=s.delay,
            gain_scale=s.gain_scale,
            added_mass=s.added_mass,
            friction=s.friction,
        )
        # -- curriculum and reset ------------------------------------------------------------------
        walked = jnp.linalg.norm(jnp.nan_to_num(data.qpos[0:2]) - s.origin[:2])
        level = update_level(s.level, walked, stepped.commanded, task.terrain.rows, task.terrain.tile_size, k_level)
        fresh = self._spawn(arrays, data, k_spawn, level, s.column, s.gain_scale, s.added_mass, s.friction)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(_expand(done, a), a, b), fresh, stepped)
        out = StepOut(reward, done, time_out & ~fell & ~exploded, exploded, fell & ~exploded, terms)
        return state, out

    def _parkour_inputs(
        self, arrays: TerrainArrays, data: mjx.Data, contact: jax.Array, yaw: jax.Array, column: jax.Array
    ) -> dict[str, jax.Array]:
        """Heading error (target +x; none on the tiles whose commands are free, where the robot turns
        as commanded), feet in contact on an edge, and how deep the legs' and the base's points are
        below the ground (they do not collide in the training model)."""
        tm = self.tm
        feet = data.geom_xpos[tm.foot_geoms]
        knees = data.xpos[tm.calf_bodies]
        hips = data.xpos[self.thigh_bodies]
        base, rot = data.qpos[0:3], data.xmat[tm.base_body]
        ends = base + jnp.outer(jnp.array([BASE_HALF_LENGTH, -BASE_HALF_LENGTH]), rot[:, 0])
        # the calves every quarter of their length: a 0.05 m bar fits between points 0.1 m apart,
        # and a calf the training model lets through a bar is what the CPU simulator stops on it
        calves = [knees + f * (feet - knees) for f in CALF_POINTS]
        points = jnp.concatenate([knees, *calves, (knees + hips) / 2, base[None], ends])
        depth = ground_height(self.grid, arrays, points[:, 0], points[:, 1]) - points[:, 2]
        heading_error = _wrap(-yaw)
        if self._free_columns is not None:
            heading_error = jnp.where(self._free_columns[column], 0.0, heading_error)
        return dict(
            heading_error=heading_error,
            feet_edge=contact & on_edge(self.grid, arrays.edges, feet[:, 0], feet[:, 1]),
            penetration=jnp.sum(jnp.maximum(depth, 0.0)),
        )

    def _observe(self, arrays: TerrainArrays, s: EnvState) -> tuple[jax.Array, jax.Array]:
        """(actor observation with noise, critic observation without noise) of one environment."""
        data, tm = s.data, self.tm
        quat = data.qpos[3:7] / jnp.linalg.norm(data.qpos[3:7])
        rot = rotation_matrix(quat, xp=jnp)
        yaw = yaw_of_matrix(rot, xp=jnp)
        scan = height_scan(self.grid, arrays.heights, arrays.scan_xy, data.qpos[0:3], yaw, SCAN_OFFSET)
        inputs = obs_terms.TermInputs(
            joint_pos=data.qpos[tm.qpos_adr],
            joint_vel=data.qvel[tm.dof_adr],
            default_joint_pos=self._consts["q0"],
            quat=quat,
            ang_vel=data.qvel[3:6],
            lin_vel=rot.T @ data.qvel[0:3],
            command=s.command,
            last_action=s.last_action,
            height_scan=scan,
        )
        actor = obs_terms.build(self.actor_terms, inputs, s.obs_key)
        clean = obs_terms.build(self.actor_terms, inputs)
        extras = {
            "base_lin_vel": inputs.lin_vel * 2.0,
            "friction": s.friction[None],
            "added_mass": s.added_mass[None] * 0.5,
            "gain_scale": s.gain_scale[:1],
            "push": jnp.where(s.push_left > 0, s.push_force, 0.0) * 0.01,
        }
        critic = jnp.concatenate([clean, *(extras[name] for name, _ in self.task.critic_extras)])
        return actor, critic

    # -- batched API -------------------------------------------------------------------------------
    def step(self, state: EnvState, actions: jax.Array, push_scale: float) -> tuple[EnvState, StepOut]:
        return self._step(self.batched_model, self.arrays, state, actions, jnp.float32(push_scale))

    def observe(self, state: EnvState) -> tuple[jax.Array, jax.Array]:
        return self._obs(self.arrays, state)

    def obs_names(self, critic: bool) -> list[tuple[str, int]]:
        """(term, size) of the actor's or the critic's observation."""
        sizes = {"height_scan": SCAN_SHAPE[0] * SCAN_SHAPE[1], "velocity_commands": 3}
        names = [
            (t.name, self.num_actions if t.name in obs_terms.PER_JOINT else sizes.get(t.name, 3))
            for t in self.actor_terms
        ]
        return names + list(self.task.critic_extras) if critic else names


class _Kinematics(NamedTuple):
    lin_vel: jax.Array  # body frame
    ang_vel: jax.Array
    gravity: jax.Array
    joint_pos: jax.Array
    joint_vel: jax.Array
    base_clearance: jax.Array  # base height above the ground under it
    foot_clearance: jax.Array  # [feet] sphere bottom above the ground under it
    knee_clearance: jax.Array  # [feet] calf origin above the ground under it
    yaw: jax.Array  # rad, heading of the base's x axis in the world

    @staticmethod
    def of(env: RoughEnv, arrays: TerrainArrays, data: mjx.Data) -> _Kinematics:
        tm = env.tm
        quat = data.qpos[3:7] / jnp.linalg.norm(data.qpos[3:7])
        rot = rotation_matrix(quat, xp=jnp)
        base = data.qpos[0:3]
        feet = data.geom_xpos[tm.foot_geoms]
        knees = data.xpos[tm.calf_bodies]
        ground = lambda p: ground_height(env.grid, arrays, p[..., 0], p[..., 1])  # noqa: E731
        return _Kinematics(
            lin_vel=rot.T @ data.qvel[0:3],
            ang_vel=data.qvel[3:6],
            gravity=projected_gravity(quat, xp=jnp),
            joint_pos=data.qpos[tm.qpos_adr],
            joint_vel=data.qvel[tm.dof_adr],
            base_clearance=base[2] - ground(base),
            foot_clearance=feet[:, 2] - jnp.asarray(tm.foot_radius) - ground(feet),
            knee_clearance=knees[:, 2] - ground(knees),
            yaw=yaw_of_matrix(rot, xp=jnp),
        )


def _wrap(angle: jax.Array) -> jax.Array:
    return jnp.arctan2(jnp.sin(angle), jnp.cos(angle))


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
    return jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(like) - jnp.ndim(mask)))


__all__ = ["EnvState", "RoughEnv", "StepOut"]
