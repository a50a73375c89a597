"""Unit-test a node without an executor: feed inputs, advance a manual clock, read outputs."""

from __future__ import annotations

import heapq
from typing import Any

from google.protobuf.message import Message

from krabgraph.launch.api.context import ManualClock, NodeContext
from krabgraph.launch.api.node import Node, Timer


class NodeHarness:
    """Drives one node by hand. Outputs collect in ``outputs[port]``; time moves only via ``advance``;
    the codes the node passed to ``request_stop()`` collect in ``stops``.

    >>> h = NodeHarness(FakeRobot, rate_hz=50.0)
    >>> h.start(); h.advance(0.1); len(h.outputs["state"])
    5

    ``clock`` is the node's graph clock (``mode`` ``"manual"``; set ``h.clock.mode = "sim"`` before
    ``start()`` to show the node another clock mode).
    """

    def __init__(self, cls: type[Node], name: str | None = None, **params: Any):
        self.node = cls(name=name, **params)
        self.timers: list[Timer] = []
        self.stops: list[int] = []
        self.clock = ManualClock()
        self.context = NodeContext(self.clock, schedule=self._schedule, stop=self.stops.append)
        self.node.attach(self.context)
        ports = self.node.output_ports()
        self.outputs: dict[str, list[Message]] = {k: [] for k in ports}
        for key, port in ports.items():
            port.bind(self.outputs[key].append)

    def _schedule(self, timer: Timer) -> None:
        heapq.heappush(self.timers, timer)

    @property
    def now_ns(self) -> int:
        return self.clock.t_ns

    def start(self) -> NodeHarness:
        self.node.configure()
        self.node.activate()
        return self

    def feed(self, port: str, msg: Message) -> None:
        """Deliver ``msg`` to input ``port`` as the executor would (only while active)."""
        inport = self.node.input_ports()[port]
        if type(msg) is not inport.spec.msg_type:
            raise TypeError(f"input {port!r} takes {inport.spec.msg_type.__name__}, got {type(msg).__name__}")
        if self.node.lifecycle == "active":
            inport.deliver(msg)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing due timers in deadline order."""
        end = self.now_ns + round(seconds * 1e9)
        while self.timers and self.timers[0].due_ns <= end:
            timer = heapq.heappop(self.timers)
            if timer.cancelled:
                continue
            self.clock.t_ns = timer.due_ns
            timer.due_ns += timer.period_ns
            heapq.heappush(self.timers, timer)
            timer.callback()
        self.clock.t_ns = end

    def stop(self) -> None:
        self.node.shutdown()
