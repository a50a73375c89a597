"""MuJoCo scene and physics: name-based joint mapping, PD torque law and limits, delay, reset, state."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import yaml

from krabgraph.msgs import RobotState, to_numpy
from krabgraph.nodes.mujoco.physics import SPAWN_CLEARANCE, CommandError, MujocoRobotSim, fill_robot_state
from krabgraph.nodes.mujoco.terrain import Box, Terrain
from krabgraph.nodes.robots import ROBOTS_DIR, load_robot
from krabgraph.nodes.rotations import projected_gravity


@pytest.fixture(scope="module")
def go2():
    return load_robot("go2")


@pytest.fixture(scope="module")
def go2_reversed(tmp_path_factory):
    """go2.yaml with its joints listed in reverse order: the MJCF order no longer matches the file."""
    raw = yaml.safe_load((ROBOTS_DIR / "go2.yaml").read_text())
    raw["joints"] = dict(reversed(list(raw["joints"].items())))
    path = tmp_path_factory.mktemp("robot") / "go2_reversed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_robot(path)


@pytest.mark.parametrize("robot", ["go2", "go2_reversed"])
def test_scene_maps_every_joint_by_name(robot, request):
    desc = request.getfixturevalue(robot)
    sim = MujocoRobotSim(desc)
    m, s = sim.model, sim.scene
    for i, name in enumerate(desc.joint_names):
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert s.qpos_adr[i] == m.jnt_qposadr[jid] and s.dof_adr[i] == m.jnt_dofadr[jid]
        assert m.actuator_trnid[s.actuator_id[i], 0] == jid
        np.testing.assert_array_equal(
            m.actuator_ctrlrange[s.actuator_id[i]], [-desc.effort_limit[i], desc.effort_limit[i]]
        )
        np.testing.assert_array_equal(m.jnt_range[jid], [desc.pos_lower[i], desc.pos_upper[i]])
    assert m.opt.timestep == desc.sim_dt
    assert np.all(m.geom_condim[s.foot_geom] == 3)
    if robot == "go2_reversed":
        assert desc.joint_names[0] == "RR_calf_joint" and s.qpos_adr[0] == 18


@pytest.mark.parametrize("robot", ["go2", "go2_reversed"])
def test_shuffled_command_lands_on_the_named_joints(robot, request):
    desc = request.getfixturevalue(robot)
    sim = MujocoRobotSim(desc)
    rng = np.random.default_rng(0)
    names = list(rng.permutation(desc.joint_names))
    offsets = {n: 0.01 * (k + 1) for k, n in enumerate(names)}  # distinct per joint, small: no clipping
    q_before = {n: sim.data.qpos[sim.model.joint(n).qposadr[0]] for n in names}
    qd_before = {n: sim.data.qvel[sim.model.joint(n).dofadr[0]] for n in names}
    sim.set_command(names, [q_before[n] + offsets[n] for n in names], kp=[30.0] * 12, kd=[0.0] * 12)
    sim.step(1)
    for n in names:
        applied = sim.data.actuator_force[sim.model.actuator_trnid[:, 0].tolist().index(sim.model.joint(n).id)]
        assert applied == pytest.approx(30.0 * offsets[n], abs=1e-9), n
        assert qd_before[n] == 0.0


def test_pd_torque_is_clipped_to_effort_limits(go2):
    sim = MujocoRobotSim(go2, torque_speed_limit=False)
    q = sim.read_state().q
    sim.set_command(go2.joint_names, q + np.where(np.arange(12) % 2 == 0, 3.0, -3.0), kp=[100.0] * 12)
    sim.step(1)
    expected = np.where(np.arange(12) % 2 == 0, 1.0, -1.0) * go2.effort_limit
    np.testing.assert_allclose(sim.read_state().tau, expected)
    np.testing.assert_allclose(sim.data.ctrl[sim.scene.actuator_id], expected)


def test_torque_speed_line_derates_only_torque_along_the_motion(go2):
    sim = MujocoRobotSim(go2)
    e, v = go2.effort_limit, go2.velocity_limit
    q = go2.default_pos.copy()
    sim.set_command(go2.joint_names, q, kp=[0.0] * 12, kd=[0.0] * 12, effort=2 * e)  # push +, saturated
    np.testing.assert_allclose(sim.joint_torque(q, np.zeros(12)), e)
    np.testing.assert_allclose(sim.joint_torque(q, 0.5 * v), 0.5 * e)
    np.testing.assert_allclose(sim.joint_torque(q, v), 0.0)
    np.testing.assert_allclose(sim.joint_torque(q, -v), e)  # braking a joint moving the other way
    sim.set_command(go2.joint_names, q, kp=[0.0] * 12, kd=[0.0] * 12, effort=-2 * e)
    np.testing.assert_allclose(sim.joint_torque(q, v), -e)  # braking is never derated


def test_actuator_delay_in_physics_steps(go2):
    sim = MujocoRobotSim(go2, actuator_delay_steps=3)
    q = sim.read_state().q
    sim.set_command(go2.joint_names, q, kp=[0.0] * 12, kd=[0.0] * 12, effort=[5.0] * 12)
    taus = []
    for _ in range(4):
        sim.step(1)
        taus.append(sim.read_state().tau.copy())
    assert not np.allclose(taus[2], 5.0)
    np.testing.assert_allclose(taus[3], 5.0)


GO2_NAMES = list(load_robot("go2").joint_names)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(names=["FL_knee"], position=[0.0]), "unknown joint"),
        (dict(names=["FL_hip_joint"], position=[0.0]), "missing joint"),  # a subset: every joint, always
        (dict(names=[*GO2_NAMES[:-1], "FL_hip_joint"], position=[0.0] * 12), "repeated"),
        (dict(names=GO2_NAMES, position=[0.0] * 11), r"position: expected 12 values \(one per joint"),
        (dict(names=GO2_NAMES, position=[np.nan] * 12), "position of FL_hip_joint is nan"),
        (dict(names=GO2_NAMES, position=[0.0] * 12, kp=[-1.0] * 12), "gains must be >= 0"),
    ],
)
def test_bad_commands_are_rejected_and_change_nothing(go2, kwargs, message):
    sim = MujocoRobotSim(go2)
    q = sim.read_state().q
    before = sim.joint_torque(q, np.zeros(12))
    with pytest.raises(CommandError, match=message):
        sim.set_command(**kwargs)
    np.testing.assert_array_equal(sim.joint_torque(q, np.zeros(12)), before)


def _lowest_foot_bottom(sim):
    feet = sim.data.geom_xpos[sim.scene.foot_geom]
    return (feet[:, 2] - sim.scene.foot_radius).min()


def test_reset_puts_feet_on_the_ground_at_pose(go2):
    platform = Terrain("custom", 0, (Box((2.0, 1.0, 0.1), (0.6, 0.6, 0.1)),))
    sim = MujocoRobotSim(go2, platform)
    assert _lowest_foot_bottom(sim) == pytest.approx(SPAWN_CLEARANCE, abs=1e-9)
    sim.reset(pose=(2.0, 1.0, np.pi / 2))
    st = sim.read_state()
    assert _lowest_foot_bottom(sim) == pytest.approx(0.2 + SPAWN_CLEARANCE, abs=1e-9)
    np.testing.assert_allclose(st.base_pos[:2], [2.0, 1.0])
    np.testing.assert_allclose(st.base_quat, [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], atol=1e-12)
    np.testing.assert_allclose(st.q, go2.default_pos)
    assert not st.foot_contact.any()


def test_reset_joint_noise_is_seeded(go2):
    sim = MujocoRobotSim(go2, reset_joint_noise=0.1)
    sim.reset(seed=7)
    a = sim.read_state().q
    sim.reset(seed=7)
    b = sim.read_state().q
    sim.reset(seed=8)
    c = sim.read_state().q
    np.testing.assert_array_equal(a, b)
    assert 0 < np.abs(a - go2.default_pos).max() <= 0.1 and not np.array_equal(a, c)


def test_standing_robot_state_imu_and_contacts(go2):
    sim = MujocoRobotSim(go2)
    sim.set_command(go2.joint_names, go2.default_pos, kp=[80.0] * 12, kd=[2.0] * 12)
    sim.step(400)
    st = sim.read_state()
    weight = mujoco.mj_getTotalmass(sim.model) * 9.81
    assert st.foot_contact.all()
    assert st.foot_force[:, 2].sum() == pytest.approx(weight, rel=0.01)
    assert st.imu_accel[2] == pytest.approx(9.81, abs=0.05)
    np.testing.assert_allclose(st.imu_gyro, 0.0, atol=1e-3)
    np.testing.assert_allclose(st.base_lin_vel, 0.0, atol=1e-3)
    np.testing.assert_allclose(projected_gravity(st.base_quat), [0, 0, -1], atol=0.02)
    np.testing.assert_allclose(st.imu_quat, st.base_quat, atol=1e-9)
    assert 0.25 < st.base_pos[2] < 0.40
    assert st.time == pytest.approx(1.0)


def test_fill_robot_state_message(go2):
    sim = MujocoRobotSim(go2)
    sim.step(40)
    st = sim.read_state()
    msg = fill_robot_state(RobotState(), st, stamp_ns=123_000)
    assert msg.header.stamp_ns == msg.joints.header.stamp_ns == 123_000 and msg.has_base
    assert list(msg.joints.name) == list(go2.joint_names)
    np.testing.assert_array_equal(to_numpy(msg.joints.position), st.q)
    assert to_numpy(msg.joints.velocity).dtype == np.float64
    assert to_numpy(msg.contacts.force).shape == (4, 3)
    assert list(msg.contacts.in_contact) == st.foot_contact.tolist()
    assert msg.imu.linear_acceleration.z == st.imu_accel[2]
    assert (msg.base.orientation.w, msg.base.position.z) == (st.base_quat[0], st.base_pos[2])
    decoded = RobotState.FromString(msg.SerializeToString())
    np.testing.assert_array_equal(to_numpy(decoded.joints.effort), st.tau)
