"""ANYmal-D in the embedded simulator: the MJCF written from ANYbotics' published figures, the
trainer-written ``anymal_d_rough`` bundle in Isaac Lab's layout, and ``graphs/anymal_stairs.yaml``,
which runs it in MuJoCo through the same policy and safety nodes as ``graphs/parkour_isaac.yaml``."""

from __future__ import annotations

import numpy as np
import pytest

from krabgraph.launch import load_graph
from krabgraph.msgs import SafetyStatus
from krabgraph.nodes.mujoco.physics import MujocoRobotSim
from krabgraph.nodes.mujoco.scene import build_scene
from krabgraph.nodes.policy.contract import load_contract
from krabgraph.nodes.robots import load_robot
from krabgraph.train import acceptance as acc

mujoco = pytest.importorskip("mujoco")

LAB_ORDER = [
    "LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA",
    "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
    "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE",
]  # fmt: skip


@pytest.fixture(scope="module")
def scene():
    return build_scene(load_robot("anymal_d"))


def test_description_has_the_published_mass_axes_and_limits(scene):
    r, m = scene.robot, scene.model
    assert list(r.joint_names) == LAB_ORDER
    assert sum(m.body_mass[b] for b in scene.robot_bodies) == pytest.approx(57.03, abs=0.01)
    data = mujoco.MjData(m)
    mujoco.mj_kinematics(m, data)
    for name in LAB_ORDER:
        j = m.joint(name).id
        axis = data.xaxis[j]
        np.testing.assert_allclose(axis, (1, 0, 0) if name.endswith("HAA") else (0, 1, 0), atol=1e-9)
        i = r.index(name)
        np.testing.assert_allclose(m.jnt_range[j], (r.pos_lower[i], r.pos_upper[i]))
        assert tuple(m.actuator_ctrlrange[scene.actuator_id[i]]) == (-80.0, 80.0)
    np.testing.assert_allclose(m.jnt_range[m.joint("LF_HAA").id], (-0.7853985, 0.6108655))


def test_default_pose_stands_on_four_feet_level_and_symmetric(scene):
    m, r = scene.model, scene.robot
    data = mujoco.MjData(m)
    data.qpos[scene.qpos_adr] = r.default_pos
    data.qpos[2] = 1.0
    mujoco.mj_kinematics(m, data)
    feet = data.geom_xpos[scene.foot_geom]
    assert np.ptp(feet[:, 2]) < 1e-3  # all four feet on one level
    assert 1.0 - (feet[:, 2].min() - scene.foot_radius.min()) == pytest.approx(0.5885, abs=0.005)
    lf, lh, rf, rh = feet  # robot.feet order: LF, LH, RF, RH
    np.testing.assert_allclose(lf[[0, 2]], rf[[0, 2]], atol=1e-6)  # left-right mirror images
    assert lf[1] == pytest.approx(-rf[1]) and lh[1] == pytest.approx(-rh[1]) and lf[1] > 0.2


def test_dc_motor_stall_torque_is_the_saturation_effort():
    """Isaac Lab's DC motor: the torque-speed line starts at 120 N·m (saturation), capped at 80 N·m."""
    sim = MujocoRobotSim("anymal_d")
    r = sim.robot
    np.testing.assert_array_equal(r.saturation, np.full(12, 120.0))
    names = list(r.joint_names)
    sim.set_command(names, r.default_pos + 10.0, kp=np.full(12, 40.0), kd=np.zeros(12))
    q = np.asarray(r.default_pos)
    np.testing.assert_allclose(sim.joint_torque(q, np.zeros(12)), 80.0)  # effort limit at rest
    np.testing.assert_allclose(sim.joint_torque(q, np.full(12, 5.0)), 120.0 * (1 - 5.0 / 7.5))  # 40, not 26.7


def test_isaac_and_mujoco_graphs_run_the_same_contract_with_the_same_policy_and_safety_nodes():
    isaac, mj = load_graph("parkour_isaac"), load_graph("anymal_stairs")
    assert isaac.robot == mj.robot == "anymal_d"
    for name in ("policy", "safety"):
        assert isaac.nodes[name].class_ref == mj.nodes[name].class_ref
    bundle = isaac.nodes["policy"].params["bundle"]
    assert bundle == mj.nodes["policy"].params["bundle"] == "anymal_d_rough"
    contract = load_contract(bundle)
    assert contract.robot == "anymal_d" and contract.obs_dim == 235 and list(contract.joints) == LAB_ORDER
    assert contract.provenance["trainer"].startswith("krabgraph.train")
    assert isaac.nodes["hal"].class_ref != mj.nodes["hal"].class_ref  # only the HAL differs


def test_graph_walks_up_and_down_a_flight_of_15_cm_stairs():
    """Through the executor (lockstep, the graph's own stairs and schedule): the policy walks up six
    15 cm steps, across the landing and down, with a ground-truth probe on hal/state and safety/status."""
    graph = load_graph("anymal_stairs")
    stairs = graph.nodes["hal"].params["terrain_params"]
    schedule = graph.nodes["command"].params["schedule"]
    assert stairs["step_height"] == 0.15 and stairs["step_count"] == 6
    tr = acc.simulate(
        "anymal_d_rough", schedule, sum(row[0] for row in schedule), terrain="stairs", terrain_params=stairs
    )
    landing = stairs["start"] + 6 * stairs["step_width"]
    foot = landing + stairs["landing"] + 6 * stairs["step_width"]  # the foot of the way down
    on_landing = (tr.pos[:, 0] > landing) & (tr.pos[:, 0] < landing + stairs["landing"])
    assert on_landing.any(), f"x reached {tr.pos[:, 0].max():.2f} m"
    assert tr.height[on_landing].min() > 0.45  # standing, 0.9 m up
    assert tr.pos[on_landing, 2].min() > 0.9 + 0.45
    assert tr.pos[-1, 0] > foot + 0.5, f"stopped at x {tr.pos[-1, 0]:.2f} m, the foot of the stairs is at {foot:.2f} m"
    assert 0.45 < tr.pos[-1, 2] < 0.8  # standing on the ground again
    assert SafetyStatus.Mode.ACTIVE in {mode for _, mode in tr.modes}
    assert tr.fall_time() == (None, "")  # no attitude or height fall, safety never left ACTIVE


@pytest.mark.parametrize("phase", list(acc.FLAT_PHASES))
def test_flat_ground_commands_are_tracked_within_0_1(phase):
    """The flat rows of docs/training.md's ANYmal-D table (mean over the last 5 s of a 9 s phase)."""
    row = acc.flat_row("anymal_d_rough", phase)
    assert row.passed, acc.render_markdown([row], "anymal_d_rough")
