"""The scripted velocity source: its schedule, and the heading hold stage-2 policies are trained with."""

from __future__ import annotations

import math

import pytest

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import RobotState
from krabgraph.nodes.command import ScriptedVelocity


def imu_state(yaw: float) -> RobotState:
    msg = RobotState()
    o = msg.imu.orientation
    o.w, o.z = math.cos(yaw / 2), math.sin(yaw / 2)
    return msg


def yaw_rates(h: NodeHarness) -> list[float]:
    return [m.yaw_rate for m in h.outputs["cmd_vel"]]


def test_schedule_then_zero():
    h = NodeHarness(ScriptedVelocity, schedule=[[0.1, 0.5, 0.0, 0.2]], rate_hz=50.0).start()
    h.advance(0.2)
    first, last = h.outputs["cmd_vel"][0], h.outputs["cmd_vel"][-1]
    assert (first.vx, first.yaw_rate) == pytest.approx((0.5, 0.2)) and (last.vx, last.yaw_rate) == (0.0, 0.0)
    h.stop()


def test_heading_hold_steers_back_to_the_heading_it_started_walking_with():
    sched = [[0.1, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]]
    h = NodeHarness(ScriptedVelocity, schedule=sched, heading_gain=1.0, heading_max=0.4).start()
    h.feed("state", imu_state(0.3))  # standing: the heading to hold is the one it stands with
    h.advance(0.1)
    assert yaw_rates(h) and all(w == 0.0 for w in yaw_rates(h))
    h.feed("state", imu_state(0.2))  # walking, turned 0.1 rad right of it: steer left at gain x error
    h.outputs["cmd_vel"].clear()
    h.advance(0.04)
    assert yaw_rates(h)[-1] == pytest.approx(0.1, abs=1e-6)
    h.feed("state", imu_state(0.3 - 3.0))  # far off: clipped to heading_max
    h.advance(0.04)
    assert yaw_rates(h)[-1] == pytest.approx(0.4)
    h.feed("state", imu_state(0.3 + math.tau + 0.05))  # the error wraps: 0.05 rad left of it, steer right
    h.advance(0.04)
    assert yaw_rates(h)[-1] == pytest.approx(-0.05, abs=1e-6)
    h.stop()


def test_heading_hold_turns_its_heading_with_the_scheduled_yaw_rate_and_needs_a_state():
    h = NodeHarness(ScriptedVelocity, schedule=[[2.0, 0.5, 0.0, 0.5]], heading_gain=2.0).start()
    h.advance(0.1)
    assert all(w == pytest.approx(0.5) for w in yaw_rates(h))  # no state yet: the schedule alone
    h.feed("state", imu_state(0.0))
    h.advance(0.02)  # the heading to hold is taken from this first state
    h.feed("state", imu_state(0.0))  # the robot did not turn: 1 s later the heading is 0.5 rad ahead
    h.advance(1.0)
    assert yaw_rates(h)[-1] == pytest.approx(0.5 + 1.0, abs=0.05)  # scheduled + clip(2 x 0.5, 1.0)
    h.stop()


def test_heading_hold_is_off_by_default():
    h = NodeHarness(ScriptedVelocity, schedule=[[1.0, 0.5, 0.0, 0.0]]).start()
    h.feed("state", imu_state(1.0))
    h.advance(0.1)
    assert all(w == 0.0 for w in yaw_rates(h))
    h.stop()
