"""Scripted pushes on the base (MujocoRobotSim.push, MujocoHal push_* parameters) and terrain_params."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from krabgraph.launch import ParamError
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.nodes.mujoco.hal import MujocoHal
from krabgraph.nodes.mujoco.physics import MujocoRobotSim


def _momentum(sim: MujocoRobotSim) -> np.ndarray:
    """Total linear momentum of the robot (N·s): its mass times the velocity of its center of mass."""
    m, d, base = sim.model, sim.data, sim.scene.base_body
    mujoco.mj_forward(m, d)
    mujoco.mj_subtreeVel(m, d)
    return m.body_subtreemass[base] * d.subtree_linvel[base].copy()


def _contact_force_on_robot(sim: MujocoRobotSim) -> np.ndarray:
    """Sum of all contact forces on the robot's bodies (N, world) in the step just taken."""
    m, d = sim.model, sim.data
    robot = set(sim.scene.robot_bodies.tolist())
    f6, total = np.zeros(6), np.zeros(3)
    for i in range(d.ncon):
        con = d.contact[i]
        if con.efc_address < 0:
            continue
        mujoco.mj_contactForce(m, d, i, f6)
        f_world = con.frame.reshape(3, 3).T @ f6[:3]  # acts on geom2, from geom1
        total += (int(m.geom_bodyid[con.geom[1]] in robot) - int(m.geom_bodyid[con.geom[0]] in robot)) * f_world
    return total


def _pushed(impulse: list[float], duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Push the standing Go2; return (momentum change, the part not explained by contacts and gravity)."""
    sim = MujocoRobotSim("go2")
    sim.step(400)  # standing still
    p0 = _momentum(sim)
    if any(impulse):
        sim.push(impulse, duration_s)
    n = max(1, round(duration_s / sim.dt))
    external = np.zeros(3)
    for _ in range(n):
        sim.step(1)
        external += _contact_force_on_robot(sim) * sim.dt
    dp = _momentum(sim) - p0
    gravity = sim.model.body_subtreemass[sim.scene.base_body] * sim.model.opt.gravity * n * sim.dt
    return dp, dp - external - gravity


@pytest.mark.parametrize("duration_s", [0.0025, 0.01, 0.1])
def test_lateral_push_changes_total_momentum_by_its_impulse(duration_s):
    dp, unexplained = _pushed([0.0, 30.0, 0.0], duration_s)
    # momentum balance: the push is exactly the momentum that contacts and gravity do not explain
    np.testing.assert_allclose(unexplained, [0.0, 30.0, 0.0], atol=0.1)
    if duration_s <= 0.01:  # too short for the feet's friction to take much of it
        assert dp[1] == pytest.approx(30.0, abs=2.0)
    else:
        assert 15.0 < dp[1] < 30.0  # the feet's friction resists a longer push


def test_no_push_no_unexplained_momentum():
    dp, unexplained = _pushed([0.0, 0.0, 0.0], 0.1)
    np.testing.assert_allclose(unexplained, 0.0, atol=0.1)
    assert abs(dp[1]) < 0.1


def test_push_timing_is_at_physics_rate_and_reset_cancels():
    sim = MujocoRobotSim("go2")
    base = sim.scene.base_body
    sim.push([10.0, 0.0, 0.0], 0.02, at_s=0.1)  # steps 40..47 at 2.5 ms
    applied = []
    for _ in range(60):
        sim.step(1)
        applied.append(sim.data.xfrc_applied[base, 0])
    np.testing.assert_array_equal(np.flatnonzero(applied), np.arange(40, 48))
    assert applied[40] == pytest.approx(10.0 / 0.02)
    sim.push([10.0, 0.0, 0.0], 0.02, at_s=0.2)
    sim.reset()
    sim.step(100)
    assert not sim.data.xfrc_applied.any()


@pytest.mark.parametrize(
    ("impulse", "duration", "at_s", "message"),
    [
        ([0.0, float("nan"), 0.0], 0.1, None, "impulse must be 3 finite"),
        ([0.0, 30.0], 0.1, None, "impulse must be 3 finite"),
        ([0.0, 30.0, 0.0], 0.0, None, "duration must be finite and > 0"),
        ([0.0, 30.0, 0.0], float("inf"), None, "duration must be finite and > 0"),
        ([0.0, 30.0, 0.0], 0.1, float("nan"), "time must be finite"),
    ],
)
def test_invalid_push_is_refused(impulse, duration, at_s, message):
    sim = MujocoRobotSim("go2")
    with pytest.raises(ValueError, match=message):
        sim.push(impulse, duration, at_s=at_s)


def test_hal_pushes_at_push_at_s():
    h = NodeHarness(MujocoHal, push_at_s=0.5, push_impulse=[0.0, 15.0, 0.0], push_duration_s=0.02).start()
    h.advance(0.6)
    vy = {round(m.header.stamp_ns * 1e-9, 2): m.base.linear_velocity_world.y for m in h.outputs["state"]}
    h.stop()
    assert abs(vy[0.5]) < 0.02  # nothing before the push (0.50-0.52 s)
    assert 0.8 < vy[0.52] < 15.0 / 15.2  # 15 N·s on 15.2 kg, less what the feet's friction takes


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"push_impulse": [0.0, 30.0]}, "push_impulse must be 3 finite values"),
        ({"push_impulse": [0.0, float("inf"), 0.0]}, "push_impulse must be 3 finite values"),
        ({"terrain": "stairs", "terrain_params": {"step_hight": 0.1}}, "terrain_params.*step_hight"),
        ({"terrain": "stairs", "terrain_params": {"step_height": -0.1}}, "terrain_params.*positive"),
    ],
)
def test_invalid_push_or_terrain_params_fail_configure(params, message):
    with pytest.raises(ParamError, match=message):
        NodeHarness(MujocoHal, **params).start()
    with pytest.raises(ParamError, match="push_duration_s"):
        MujocoHal(push_duration_s=0.0)


def test_hal_builds_its_terrain_from_terrain_params():
    h = NodeHarness(MujocoHal, terrain="steps", seed=3, terrain_params={"max_height": 0.1, "size": 12.0}).start()
    terrain = h.node.sim.scene.terrain
    h.stop()
    assert terrain.params["size"] == 12.0 and max(b.top for b in terrain.boxes) > 0.09
