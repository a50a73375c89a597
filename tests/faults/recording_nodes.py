"""Nodes the fault tests wire into whole graphs: a robot that keeps every command it receives and a
log of every safety status, each with the graph time it arrived, and a ticking raw-frame source."""

from __future__ import annotations

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.ports import AnyMessage
from krabgraph.msgs import JointCommand, SafetyStatus
from krabgraph.nodes.demo import FakeRobot

MS = 1_000_000


class LoggingRobot(FakeRobot):
    """FakeRobot that keeps every command it receives, with the graph time; mute from ``mute_after_s``."""

    mute_after_s = Param(float, 1e9, "no states from this graph time on", unit="s")
    skip_ms = Param(list, [], "graph times (ms) of ticks that publish no state (a LowState that came late)", item=int)

    def on_configure(self) -> None:
        super().on_configure()
        self.received: list[tuple[int, JointCommand]] = []

    def on_command(self, msg: JointCommand) -> None:
        self.received.append((self.now_ns(), msg))
        super().on_command(msg)

    def muted(self) -> bool:
        """True at a tick that publishes no state."""
        return self.now_ns() >= round(self.mute_after_s * 1e9) or self.now_ns() // MS in self.skip_ms

    def tick(self) -> None:
        if not self.muted():
            super().tick()


class StatusLog(Node):
    """Every SafetyStatus, with the graph time it arrived."""

    kind = "recorder"
    status = Input(SafetyStatus, queue=100, triggers=False)

    def on_configure(self) -> None:
        self.got: list[tuple[int, SafetyStatus]] = []

    def on_status(self, msg: SafetyStatus) -> None:
        self.got.append((self.now_ns(), msg))


class RawTicker(Node):
    """A source that calls ``emit(k)`` every 10 ms of graph time, k = 1, 2, ... (frames on ``out``)."""

    kind = "source"
    out = Output(AnyMessage)

    def on_activate(self) -> None:
        self.k = 0
        self.create_timer(0.01, self.tick)

    def tick(self) -> None:
        self.k += 1
        self.emit(self.k)

    def emit(self, k: int) -> None:
        raise NotImplementedError
