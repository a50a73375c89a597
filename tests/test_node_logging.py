"""Node.log_once and Node.log_throttled: bounded logging on the graph clock, without an executor."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest

from krabgraph.launch import Input, Node, Param
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import CommandSource, JointCommand, VelocityCommand, set_array
from krabgraph.nodes.demo import FakeRobot
from krabgraph.nodes.hal import REPORTS_PER_KIND


class Noisy(Node):
    """Complains about every non-finite velocity command: once, and throttled."""

    period_s = Param(float, 1.0, "throttle period", unit="s", gt=0)
    cmd = Input(VelocityCommand)

    def on_cmd(self, msg: VelocityCommand) -> None:
        if not math.isfinite(msg.vx):
            self.log_once(logging.ERROR, "first bad vx: %s", msg.vx)
            self.log_throttled(self.period_s, logging.WARNING, "bad vx %s at t=%.1f s", msg.vx, self.now())


def lines(caplog, name: str = "krabgraph.noisy") -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == name]


@pytest.fixture
def noisy(caplog):
    caplog.set_level(logging.DEBUG, logger="krabgraph")
    return NodeHarness(Noisy).start()


def test_log_once_logs_the_first_call_per_key_and_says_whether_it_logged(noisy, caplog):
    node = noisy.node
    assert node.log_once(logging.WARNING, "value %d out of range", 1) is True
    assert node.log_once(logging.WARNING, "value %d out of range", 2) is False  # the key: the format string
    assert node.log_once(logging.INFO, "value %d out of range", 3, key="other") is True
    assert node.log_once(logging.ERROR, "100% busy") is True  # no args: the text is not %-formatted
    assert node.log_once(logging.ERROR, "100% busy") is False
    noisy.advance(3600.0)
    assert node.log_once(logging.WARNING, "value %d out of range", 4) is False  # once is for the node's life
    assert lines(caplog) == [
        (logging.WARNING, "value 1 out of range"),
        (logging.INFO, "value 3 out of range"),
        (logging.ERROR, "100% busy"),
    ]


def test_log_once_from_a_callback_logs_the_first_bad_message_only(noisy, caplog):
    for vx in (math.nan, math.inf, 0.5, -math.inf):
        noisy.feed("cmd", VelocityCommand(vx=vx))
    assert [m for lvl, m in lines(caplog) if lvl == logging.ERROR] == ["first bad vx: nan"]


def test_log_throttled_logs_at_most_once_per_period_of_graph_time_then_counts_what_it_suppressed(noisy, caplog):
    for _ in range(5):
        noisy.feed("cmd", VelocityCommand(vx=math.nan))
    time.sleep(0.02)  # wall time does not count: the harness clock stands still
    noisy.feed("cmd", VelocityCommand(vx=math.inf))
    noisy.advance(0.999)
    noisy.feed("cmd", VelocityCommand(vx=math.nan))  # still inside the period: counted (6 in all)
    noisy.advance(0.001)
    noisy.feed("cmd", VelocityCommand(vx=-math.inf))  # one period after the first line
    noisy.advance(1.0)
    noisy.feed("cmd", VelocityCommand(vx=math.nan))  # nothing suppressed since: no note
    assert [m for lvl, m in lines(caplog) if lvl == logging.WARNING] == [
        "bad vx nan at t=0.0 s",
        "bad vx -inf at t=1.0 s (+6 more since the last report)",
        "bad vx nan at t=2.0 s",
    ]


def test_log_throttled_returns_whether_it_logged_and_keeps_the_level_and_a_literal_percent(noisy, caplog):
    node = noisy.node
    assert node.log_throttled(0.5, logging.ERROR, "load 100%") is True
    assert [node.log_throttled(0.5, logging.ERROR, "load 100%") for _ in range(3)] == [False] * 3
    noisy.advance(0.5)
    assert node.log_throttled(0.5, logging.ERROR, "load 100%") is True
    assert lines(caplog) == [(logging.ERROR, "load 100%"), (logging.ERROR, "load 100% (+3 more since the last report)")]


def test_different_keys_are_throttled_and_logged_once_independently(noisy, caplog):
    node = noisy.node
    for key in ("a", "b", "a", "b", "a"):
        node.log_throttled(1.0, logging.WARNING, "problem %s", key, key=key)
        node.log_once(logging.INFO, "first %s", key, key=("once", key))
    noisy.advance(1.0)
    node.log_throttled(1.0, logging.WARNING, "problem %s", "b", key="b")
    node.log_throttled(1.0, logging.WARNING, "other problem")  # its own key: its format string
    node.log_throttled(1.0, logging.WARNING, "other problem")
    assert lines(caplog) == [
        (logging.WARNING, "problem a"),
        (logging.INFO, "first a"),
        (logging.WARNING, "problem b"),
        (logging.INFO, "first b"),
        (logging.WARNING, "problem b (+1 more since the last report)"),
        (logging.WARNING, "other problem"),
    ]


def test_each_node_instance_has_its_own_memory(caplog):
    caplog.set_level(logging.DEBUG, logger="krabgraph")
    first, second = NodeHarness(Noisy, name="noisy").start(), NodeHarness(Noisy, name="noisy").start()
    for h in (first, second, first, second):
        h.node.log_once(logging.WARNING, "hello")
        h.node.log_throttled(1.0, logging.WARNING, "tick")
    assert lines(caplog) == [(logging.WARNING, "hello"), (logging.WARNING, "tick")] * 2


def test_a_hal_logs_each_distinct_rejection_once_and_at_most_reports_per_kind(caplog):
    """Hal._reject on log_once: distinct messages up to the cap, then one line saying the rest are counted."""
    names = ["a", "b", "c"]
    h = NodeHarness(FakeRobot, joints=names).start()

    def bad(key: str, j: int, value: float) -> JointCommand:
        msg = JointCommand(name=names, source=CommandSource.POLICY)
        for k in ("position", "velocity", "effort"):
            values = np.zeros(len(names))
            if k == key:
                values[j] = value
            set_array(getattr(msg, k), values)
        return msg

    distinct = [
        bad(k, j, v) for k in ("position", "velocity", "effort") for j in range(3) for v in (math.nan, math.inf)
    ]
    assert len(distinct) > REPORTS_PER_KIND + 1
    further = (
        logging.ERROR,
        "further rejected joint commands (non-finite value) are counted in problems['non-finite value'], not logged",
    )
    with caplog.at_level(logging.ERROR, logger="krabgraph"):
        for msg in [*distinct[:REPORTS_PER_KIND], distinct[0]]:  # a repeat at the cap is not a new message
            h.feed("command", msg)
        shown = lines(caplog, "krabgraph.fake_robot")
        for msg in [*distinct[REPORTS_PER_KIND:], distinct[1]]:
            h.feed("command", msg)
    assert len(shown) == len({m for _, m in shown}) == REPORTS_PER_KIND
    assert shown[0] == (
        logging.ERROR,
        "rejected joint command (position of a is nan; values must be finite); keeping the last valid targets",
    )
    assert lines(caplog, "krabgraph.fake_robot")[REPORTS_PER_KIND:] == [further]
    assert h.node.rejected == h.node.problems["non-finite value"] == len(distinct) + 2
