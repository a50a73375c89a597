"""Typed input and output ports, declared on a node class like fields.

Node code reads ``self.<input>.latest`` or gets ``on_<input>(msg)`` calls, and calls
``self.<output>.publish(msg)``; the executor (or a test harness) moves the bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

if TYPE_CHECKING:
    from krabgraph.launch.node import Node


class Input:
    """Declares an input port of message type ``msg_type``.

    ``queue=0`` (default) is latest-only: a slow reader sees the newest message and older ones are
    dropped (counted). ``queue=N`` keeps up to N messages in order, dropping the oldest (counted).
    The callback is ``callback`` (a method name) or ``on_<port>`` if the class defines it.
    """

    def __init__(
        self,
        msg_type: type[Message],
        *,
        queue: int = 0,
        required: bool = True,
        callback: str | None = None,
        doc: str = "",
    ):
        if queue < 0:
            raise ValueError("queue must be >= 0 (0 = latest-only)")
        self.msg_type = msg_type
        self.queue = queue
        self.required = required
        self.callback = callback
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Node | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._inputs[self.name]

    @property
    def policy(self) -> str:
        return "latest" if self.queue == 0 else f"queue({self.queue})"


class Output:
    """Declares an output port. ``shared=True`` lets several publishers share its topic."""

    def __init__(self, msg_type: type[Message], *, shared: bool = False, doc: str = ""):
        self.msg_type = msg_type
        self.shared = shared
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Node | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._outputs[self.name]


class InputPort:
    """Runtime side of an input: the latest message, counters and the node's callback."""

    __slots__ = ("_callback", "count", "dropped", "latest", "lost", "node", "received_ns", "spec")

    def __init__(self, node: Node, spec: Input):
        self.node = node
        self.spec = spec
        self.latest: Message | None = None
        self.received_ns: int | None = None  # graph time when `latest` arrived
        self.count = 0  # messages delivered to the node
        self.dropped = 0  # discarded by this port's policy or as bad wire data
        self.lost = 0  # sequence gaps seen from the publisher (e.g. transport overflow)
        name = spec.callback or f"on_{spec.name}"
        self._callback: Callable[[Message], Any] | None = getattr(node, name, None)
        if spec.callback and self._callback is None:
            raise TypeError(f"{type(node).__name__}: callback {spec.callback!r} of input {spec.name!r} not found")

    @property
    def has_callback(self) -> bool:
        return self._callback is not None

    def age_ns(self) -> int | None:
        """Graph time since the latest message arrived (None before the first)."""
        if self.received_ns is None:
            return None
        return self.node.now_ns() - self.received_ns

    def deliver(self, msg: Message) -> None:
        """Hand one message to the node: update ``latest`` and run the callback (if any)."""
        self.latest = msg
        self.received_ns = self.node.now_ns()
        self.count += 1
        if self._callback is not None:
            self._callback(msg)


class OutputPort:
    """Runtime side of an output. Unbound (no executor), published messages collect in ``sent``."""

    __slots__ = ("_sink", "count", "node", "sent", "seq", "spec")

    def __init__(self, node: Node, spec: Output):
        self.node = node
        self.spec = spec
        self.seq = 0
        self.count = 0
        self.sent: deque[Message] = deque(maxlen=10_000)
        self._sink: Callable[[Message], None] = self.sent.append

    def bind(self, sink: Callable[[Message], None]) -> None:
        """Route published messages to ``sink`` (done by the executor)."""
        self._sink = sink

    def publish(self, msg: Message) -> None:
        """Publish ``msg``; fills ``header.seq`` and, if unset, ``header.stamp_ns`` (graph clock)."""
        if type(msg) is not self.spec.msg_type:
            raise TypeError(
                f"{self.node.name}.{self.spec.name} publishes {self.spec.msg_type.__name__}, got {type(msg).__name__}"
            )
        self.seq += 1
        self.count += 1
        header = msg.header
        header.seq = self.seq
        if not header.stamp_ns:
            header.stamp_ns = self.node.now_ns()
        self._sink(msg)
