"""Ray-cast sensors against terrains of known geometry: height scan and depth image."""

from __future__ import annotations

import numpy as np
import pytest

from krabgraph.msgs import to_numpy
from krabgraph.nodes.mujoco.physics import MujocoRobotSim
from krabgraph.nodes.mujoco.sensors import DepthCamera, HeightScanner, grid_pattern
from krabgraph.nodes.mujoco.terrain import Box, Terrain

STEP_AHEAD = Terrain("step", 0, (Box((0.5, 0.0, 0.05), (0.25, 2.0, 0.05)),))  # 10 cm, x in [0.25, 0.75]
STEP_LEFT = Terrain("step", 0, (Box((0.0, 0.5, 0.05), (2.0, 0.25, 0.05)),))  # 10 cm, y in [0.25, 0.75]


def test_grid_pattern_is_isaac_lab_order():
    g = grid_pattern((1.6, 1.0), 0.1)
    assert g.shape == (11, 17, 2)
    flat = g.reshape(-1, 2)
    np.testing.assert_allclose(flat[:3], [[-0.8, -0.5], [-0.7, -0.5], [-0.6, -0.5]])  # x varies fastest
    np.testing.assert_allclose(flat[-1], [0.8, 0.5])


def test_height_scan_over_a_step_reads_known_heights():
    sim = MujocoRobotSim("go2", STEP_AHEAD)
    scan = HeightScanner(sim.scene).scan(sim.data)
    base_z = sim.read_state().base_pos[2]
    xs = np.linspace(-0.8, 0.8, 17)
    on_step = (xs > 0.25) & (xs < 0.75)
    expected_row = base_z - np.where(on_step, 0.1, 0.0) - 0.5
    assert scan.shape == (11, 17) and scan.dtype == np.float32
    np.testing.assert_allclose(scan, np.tile(expected_row, (11, 1)), atol=0.01)
    assert on_step.sum() == 5  # the robot's own body, right above the center column, is not seen


def test_look_ahead_grid_is_centred_ahead_of_the_base():
    """``center`` moves the grid: 0.4 m ahead, it spans -0.4 .. 1.2 m and sees the step's far edge."""
    sim = MujocoRobotSim("go2", STEP_AHEAD)
    scanner = HeightScanner(sim.scene, center=(0.4, 0.0))
    scan = scanner.scan(sim.data)
    base_z = sim.read_state().base_pos[2]
    xs = np.linspace(-0.4, 1.2, 17)
    on_step = (xs > 0.25) & (xs < 0.75)
    np.testing.assert_allclose(scan, np.tile(base_z - np.where(on_step, 0.1, 0.0) - 0.5, (11, 1)), atol=0.01)
    assert on_step[:4].sum() == 0 and on_step[-5:].sum() == 0  # flat behind the base and beyond the step
    msg = scanner.message(sim.data, stamp_ns=1)
    assert (msg.center_x, msg.center_y) == (0.4, 0.0) and (msg.size_x, msg.size_y) == (1.6, 1.0)


def test_height_scan_is_yaw_aligned():
    sim = MujocoRobotSim("go2", STEP_LEFT)
    sim.reset(pose=(0.0, 0.0, np.pi / 2))  # facing +y: the step is now ahead of the robot
    scan = HeightScanner(sim.scene).scan(sim.data)
    base_z = sim.read_state().base_pos[2]
    xs = np.linspace(-0.8, 0.8, 17)
    expected_row = base_z - np.where((xs > 0.25) & (xs < 0.75), 0.1, 0.0) - 0.5
    np.testing.assert_allclose(scan, np.tile(expected_row, (11, 1)), atol=0.01)


def test_height_scan_misses_read_max_distance_minus_offset():
    ledge = Terrain("ledge", 0, (Box((0.0, 0.0, -0.25), (0.45, 2.0, 0.25)),), floor_z=-10.0)
    sim = MujocoRobotSim("go2", ledge)
    scanner = HeightScanner(sim.scene, max_distance=3.0, offset=0.5)
    row = scanner.scan(sim.data)[5]
    base_z = sim.read_state().base_pos[2]
    np.testing.assert_allclose(row[:3], 2.5)  # x <= -0.6: nothing within 3 m below the base
    np.testing.assert_allclose(row[5:12], base_z - 0.5, atol=1e-6)  # on the ledge (top z = 0)
    msg = scanner.message(sim.data, stamp_ns=5)
    assert (msg.max_distance, msg.offset, msg.resolution, msg.size_x, msg.size_y) == (3.0, 0.5, 0.1, 1.6, 1.0)
    np.testing.assert_array_equal(to_numpy(msg.heights), scanner.scan(sim.data))


WALL = Terrain("wall", 0, (Box((1.55, 0.0, 1.0), (0.05, 5.0, 1.0)),))  # face at x = 1.5


def test_depth_of_a_wall_at_known_distance():
    sim = MujocoRobotSim("go2", WALL)
    cam = DepthCamera(sim.scene, mount_pos=(0.3, 0.0, 0.05), mount_rpy_deg=(0, 0, 0), max_range=3.0)
    depth = cam.render(sim.data)
    assert depth.shape == (58, 87) and depth.dtype == np.float32
    # upper half looks at the wall: depth along the optical axis is the same for every pixel
    np.testing.assert_allclose(depth[:29], 1.5 - 0.3, atol=1e-5)
    # bottom row looks down at the floor: depth = camera height / tan(angle below the axis)
    cam_z = sim.read_state().base_pos[2] + 0.05
    f = 29 / np.tan(np.radians(58.0) / 2)
    np.testing.assert_allclose(depth[-1], cam_z / (28.5 / f), rtol=1e-4)


@pytest.mark.parametrize(("miss_value", "expected"), [("zero", 0.0), ("max", 1.0)])
def test_depth_beyond_max_range_reads_miss_value(miss_value, expected):
    sim = MujocoRobotSim("go2", WALL)
    cam = DepthCamera(sim.scene, mount_rpy_deg=(0, 0, 0), max_range=1.0, miss_value=miss_value)
    depth = cam.render(sim.data)
    np.testing.assert_array_equal(depth[:29], expected)
    msg = cam.message(sim.data, stamp_ns=7)
    assert (msg.height, msg.width, msg.max_range, msg.header.stamp_ns) == (58, 87, 1.0, 7)
    np.testing.assert_array_equal(to_numpy(msg.depth), depth)


def test_depth_camera_pitch_sees_the_floor_closer():
    sim = MujocoRobotSim("go2", Terrain("flat", 0, ()))
    cam = DepthCamera(sim.scene, mount_pos=(0.3, 0.0, 0.05), mount_rpy_deg=(0, 30, 0), max_range=10.0)
    depth = cam.render(sim.data)
    cam_z = sim.read_state().base_pos[2] + 0.05
    # the center ray (between the two middle rows) points 30 degrees down
    center = depth[28:30, 43].mean()
    assert center == pytest.approx(cam_z / np.sin(np.radians(30)), rel=0.02)


def test_height_scan_on_a_height_field_matches_its_surface_within_1cm():
    """The HAL's ray cast hits MuJoCo's triangulated height field where ``HeightField.height_at``
    (the formula the trainer evaluates on the GPU) says it is, on every tile kind."""
    from krabgraph.nodes.mujoco.heightfield import grid_pattern as pattern
    from krabgraph.nodes.mujoco.terrain import make_terrain

    terrain = make_terrain("rough", seed=0, rows=3)
    sim = MujocoRobotSim("go2", terrain)
    scanner = HeightScanner(sim.scene)
    rng = np.random.default_rng(0)
    field = terrain.heightfield
    worst, uneven = 0.0, 0
    for _ in range(30):
        x, y = rng.uniform(field.origin[0] + 2, field.origin[0] + field.extent[0] - 2), rng.uniform(-2.0, 18.0)
        yaw = rng.uniform(-np.pi, np.pi)
        sim.reset((x, y, yaw))
        base = sim.data.xpos[sim.scene.base_body]
        grid = pattern()
        c, s = np.cos(yaw), np.sin(yaw)
        wx, wy = base[0] + c * grid[..., 0] - s * grid[..., 1], base[1] + s * grid[..., 0] + c * grid[..., 1]
        expected = base[2] - terrain.height_at(wx, wy) - scanner.offset
        scan = scanner.scan(sim.data)
        worst = max(worst, float(np.abs(scan - expected).max()))
        uneven += int(np.ptp(expected) > 0.02)
    assert worst < 0.01
    assert uneven >= 10
