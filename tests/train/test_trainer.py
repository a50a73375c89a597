"""The trainer on the CPU (its own environment, .venv-train): terms, scan, curriculum, NaN reset,
mirror, exact resume, and the smoke run end to end through export and the runtime's loaders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from krabgraph.msgs import HeightScan, RobotState, VelocityCommand, set_array  # noqa: E402
from krabgraph.nodes.hal_io import RobotSnapshot, fill_robot_state  # noqa: E402
from krabgraph.nodes.mujoco.heightfield import grid_pattern  # noqa: E402
from krabgraph.nodes.policy.contract import load_contract, parse_contract  # noqa: E402
from krabgraph.nodes.policy.observations import ObservationBuilder  # noqa: E402
from krabgraph.train import rewards  # noqa: E402
from krabgraph.train.config import SCAN_OFFSET, SCAN_RESOLUTION, SCAN_SHAPE, SCAN_SIZE, get_task  # noqa: E402
from krabgraph.train.env import RoughEnv  # noqa: E402
from krabgraph.train.export import contract_dict  # noqa: E402
from krabgraph.train.observations import mirror_joint, mirror_map  # noqa: E402
from krabgraph.train.runner import Trainer  # noqa: E402
from krabgraph.train.terrain import height_scan, update_level  # noqa: E402

TASK = get_task("go2_rough").smoke()


def _moved_env(task):
    env = RoughEnv(task)
    state = env.init(jax.random.PRNGKey(3))
    key = jax.random.PRNGKey(4)
    for _ in range(5):  # some motion: joint velocities, a tilt, a last action
        key, k = jax.random.split(key)
        state, _ = env.step(state, jax.random.normal(k, (env.num_envs, env.num_actions)), 0.0)
    return env, state


@pytest.fixture(scope="module")
def env_and_state():
    return _moved_env(TASK)


@pytest.fixture(scope="module", params=["go2_rough", "anymal_d_rough"])
def task_env_and_state(request):
    """Each task's environment after some motion (ANYmal-D's actor reads the privileged base velocity)."""
    return _moved_env(get_task(request.param).smoke())


def test_observation_matches_the_runtime_for_the_same_state(task_env_and_state):
    """Trainer terms (JAX) and the runtime's ObservationBuilder give the same vector."""
    env, state = task_env_and_state
    _, critic = env.observe(state)
    raw = contract_dict(env.task, env.robot, {})
    builder = ObservationBuilder(parse_contract(raw, Path("generated/contract.yaml")))
    actor_dim = builder.dim
    for i in range(env.num_envs):
        d = state.data
        qpos, qvel = np.asarray(d.qpos[i], np.float64), np.asarray(d.qvel[i], np.float64)
        quat = qpos[3:7] / np.linalg.norm(qpos[3:7])
        w, x, y, z = quat
        rot = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])  # fmt: skip
        snap = RobotSnapshot(
            time=0.0,
            joint_names=env.robot.joint_names,
            q=qpos[env.tm.qpos_adr],
            qd=qvel[env.tm.dof_adr],
            tau=np.zeros(12),
            imu_quat=quat,
            imu_gyro=qvel[3:6],
            imu_accel=None,
            foot_names=env.robot.foot_geoms,
            foot_contact=np.zeros(4, bool),
            foot_force=np.zeros((4, 3)),
            base_pos=qpos[0:3],
            base_quat=quat,
            base_lin_vel=rot.T @ qvel[0:3],  # MuJoCo's free-joint linear velocity is in world axes
            base_ang_vel=qvel[3:6],
            base_lin_vel_world=qvel[0:3],
        )
        msg = fill_robot_state(RobotState(), snap, stamp_ns=0)
        cmd = np.asarray(state.command[i])
        points = grid_pattern(SCAN_SIZE, SCAN_RESOLUTION).reshape(-1, 2)
        heights = env.grid.field.heights
        scan_values = height_scan(env.grid, heights, points, qpos[0:3], _yaw(quat), SCAN_OFFSET, xp=np).reshape(
            SCAN_SHAPE
        )
        scan = HeightScan(offset=SCAN_OFFSET)
        set_array(scan.heights, scan_values.astype(np.float32), np.float32)
        decoded = builder.decode(
            msg, VelocityCommand(vx=cmd[0], vy=cmd[1], yaw_rate=cmd[2]), scan, state.last_action[i]
        )
        runtime = builder.build(decoded)
        np.testing.assert_allclose(np.asarray(critic[i, :actor_dim]), runtime, atol=2e-4, rtol=1e-5)


def test_scan_matches_the_cpu_hal_raycast_within_1cm(env_and_state):
    """The trainer's height-field lookup against the HAL's mj_multiRay scan on the same height field."""
    from krabgraph.nodes.mujoco.physics import MujocoRobotSim
    from krabgraph.nodes.mujoco.sensors import HeightScanner
    from krabgraph.nodes.mujoco.terrain import Terrain

    env, _ = env_and_state
    terrain = Terrain("training", 0, (), floor_z=float(env.grid.field.heights.min()) - 0.1, heightfield=env.grid.field)
    sim = MujocoRobotSim(env.robot, terrain)
    scanner = HeightScanner(sim.scene, SCAN_SIZE, SCAN_RESOLUTION, SCAN_OFFSET)
    rng = np.random.default_rng(0)
    worst, rough_points = 0.0, 0
    for _ in range(25):
        field = env.grid.field
        x0, y0 = field.origin
        ex, ey = field.extent
        pose = (rng.uniform(x0 + 1, x0 + ex - 1), rng.uniform(y0 + 1, y0 + ey - 1), rng.uniform(-np.pi, np.pi))
        sim.reset(pose)
        cpu = scanner.scan(sim.data).reshape(-1)
        base = sim.data.xpos[sim.scene.base_body]
        args = (env.arrays.heights, env.arrays.scan_xy, jnp.asarray(base), jnp.asarray(pose[2]), SCAN_OFFSET)
        jax_scan = np.asarray(height_scan(env.grid, *args))
        worst = max(worst, float(np.abs(cpu - jax_scan).max()))
        rough_points += int(np.ptp(cpu) > 0.02)
    assert worst < 0.01
    assert rough_points >= 5  # the poses cover uneven ground, not only flat tiles
    assert scanner.shape == SCAN_SHAPE


def test_reward_terms(reward_inputs):
    n = 12
    base = reward_inputs(
        command=jnp.array([1.0, 0.0, 0.5]),
        lin_vel=jnp.array([1.0, 0.0, 0.0]),
        ang_vel=jnp.array([0.0, 0.0, 0.5]),
        air_time=jnp.array([0.7, 0.2, 0.0, 0.0]),
        first_contact=jnp.array([True, True, False, False]),
        knee_clearance=jnp.array([0.1, 0.01, 0.1, 0.1]),
    )
    t = rewards.TERMS
    assert float(t["track_lin_vel_xy"](base)) == pytest.approx(1.0)
    slow = base._replace(lin_vel=jnp.array([0.5, 0.0, 0.0]))
    assert float(t["track_lin_vel_xy"](slow)) == pytest.approx(np.exp(-0.25 / 0.25))
    assert float(t["track_lin_vel_xy_fine"](slow)) < float(t["track_lin_vel_xy"](slow))
    assert float(t["feet_air_time"](base)) == pytest.approx((0.7 - 0.5) + (0.2 - 0.5))
    assert float(t["knee_contact"](base)) == 1.0
    assert float(t["stand_still"](base._replace(joint_pos=jnp.full(n, 0.1)))) == 0.0  # moving: no penalty
    still = base._replace(command=jnp.zeros(3), joint_pos=jnp.full(n, 0.1))
    assert float(t["stand_still"](still)) == pytest.approx(1.2)
    assert float(t["joint_limits"](base._replace(joint_pos=jnp.full(n, 0.9)))) == 0.0
    assert float(t["joint_limits"](base._replace(joint_pos=jnp.full(n, 1.0)))) == pytest.approx(12 * 0.05)


def test_curriculum_promotes_demotes_and_wraps():
    key = jax.random.PRNGKey(0)
    assert int(update_level(jnp.int32(2), jnp.float32(5.0), jnp.float32(10.0), 10, 8.0, key)) == 3
    assert int(update_level(jnp.int32(2), jnp.float32(1.0), jnp.float32(10.0), 10, 8.0, key)) == 1
    assert int(update_level(jnp.int32(2), jnp.float32(3.0), jnp.float32(4.0), 10, 8.0, key)) == 2
    assert int(update_level(jnp.int32(0), jnp.float32(0.0), jnp.float32(4.0), 10, 8.0, key)) == 0
    wrapped = {
        int(update_level(jnp.int32(9), jnp.float32(5.0), jnp.float32(1.0), 10, 8.0, k))
        for k in jax.random.split(key, 20)
    }
    assert len(wrapped) > 3 and all(0 <= w < 10 for w in wrapped)


def test_exploded_environment_is_reset_and_counted(env_and_state):
    env, state = env_and_state
    bad = state._replace(data=state.data.replace(qvel=state.data.qvel.at[0, 0].set(jnp.nan)))
    after, out = env.step(bad, jnp.zeros((env.num_envs, env.num_actions)), 0.0)
    assert bool(out.exploded[0]) and bool(out.done[0]) and float(out.reward[0]) == 0.0
    assert not bool(out.exploded[1:].any())
    assert bool(jnp.isfinite(after.data.qpos).all()) and bool(jnp.isfinite(after.data.qvel).all())
    assert int(after.step[0]) == 0


def test_mirror_map_is_an_involution():
    joints = ("FL_hip_joint", "FL_thigh_joint", "FR_hip_joint", "FR_thigh_joint", "RL_hip_joint", "RR_hip_joint")
    assert mirror_joint("FL_hip_joint") == "FR_hip_joint" and mirror_joint("RR_calf_joint") == "RL_calf_joint"
    names = [("base_ang_vel", 3), ("velocity_commands", 3), ("joint_pos_rel", 6), ("height_scan", 6), ("friction", 1)]
    perm, signs = mirror_map(names, joints, ".*_hip_joint", (3, 2))
    x = np.random.default_rng(0).normal(size=19)
    once = x[perm] * signs
    np.testing.assert_allclose(once[perm] * signs, x)
    assert list(signs[:6]) == [-1, 1, -1, 1, -1, -1]
    assert perm[6] == 8 and signs[6] == -1  # FL_hip <- FR_hip, negated
    assert perm[12] == 12 + 4  # scan row 0 <- row 2


def test_mirror_swaps_anybotics_legs_and_negates_abduction():
    joints = ("LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA", "LF_HFE", "RF_HFE")
    assert [mirror_joint(j) for j in joints] == ["RF_HAA", "RH_HAA", "LF_HAA", "LH_HAA", "RF_HFE", "LF_HFE"]
    perm, signs = mirror_map([("joint_pos_rel", 6)], joints, ".*(_hip_joint|_HAA)", (1, 1))
    assert list(perm) == [2, 3, 0, 1, 5, 4] and list(signs) == [-1, -1, -1, -1, 1, 1]


def _actor_params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.alg.actor.parameters()]


def test_resume_gives_the_same_next_iteration(tmp_path):
    straight = Trainer(TASK)
    straight.iteration()
    straight.iteration()
    first = Trainer(TASK)
    first.iteration()
    first.save(tmp_path)
    resumed = Trainer(TASK)
    resumed.load(tmp_path)
    resumed.iteration()
    for a, b in zip(_actor_params(straight), _actor_params(resumed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.progress.iteration == straight.progress.iteration == 2
    assert resumed.progress.history[-1]["reward_per_step"] == straight.progress.history[-1]["reward_per_step"]


def test_smoke_run_writes_a_bundle_the_runtime_loads(tmp_path):
    """`make train-smoke`'s command: train, checkpoint, plot, and a bundle the policy node can load."""
    from krabgraph.nodes.policy.backends import RslRlBackend, load_backend

    ckpt, bundle = tmp_path / "ckpt", tmp_path / "bundle"
    cmd = [sys.executable, "-m", "krabgraph.train", "run", "--smoke", "--device", "cpu"]
    cmd += ["--checkpoint", str(ckpt), "--bundle-dir", str(bundle)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "it     1" in done.stdout and "steps/s" in done.stdout
    for name in ("model.pt", "env_state.npz", "progress.json", "learning_curves.png"):
        assert (ckpt / name).stat().st_size > 0
    contract = load_contract(bundle / "contract.yaml")
    assert contract.name == "go2_rough" and contract.obs_dim == 232 and contract.provenance["env_steps"] > 0
    onnx = load_backend(contract)
    rsl = RslRlBackend(bundle / "checkpoint.pt", activation="elu")
    obs = np.random.default_rng(1).normal(size=contract.obs_dim).astype(np.float32)
    np.testing.assert_allclose(onnx(obs), rsl(obs), atol=1e-4)
    assert not (bundle / "policy.onnx.data").exists()


def _yaw(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
