"""The MuJoCo HAL's status line: speeds and yaw rate are means over the last second of graph time."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from krabgraph.launch.api.harness import NodeHarness

pytest.importorskip("mujoco")

LINE = re.compile(
    r"t= *(?P<t>\d+\.\d\d)s  x= *-?\d+\.\d\dm y= *-?\d+\.\d\dm z=\d\.\d\dm  1 s mean: vx= *(?P<vx>-?\d+\.\d\d)m/s "
    r"vy= *(?P<vy>-?\d+\.\d\d)m/s yaw rate= *(?P<yaw>-?\d+\.\d\d)rad/s  rtf=\d+\.\d  rejected=0  cmd=none"
)


def test_status_line_speeds_are_one_second_means_of_the_published_states(caplog) -> None:
    from krabgraph.nodes.mujoco.hal import MujocoHal

    # A push sideways and forward at 0.3 s: the standing robot sways, so means differ from samples.
    h = NodeHarness(MujocoHal, status_period_s=0.5, push_at_s=0.3, push_impulse=[6.0, 4.0, 0.0]).start()
    with caplog.at_level(logging.INFO, logger="krabgraph.mujoco_hal"):
        h.advance(2.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t=")]
    assert len(lines) == 4 and all(LINE.fullmatch(line) for line in lines), lines

    states = h.outputs["state"]
    t = np.array([m.header.stamp_ns for m in states]) * 1e-9
    v = np.array([(m.base.linear_velocity.x, m.base.linear_velocity.y, m.base.angular_velocity.z) for m in states])
    moved = False
    for line in lines:
        got = LINE.fullmatch(line)
        now = float(got["t"])
        window = (t > now - 1.0 + 1e-9) & (t <= now + 1e-9)  # one sample per control tick, 50 at 50 Hz
        assert window.sum() == min(50, round(now / 0.02) + 1)
        mean = v[window].mean(axis=0)
        shown = [float(got[k]) for k in ("vx", "vy", "yaw")]
        assert shown == pytest.approx(mean, abs=0.0051), (line, mean)
        moved |= abs(mean[1]) > 0.01
    assert moved  # the push shows in the means
    h.stop()


def test_status_line_ends_with_the_velocity_command_when_it_is_wired(caplog) -> None:
    from krabgraph.msgs import VelocityCommand
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.5).start()
    h.feed("velocity_command", VelocityCommand(vx=0.5, vy=-0.1, yaw_rate=0.25))
    with caplog.at_level(logging.INFO, logger="krabgraph.mujoco_hal"):
        h.advance(0.5)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t=")]
    assert line.endswith("cmd=none  asked vx=0.50 vy=-0.10 yaw rate=0.25"), line
    h.stop()
