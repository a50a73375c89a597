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


def test_status_line_shows_the_safety_mode_and_a_shortened_fault_when_wired(caplog) -> None:
    from krabgraph.msgs import SafetyStatus, VelocityCommand
    from krabgraph.nodes.hal import FAULT_TEXT_CHARS
    from krabgraph.nodes.mujoco.hal import MujocoHal

    h = NodeHarness(MujocoHal, status_period_s=0.5).start()
    h.feed("velocity_command", VelocityCommand(vx=0.5))
    h.feed("safety_status", SafetyStatus(mode=SafetyStatus.Mode.ACTIVE))
    with caplog.at_level(logging.INFO, logger="krabgraph.mujoco_hal"):
        h.advance(0.5)
        reason = "attitude trip: roll -0.18 rad, pitch +1.03 rad (limit 1.0 rad) for 0.02 s; reset to clear"
        h.feed("safety_status", SafetyStatus(mode=SafetyStatus.Mode.DAMPING, fault=SafetyStatus.Fault.FAULT_ATTITUDE,
                                             reason=reason))  # fmt: skip
        h.advance(0.5)
    first, second = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t=")]
    assert first.endswith("rejected=0  safety ACTIVE  cmd=none  asked vx=0.50 vy=0.00 yaw rate=0.00"), first
    shown = re.search(r"rejected=0  safety DAMPING \((.*)\)  cmd=none  asked", second)
    assert shown, second
    assert len(shown[1]) == FAULT_TEXT_CHARS and shown[1].endswith("…") and reason.startswith(shown[1][:-1])
    h.stop()


def test_every_shipped_graph_with_a_safety_node_wires_its_status_to_the_hal() -> None:
    """Every graph under graphs/ with a HAL and a safety node wires the safety status to the HAL."""
    from pathlib import Path

    from krabgraph.launch import load_and_build

    shipped = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "graphs").glob("*.yaml"))
    wired = []
    for name in shipped:
        graph = load_and_build(name)
        hals = [n for n, s in graph.nodes.items() if s.cls.kind == "hal"]
        status = graph.topics.get("safety/status")
        if not hals or status is None or not status.publishers:
            continue
        subscribers = {n for n, port in status.subscribers if port == "safety_status"}
        assert set(hals) <= subscribers, (name, hals, status.subscribers)
        wired.append(name)
    assert {"walk", "parkour", "demo", "anymal_stairs", "walk_real"} <= set(wired)


def test_walk_graph_status_line_says_the_safety_mode(caplog) -> None:
    """graphs/walk.yaml in lockstep: the HAL's status line follows the safety node from its soft start."""
    from krabgraph.launch import Executor, build_graph, load_graph

    decl = load_graph("walk", clock="sim", sets=["hal.status_period_s=0.2", "safety.soft_start_s=0.5"])
    ex = Executor(build_graph(decl))
    with caplog.at_level(logging.INFO, logger="krabgraph.hal"):
        assert ex.run(duration_s=1.01, handle_signals=False) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t=")]
    assert len(lines) == 5, lines
    assert all(line.endswith("rejected=0  safety SOFT_START  cmd=safety") for line in lines[:2]), lines
    assert all(line.endswith("rejected=0  safety ACTIVE  cmd=policy") for line in lines[2:]), lines
