"""Unit-test a node without an executor: feed inputs, advance a manual clock, read outputs."""

from __future__ import annotations

import heapq
from typing import Any

from google.protobuf.message import Message

from krabgraph.launch.node import Node, Timer


class NodeHarness:
    """Drives one node by hand. Outputs collect in ``outputs[port]``; time moves only via ``advance``.

    >>> h = NodeHarness(FakeRobot, rate_hz=50.0)
    >>> h.start(); h.advance(0.1); len(h.outputs["state"])
    5
    """

    def __init__(self, cls: type[Node], name: str | None = None, **params: Any):
        self.node = cls(name=name, **params)
        self.timers: list[Timer] = []
        self.node._timer_sink = lambda t: heapq.heappush(self.timers, t)
        self.outputs: dict[str, list[Message]] = {k: [] for k in self.node._outputs}
        for key, port in self.node._outputs.items():
            port.bind(self.outputs[key].append)

    @property
    def now_ns(self) -> int:
        return self.node._clock.t_ns

    def start(self) -> NodeHarness:
        self.node.configure()
        self.node.activate()
        return self

    def feed(self, port: str, msg: Message) -> None:
        """Deliver ``msg`` to input ``port`` as the executor would (only while active)."""
        spec = self.node._input_specs[port]
        if type(msg) is not spec.msg_type:
            raise TypeError(f"input {port!r} takes {spec.msg_type.__name__}, got {type(msg).__name__}")
        if self.node.lifecycle == "active":
            self.node._inputs[port].deliver(msg)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing due timers in deadline order."""
        end = self.now_ns + round(seconds * 1e9)
        while self.timers and self.timers[0].due_ns <= end:
            timer = heapq.heappop(self.timers)
            if timer.cancelled:
                continue
            self.node._clock.t_ns = timer.due_ns
            timer.due_ns += timer.period_ns
            heapq.heappush(self.timers, timer)
            timer.callback()
        self.node._clock.t_ns = end

    def stop(self) -> None:
        self.node.shutdown()
