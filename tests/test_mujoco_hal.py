"""MujocoHal node: lockstep stepping, published messages, command validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from krabgraph.launch import ParamError
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import JointCommand, set_array, to_numpy
from krabgraph.nodes.mujoco.hal import MujocoHal


@pytest.fixture
def hal():
    h = NodeHarness(MujocoHal).start()
    yield h
    h.stop()


def test_steps_physics_in_lockstep_with_the_graph_clock(hal):
    hal.advance(1.0)
    states, clocks = hal.outputs["state"], hal.outputs["clock"]
    assert len(states) == 51  # one on activation, then 50 Hz
    stamps = [m.header.stamp_ns for m in states]
    assert stamps == [k * 20_000_000 for k in range(51)]
    assert [c.sim_time_ns for c in clocks] == stamps
    assert hal.node.sim.step_count == 400
    last = states[-1]
    assert last.has_base and 0.2 < last.base.position.z < 0.4  # holds its default pose, standing
    assert list(last.contacts.in_contact) == [True] * 4
    scan = hal.outputs["height_scan"][-1]
    assert to_numpy(scan.heights).shape == (11, 17) and scan.header.stamp_ns == stamps[-1]
    assert hal.outputs["depth_image"] == []  # off by default


def _command(names, position, **extra):
    msg = JointCommand(name=names)
    set_array(msg.position, np.asarray(position, dtype=np.float64))
    for key, values in extra.items():
        set_array(getattr(msg, key), np.asarray(values, dtype=np.float64))
    return msg


def test_command_by_name_in_any_order(hal):
    robot = hal.node.description
    names = list(reversed(robot.joint_names))
    hal.feed("command", _command(names, np.zeros(12), kp=[0.0] * 12, kd=[0.0] * 12, effort=np.arange(12) * 0.5))
    hal.advance(0.02)
    state = hal.outputs["state"][-1]
    effort = dict(zip(state.joints.name, to_numpy(state.joints.effort), strict=True))
    for k, name in enumerate(names):
        assert effort[name] == pytest.approx(0.5 * k), name


def test_bad_commands_are_logged_once_and_last_targets_kept(hal, caplog):
    robot = hal.node.description
    good = _command(list(robot.joint_names), robot.default_pos, kp=[0.0] * 12, kd=[0.0] * 12, effort=[1.0] * 12)
    hal.feed("command", good)
    bad_name = _command(["FL_knee"], [0.0])
    bad_value = _command(list(robot.joint_names), [np.nan] * 12)
    bad_count = _command(list(robot.joint_names), np.zeros(12), kp=[1.0] * 3)
    with caplog.at_level(logging.ERROR):
        for msg in (bad_name, bad_name, bad_value, bad_count):
            hal.feed("command", msg)
    assert hal.node.rejected == 4
    assert len(caplog.records) == 3  # one per distinct reason
    assert "kp: expected 12 values" in caplog.text and "unknown joint" in caplog.text
    hal.advance(0.02)
    np.testing.assert_allclose(to_numpy(hal.outputs["state"][-1].joints.effort), 1.0)


def test_depth_image_when_enabled():
    h = NodeHarness(MujocoHal, depth_hz=10.0).start()
    h.advance(0.2)
    images = h.outputs["depth_image"]
    assert len(images) == 2 and to_numpy(images[0].depth).shape == (58, 87)
    assert (to_numpy(images[0].depth) > 0).any()  # sees the floor ahead
    h.stop()


def test_invalid_terrain_parameter():
    with pytest.raises(ParamError, match="terrain"):
        MujocoHal(terrain="lava")


def test_the_viewer_and_the_video_camera_follow_the_base(monkeypatch, tmp_path):
    """MuJoCo's interactive viewer cannot open here (no display): a recording stand-in for
    ``mujoco.viewer.launch_passive`` receives the camera set-up the HAL gives the real one."""
    import contextlib

    import mujoco
    import mujoco.viewer

    class StandInViewer:
        def __init__(self):
            self.cam = mujoco.MjvCamera()

        def lock(self):
            return contextlib.nullcontext()

        def is_running(self):
            return True

        def sync(self):
            pass

        def close(self):
            pass

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(mujoco.viewer, "launch_passive", lambda model, data: StandInViewer())
    h = NodeHarness(MujocoHal, viewer=True, video_view=[3.0, -15.0, 90.0]).start()
    cam, base = h.node.window.cam, h.node.sim.scene.base_body
    assert cam.type == mujoco.mjtCamera.mjCAMERA_TRACKING and cam.trackbodyid == base
    assert (cam.distance, cam.elevation, cam.azimuth) == (3.0, -15.0, 90.0)
    h.stop()
