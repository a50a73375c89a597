"""What the runtime gives a node: one handle for the graph clock, timers, stop requests and order.

The executor (or a ``NodeHarness``) builds one ``NodeContext`` per node and hands it over with
``node.attach(context)``, before ``configure()``. A node reads it only through its own API
(``now_ns()``, ``create_timer()``, ``request_stop()``, ``clock_mode``), so node authors never see it;
the runtime reads the node only through its public API (``lifecycle``, ``timers``,
``input_ports()``, ``output_ports()``, ``param_values()``).

Imports nothing beyond the standard library's typing: part of the node API, which loads fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

CLOCK_MODES = ("wall", "sim", "topic", "manual")  # manual: a node outside any executor (unit tests)


class ScheduledTimer(Protocol):
    """What a scheduler reads of a timer (``node.Timer`` is one; a protocol, since node.py imports this module)."""

    due_ns: int
    period_ns: int
    rank: int
    order: int
    cancelled: bool


class GraphClock(Protocol):
    """A graph clock (``launch/runtime/clock.py``: ``WallClock``, ``SimClock``, ``TopicClock``; or ``ManualClock``)."""

    mode: str

    def now_ns(self) -> int: ...


class ManualClock:
    """Graph clock of a node outside any executor: time moves only when ``t_ns`` is set.

    ``mode`` is what the node's ``clock_mode`` reports: ``"manual"``, or the mode a test wants the
    node to see (a HAL that refuses a simulated clock: ``NodeHarness(...).clock.mode = "sim"``).
    """

    def __init__(self, mode: str = "manual") -> None:
        self.t_ns = 0
        self.mode = mode

    def now_ns(self) -> int:
        return self.t_ns


class NodeContext:
    """The runtime's handle given to one node.

    - ``clock``: the graph clock (``now_ns()``, ``mode``); every node of a graph shares one.
    - ``rank``: the node's place in the graph file; the first tie-break of timers due at one instant.
    - ``schedule(timer)``: hands a timer the node created to the loop that fires it (None: nobody
      fires it; a bare node in a unit test).
    - ``stop(code)``: asks the runtime to stop the graph (None: ``request_stop()`` raises).
    """

    __slots__ = ("clock", "rank", "schedule", "stop")

    def __init__(
        self,
        clock: GraphClock,
        *,
        rank: int = 0,
        schedule: Callable[[ScheduledTimer], Any] | None = None,
        stop: Callable[[int], Any] | None = None,
    ) -> None:
        self.clock = clock
        self.rank = rank
        self.schedule = schedule
        self.stop = stop

    @property
    def clock_mode(self) -> str:
        """``"wall"``, ``"sim"``, ``"topic"`` or ``"manual"`` (outside any executor)."""
        return self.clock.mode

    def __repr__(self) -> str:
        return f"<NodeContext clock={self.clock_mode} rank={self.rank}>"
