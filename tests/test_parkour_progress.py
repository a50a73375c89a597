"""The MuJoCo HAL's course progress on the parkour terrain: one line per obstacle passed and one at
the finish line, ``stop_at_finish``, and the launcher's summary, with the base teleported along the
course (no policy: cheap and exact)."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from krabgraph.launch import Executor, Node, build_graph, graph_from_dict
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.launch.runtime.monitor import RunMonitor
from krabgraph.nodes.demo import HoldPose
from krabgraph.nodes.mujoco.hal import MujocoHal

pytest.importorskip("mujoco")
PROGRESS = re.compile(r"passed \d/\d: .* at t=\d+\.\d\d s|finish line .*")


def teleport(hal: MujocoHal, x: float, y: float = 0.0, above: float = 0.45) -> None:
    """Put the base at (x, y), ``above`` m over the ground there, at rest."""
    b, sim = hal.sim.scene.base_qpos_adr, hal.sim
    sim.data.qpos[b : b + 3] = [x, y, hal.course.height_at(x, y) + above]
    sim.data.qvel[:] = 0.0


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.endswith("hal") and PROGRESS.fullmatch(r.getMessage())]


def test_each_obstacle_passed_is_said_once_in_order_then_the_finish_stops_the_graph(caplog):
    h = NodeHarness(MujocoHal, terrain="parkour", seed=1, status_period_s=0.0, stop_at_finish=True).start()
    stops = h.stops  # the codes the node passed to request_stop()
    course = h.node.course
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        h.advance(0.1)
        for o in course.obstacles:
            teleport(h.node, o.x0 - 0.3)  # before it: not passed
            h.advance(0.04)
            teleport(h.node, o.x1 + 0.3, above=-0.1)  # past it but below the deck (fallen): not passed
            h.node.track_course()
            assert h.node.course_progress[0] == course.obstacles.index(o)
            teleport(h.node, o.x1 + 0.3)
            h.advance(0.04)
        assert h.node.course_progress == (6, 6, False) and not stops
        teleport(h.node, course.finish_x + 0.3)
        h.advance(0.04)
        h.advance(0.2)  # said once
    lines = progress_lines(caplog)
    names = ["0.15 m step-up", "0.20 m box", "0.30 m gap", "0.15 m hurdle", "0.30 m box", "0.50 m gap"]
    assert [line.split(" at t=")[0] for line in lines[:6]] == [f"passed {i}/6: {n}" for i, n in enumerate(names, 1)]
    times = [float(re.search(r"t=(\d+\.\d\d) s", line)[1]) for line in lines]
    assert times == sorted(times) and times[0] > 0.1
    assert re.fullmatch(r"finish line \(x=\d+\.\d\d m\) crossed at t=\d+\.\d\d s: 6/6 obstacles passed", lines[6])
    assert len(lines) == 7 and stops == [0] and h.node.course_progress == (6, 6, True)
    h.stop()


def test_without_stop_at_finish_the_graph_runs_on_and_other_terrains_say_nothing(caplog):
    h = NodeHarness(MujocoHal, terrain="parkour", status_period_s=0.0).start()
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        teleport(h.node, h.node.course.finish_x + 0.5)  # past everything at once: every line, in order
        h.advance(0.04)
    assert [line.split(":")[0] for line in progress_lines(caplog)] == [f"passed {i}/6" for i in range(1, 7)] + [
        "finish line (x=13.27 m) crossed at t=0.02 s"  # the first tick
    ]
    assert h.stops == []  # no request_stop(): the graph runs on
    h.stop()
    flat = NodeHarness(MujocoHal, terrain="stairs", status_period_s=0.0, stop_at_finish=True).start()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        teleport(flat.node, 20.0)
        flat.advance(0.1)
    assert flat.node.course_progress is None and progress_lines(caplog) == [] and flat.stops == []
    flat.stop()
    (problem,) = MujocoHal.check_params({**MujocoHal(terrain="flat", stop_at_finish=True).param_values()})
    assert problem.warning and "terrain 'flat' has no finish line" in problem.message


class Teleporter(Node):
    """Moves the HAL's base 1 m ahead every 0.2 s of graph time (given the HAL after the build)."""

    kind = "other"

    def on_activate(self) -> None:
        self.create_timer(0.2, self.jump)

    def jump(self) -> None:
        hal: MujocoHal = self.hal
        b = hal.sim.scene.base_qpos_adr
        teleport(hal, float(hal.sim.data.qpos[b]) + 1.0)


def test_a_graph_with_stop_at_finish_ends_at_the_finish_line_with_the_obstacles_in_its_summary(caplog):
    graph = graph_from_dict(
        {
            "clock": "sim",
            "robot": "go2",
            "nodes": {
                "hal": {
                    "class": MujocoHal,
                    "params": {"terrain": "parkour", "stop_at_finish": True, "status_period_s": 0.0},
                    "unsafe_direct_command": True,  # no safety node: nothing drives the robot
                    "inputs": {"command": "hold/joint_command"},
                },
                "hold": {"class": HoldPose, "inputs": {"state": "hal/state"}},
                "mover": {"class": Teleporter},
            },
        }
    )
    ex = Executor(build_graph(graph))
    ex.nodes["mover"].hal = ex.nodes["hal"]
    monitor = RunMonitor(ex)
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        code = monitor.finish(ex.run(duration_s=10.0, handle_signals=False))
    assert code == 0
    finish_x = ex.nodes["hal"].course.finish_x  # 13.27 m: 14 jumps of 1 m, one every 0.2 s
    assert np.isclose(ex.clock.now_ns() * 1e-9, 2.8, atol=0.03), ex.clock.now_ns()
    assert len(progress_lines(caplog)) == 7 and 13 < finish_x < 14
    (summary,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("summary:")]
    assert ", obstacles passed 6/6, finish line crossed, 0 safety trips" in summary


def test_time_limit_stops_the_graph_and_says_how_far_the_robot_got(caplog):
    h = NodeHarness(MujocoHal, terrain="parkour", status_period_s=0.0, time_limit_s=0.5).start()
    stops = h.stops
    with caplog.at_level(logging.INFO, logger="krabgraph"):
        teleport(h.node, h.node.course.obstacles[1].x1 + 0.3)  # past two obstacles
        h.advance(0.4)
        assert stops == []
        h.advance(0.3)  # said once
    (line,) = [r.getMessage() for r in caplog.records if "time limit" in r.getMessage()]
    assert re.fullmatch(r"time limit 0\.5 s reached at x=\d+\.\d\d m; 2/6 obstacles passed: stopping the graph", line)
    assert stops == [0]
    h.stop()
