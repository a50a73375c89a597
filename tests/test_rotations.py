"""krabgraph.nodes.rotations against MuJoCo's own quaternion functions and known rotations (w, x, y, z)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from krabgraph.nodes.rotations import (
    matrix_from_rpy,
    projected_gravity,
    quat_from_rpy,
    quat_from_yaw,
    roll_pitch,
    rotate_inverse,
    rotation_matrix,
    rpy,
    yaw_of,
    yaw_of_matrix,
)

RPYS = [(0.3, -0.2, 1.0), (-1.2, 0.7, -2.9), (2.5, -1.4, 0.1), (0.0, 0.0, math.pi / 2), (math.pi / 6, 0.0, 0.0)]


def random_quats(n: int = 50, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def mj_mat(quat) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(quat, dtype=np.float64))
    return m.reshape(3, 3)


def mj_axis_angle(axis, angle: float) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, dtype=np.float64), angle)
    return q


def mj_mul(a, b) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mulQuat(q, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return q


def mj_rpy_quat(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """q = q_z(yaw) q_y(pitch) q_x(roll), composed by MuJoCo."""
    qz, qy, qx = mj_axis_angle((0, 0, 1), yaw), mj_axis_angle((0, 1, 0), pitch), mj_axis_angle((1, 0, 0), roll)
    return mj_mul(qz, mj_mul(qy, qx))


@pytest.mark.parametrize("quat", random_quats())
def test_rotation_matrix_is_mujocos(quat):
    np.testing.assert_allclose(rotation_matrix(quat), mj_mat(quat), atol=1e-12)
    np.testing.assert_allclose(rotation_matrix(tuple(quat.astype(np.float32))), mj_mat(quat), atol=1e-6)
    assert rotation_matrix(quat.astype(np.float32)).dtype == np.float64


@pytest.mark.parametrize("quat", random_quats(seed=1))
def test_projected_gravity_is_world_down_in_the_body_frame(quat):
    down = np.zeros(3)
    mujoco.mju_rotVecQuat(down, np.array([0.0, 0.0, -1.0]), np.array([quat[0], *-quat[1:]]))  # R^T (0, 0, -1)
    np.testing.assert_allclose(projected_gravity(quat), down, atol=1e-12)
    np.testing.assert_allclose(rotate_inverse(quat, (0.0, 0.0, -1.0)), down, atol=1e-12)


@pytest.mark.parametrize("quat", random_quats(seed=2))
def test_rotate_inverse_undoes_mujocos_rotation(quat):
    v = np.array([0.3, -1.2, 2.0])
    world = np.zeros(3)
    mujoco.mju_rotVecQuat(world, v, quat)
    np.testing.assert_allclose(rotate_inverse(quat, world), v, atol=1e-12)


def test_projected_gravity_of_a_rolled_body_in_a_mujoco_simulation():
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body name="b"><freejoint/><geom size="0.1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    roll = math.radians(30)  # left side up
    data.qpos[3:7] = mj_axis_angle((1, 0, 0), roll)
    mujoco.mj_kinematics(model, data)
    g = model.opt.gravity
    in_body = data.xmat[1].reshape(3, 3).T @ (g / np.linalg.norm(g))
    np.testing.assert_allclose(projected_gravity(data.qpos[3:7]), in_body, atol=1e-12)
    np.testing.assert_allclose(in_body, (0.0, -math.sin(roll), -math.cos(roll)), atol=1e-12)


@pytest.mark.parametrize(
    ("quat", "expected"),
    [
        ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
        (mj_axis_angle((1, 0, 0), math.pi / 2), (0.0, -1.0, 0.0)),  # rolled 90°, left side up: gravity along -y
        (mj_axis_angle((0, 1, 0), math.pi / 2), (1.0, 0.0, 0.0)),  # pitched 90°, nose down: gravity along +x
        (mj_axis_angle((0, 0, 1), 2.0), (0.0, 0.0, -1.0)),  # yaw leaves it alone
        (mj_axis_angle((1, 0, 0), math.pi), (0.0, 0.0, 1.0)),  # upside down
    ],
)
def test_projected_gravity_of_known_rotations(quat, expected):
    np.testing.assert_allclose(projected_gravity(np.asarray(quat)), expected, atol=1e-12)


@pytest.mark.parametrize("angles", RPYS)
def test_quat_from_rpy_is_mujocos_composition(angles):
    ours = quat_from_rpy(*angles)
    np.testing.assert_allclose(ours, mj_rpy_quat(*angles), atol=1e-12)
    euler = np.zeros(4)
    mujoco.mju_euler2Quat(euler, np.array(angles, dtype=np.float64), "XYZ")  # extrinsic x, y, z = ZYX
    np.testing.assert_allclose(ours, euler, atol=1e-12)
    np.testing.assert_allclose(matrix_from_rpy(*angles), mj_mat(ours), atol=1e-12)


@pytest.mark.parametrize("angles", RPYS)
def test_rpy_round_trip(angles):
    q = mj_rpy_quat(*angles)
    np.testing.assert_allclose(rpy(q), angles, atol=1e-12)
    np.testing.assert_allclose(roll_pitch(*q), angles[:2], atol=1e-12)
    assert yaw_of(*q) == pytest.approx(angles[2], abs=1e-12)
    assert yaw_of_matrix(mj_mat(q)) == pytest.approx(angles[2], abs=1e-12)
    np.testing.assert_allclose(quat_from_rpy(*rpy(q)), q, atol=1e-12)


@pytest.mark.parametrize("quat", random_quats(seed=3))
def test_euler_angles_rebuild_mujocos_matrix(quat):
    np.testing.assert_allclose(matrix_from_rpy(*rpy(quat)), mj_mat(quat), atol=1e-9)
    assert yaw_of_matrix(mj_mat(quat)) == pytest.approx(yaw_of(*quat), abs=1e-9)
    np.testing.assert_allclose(rpy(-quat), rpy(quat), atol=1e-9)  # q and -q are one rotation


def test_known_angles():
    s = math.sqrt(0.5)
    assert roll_pitch(s, s, 0.0, 0.0) == pytest.approx((math.pi / 2, 0.0))  # 90° about x
    assert roll_pitch(math.cos(math.pi / 6), 0.0, 0.5, 0.0) == pytest.approx((0.0, math.pi / 3))  # 60° about y
    assert roll_pitch(s, 0.0, -s * (1 + 1e-12), 0.0)[1] == -math.pi / 2  # past -90° by rounding: asin input clipped
    assert yaw_of(s, 0.0, 0.0, s) == pytest.approx(math.pi / 2)
    assert yaw_of(0.0, 0.0, 0.0, 1.0) == pytest.approx(math.pi)
    assert rpy((1, 0, 0, 0)) == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(matrix_from_rpy(0.0, math.pi / 2, 0.0) @ [1, 0, 0], [0, 0, -1], atol=1e-15)  # nose down


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5, math.pi])
def test_quat_from_yaw(yaw):
    q = quat_from_yaw(yaw)
    np.testing.assert_allclose(q, mj_axis_angle((0, 0, 1), yaw), atol=1e-12)
    np.testing.assert_allclose(q, quat_from_rpy(0.0, 0.0, yaw), atol=1e-12)
    assert math.remainder(yaw_of(*q) - yaw, math.tau) == pytest.approx(0.0, abs=1e-12)


def test_the_jax_versions_agree_with_numpy():
    """The trainer's path (xp=jax.numpy, float32, under jit); skipped where JAX is not installed."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def f(q, yaw):
        r = rotation_matrix(q, xp=jnp)
        return r, projected_gravity(q, xp=jnp), yaw_of_matrix(r, xp=jnp), quat_from_yaw(yaw, xp=jnp)

    for quat, yaw in zip(random_quats(10, seed=4), np.linspace(-3, 3, 10), strict=True):
        r, g, y, qy = (np.asarray(v) for v in f(jnp.asarray(quat, dtype=jnp.float32), jnp.float32(yaw)))
        np.testing.assert_allclose(r, mj_mat(quat), atol=1e-6)
        np.testing.assert_allclose(g, projected_gravity(quat), atol=1e-6)
        assert float(y) == pytest.approx(yaw_of_matrix(mj_mat(quat)), abs=1e-5)
        np.testing.assert_allclose(qy, quat_from_yaw(yaw), atol=1e-6)
    batched = jax.vmap(lambda q: projected_gravity(q, xp=jnp))(jnp.asarray(random_quats(5, seed=5), dtype=jnp.float32))
    np.testing.assert_allclose(batched, [projected_gravity(q) for q in random_quats(5, seed=5)], atol=1e-6)
