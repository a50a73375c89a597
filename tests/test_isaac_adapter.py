"""IsaacAdapter against a STAND-IN Isaac Lab environment (no Isaac Sim here): names, frames, scan, stepping.

Every test drives ``krabgraph.nodes.isaac.standin.StandInIsaacEnv``, an object shaped like an Isaac
Lab ManagerBasedRLEnv with torch CPU tensors; none of them runs Isaac Sim or Isaac Lab.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from krabgraph.nodes.isaac.adapter import (
    IsaacAdapter,
    IsaacTaskError,
    IsaacUnavailableError,
    grid_shape,
    missing_isaac_modules,
    require_isaac,
)
from krabgraph.nodes.isaac.standin import ANYMAL_D_JOINTS, StandInIsaacEnv
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.rotations import rotate_inverse

# Isaac Lab's published ANYmal-D joint order (isaaclab_tasks .../velocity/mdp/symmetry/anymal.py).
LAB_ORDER = [
    "LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA",
    "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
    "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE",
]  # fmt: skip
FEET = ("LF_FOOT", "LH_FOOT", "RF_FOOT", "RH_FOOT")


def stand_in_adapter(**env_kwargs) -> tuple[StandInIsaacEnv, IsaacAdapter]:
    env = StandInIsaacEnv(**env_kwargs)
    return env, IsaacAdapter(env, feet=FEET)


def test_stand_in_and_robot_description_use_isaac_labs_published_anymal_d_order():
    assert list(ANYMAL_D_JOINTS) == LAB_ORDER
    assert list(load_robot("anymal_d").joint_names) == LAB_ORDER
    _, adapter = stand_in_adapter()
    assert list(adapter.joint_names) == LAB_ORDER
    assert adapter.indices(["RH_KFE", "LF_HAA", "LH_HFE"]) == [11, 0, 5]
    with pytest.raises(IsaacTaskError, match=r"no joint.*FR_hip_joint"):
        adapter.indices(["FR_hip_joint"])


def test_stand_in_targets_given_by_name_land_on_those_joints():
    env, adapter = stand_in_adapter()
    names = ["RH_KFE", "LF_HAA", "RF_HFE"]  # not Isaac Lab's order
    adapter.set_joint_targets(names, np.array([1.1, -0.3, 0.7]), effort=np.array([2.0, 0.0, -1.0]))
    target = env.robot.data.joint_pos_target[0].numpy()
    assert target[LAB_ORDER.index("RH_KFE")] == pytest.approx(1.1)
    assert target[LAB_ORDER.index("LF_HAA")] == pytest.approx(-0.3)
    assert target[LAB_ORDER.index("RF_HFE")] == pytest.approx(0.7)
    untouched = [i for i, n in enumerate(LAB_ORDER) if n not in names]
    np.testing.assert_array_equal(target[untouched], 0.0)
    effort = env.robot.data.joint_effort_target[0].numpy()
    assert effort[LAB_ORDER.index("RH_KFE")] == pytest.approx(2.0)
    assert effort[LAB_ORDER.index("RF_HFE")] == pytest.approx(-1.0)


def test_stand_in_step_runs_decimation_physics_steps_and_reads_joints_by_name():
    env, adapter = stand_in_adapter()
    assert (adapter.physics_dt, adapter.decimation) == (0.005, 4)
    assert adapter.step_dt == pytest.approx(0.02)
    adapter.set_joint_targets(LAB_ORDER, np.arange(12) * 0.1)
    adapter.step()
    assert env.sim.steps == 4 and adapter.physics_steps == 4
    assert adapter.sim_time == pytest.approx(0.02)
    snap = adapter.read()
    # First-order lag of the stand-in: each physics step closes dt / tau = 1/4 of the error.
    start = env.robot.data.default_joint_pos[0].numpy()
    expected = np.arange(12) * 0.1 + (start - np.arange(12) * 0.1) * 0.75**4
    np.testing.assert_allclose(snap.q, expected, atol=1e-6)
    assert snap.joint_names == tuple(LAB_ORDER)
    assert snap.q.dtype == np.float64 and snap.tau.shape == (12,)


def test_stand_in_base_and_imu_in_isaac_lab_frames():
    env, adapter = stand_in_adapter()
    roll = 0.3
    quat = (math.cos(roll / 2), math.sin(roll / 2), 0.0, 0.0)  # wxyz, rolled about x
    env.set_base(pos=(1.0, 2.0, 0.55), quat_wxyz=quat, lin_vel_b=(0.4, -0.1, 0.0), ang_vel_b=(0.0, 0.2, -0.5))
    snap = adapter.read()
    np.testing.assert_allclose(snap.base_quat, quat, atol=1e-7)
    np.testing.assert_allclose(snap.base_pos, (1.0, 2.0, 0.55), atol=1e-6)
    np.testing.assert_allclose(snap.base_lin_vel, (0.4, -0.1, 0.0), atol=1e-7)
    np.testing.assert_allclose(snap.base_ang_vel, (0.0, 0.2, -0.5), atol=1e-7)
    # At rest the accelerometer reads the gravity reaction, +9.81 along world z, in the body frame.
    np.testing.assert_allclose(snap.imu_accel, (0.0, 9.81 * math.sin(roll), 9.81 * math.cos(roll)), atol=1e-6)


def test_rotate_inverse_matches_hand_rotation():
    yaw = 0.7
    q = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    np.testing.assert_allclose(rotate_inverse(q, [1.0, 0.0, 0.0]), [math.cos(yaw), -math.sin(yaw), 0.0])


def test_stand_in_feet_by_name_in_contact_above_the_sensor_threshold():
    env, adapter = stand_in_adapter()
    sensor = env.scene.sensors["contact_forces"]
    sensor.set_force("RF_FOOT", (0.0, 0.0, 120.0))
    sensor.set_force("LH_FOOT", (0.5, 0.0, 0.5))  # |F| = 0.71 N < 1 N threshold
    snap = adapter.read()
    assert snap.foot_names == FEET
    assert snap.foot_contact.tolist() == [False, False, True, False]
    np.testing.assert_allclose(snap.foot_force[2], (0.0, 0.0, 120.0))
    with pytest.raises(IsaacTaskError, match="no body FR_foot"):
        IsaacAdapter(env, feet=("FR_foot",))


@pytest.mark.parametrize("ordering", ["xy", "yx"])
def test_stand_in_height_scan_is_base_minus_hit_minus_offset_x_fastest(ordering):
    # A 0.1 m step up for x > 0.25 m ahead of the base, a hole (no hit) beyond y > 0.35 m.
    def terrain(x, y):
        return np.where(y > 0.35, np.nan, np.where(x > 0.25, 0.1, 0.0))

    env, adapter = stand_in_adapter(terrain=terrain, scan_ordering=ordering)
    env.set_base(pos=(0.0, 0.0, 0.6))
    grid = adapter.scan_grid
    assert grid.shape == (11, 17) and grid_shape((1.6, 1.0), 0.1) == (11, 17)
    assert (grid.resolution, grid.size, grid.offset, grid.ordering) == (0.1, (1.6, 1.0), 0.5, ordering)
    assert grid.max_distance == pytest.approx(1e6 - 20.0)  # ray starts 20 m above the base
    scan = adapter.read().scan
    assert scan.shape == (11, 17) and scan.dtype == np.float32
    # Row iy is y = -0.5 + 0.1 iy, column ix is x = -0.8 + 0.1 ix.
    assert scan[0, 0] == pytest.approx(0.6 - 0.0 - 0.5, abs=1e-6)  # x -0.8, y -0.5: flat
    assert scan[0, 16] == pytest.approx(0.6 - 0.1 - 0.5, abs=1e-6)  # x 0.8: on the step
    assert scan[5, 10] == pytest.approx(0.1, abs=1e-6) and scan[5, 11] == pytest.approx(0.0, abs=1e-6)
    assert scan[10, 0] == pytest.approx(grid.max_distance - 0.5, rel=1e-6)  # y 0.5: no hit
    assert scan.reshape(-1)[16] == scan[0, 16]  # flattened x fastest


def test_stand_in_yaw_turns_the_scan_grid_with_the_base():
    env, adapter = stand_in_adapter(terrain=lambda x, y: np.where(y > 0.25, 0.2, 0.0))
    env.set_base(pos=(0.0, 0.0, 0.6), quat_wxyz=(math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)))
    scan = adapter.read().scan
    # Yawed by 90°: the base's forward axis x points along world +y, so the step is ahead (x > 0.25).
    assert scan[5, 16] == pytest.approx(0.6 - 0.2 - 0.5, abs=1e-5)
    assert scan[5, 0] == pytest.approx(0.1, abs=1e-5)


def test_stand_in_lab_observation_has_labels_per_term():
    _, adapter = stand_in_adapter()
    values, labels = adapter.lab_observation()
    assert values.shape == (235,) and values.dtype == np.float32 and len(labels) == 235
    assert labels[0] == "base_lin_vel[0]" and labels[48] == "height_scan[0]" and labels[-1] == "height_scan[186]"
    _, flat = stand_in_adapter(height_scanner=False)
    assert flat.scan_grid is None and flat.read().scan is None
    assert flat.lab_observation()[0].shape == (48,)


def test_stand_in_mirrors_put_the_graphs_command_and_raw_action_into_lab_buffers():
    env, adapter = stand_in_adapter()
    assert adapter.mirror_velocity_command(0.8, -0.2, 0.5)
    np.testing.assert_allclose(env.command_manager.get_term("base_velocity").vel_command_b[0], (0.8, -0.2, 0.5))
    default = adapter.default_joint_pos()
    raw = np.linspace(-1.0, 1.0, 12)
    assert adapter.mirror_action(default + 0.5 * raw)  # the task's own scale 0.5 and default offset
    np.testing.assert_allclose(env.action_manager.action[0].numpy(), raw, atol=1e-6)
    # Mirroring never touches the joints' targets.
    np.testing.assert_array_equal(env.robot.data.joint_pos_target[0].numpy(), np.zeros(12))
    env.action_manager._term.__class__ = type("RelativeJointPositionAction", (), {})
    assert not adapter.mirror_action(default)


def test_close_closes_the_environment():
    env, adapter = stand_in_adapter()
    adapter.close()
    assert env.closed


def test_without_isaac_require_and_launch_raise_one_error_saying_what_and_how():
    if not missing_isaac_modules():
        pytest.skip("Isaac Sim is installed here")
    with pytest.raises(IsaacUnavailableError) as info:
        require_isaac()
    text = str(info.value)
    for needed in ("Isaac Sim 5.1", "Isaac Lab 2.3.2", "RTX", "images/isaacsim"):
        assert needed in text
    assert "\n" not in text
    with pytest.raises(IsaacUnavailableError, match="Isaac Sim is not available here"):
        IsaacAdapter.launch("Isaac-Velocity-Rough-Anymal-D-Play-v0", device="cpu")


def test_adapter_tensors_are_written_on_the_envs_device_as_float32():
    env, adapter = stand_in_adapter()
    adapter.set_joint_targets(["LF_HAA"], np.array([0.25]))
    assert env.robot.data.joint_pos_target.dtype == torch.float32
    assert adapter._tensor([1.0, 2.0]).shape == (1, 2)
