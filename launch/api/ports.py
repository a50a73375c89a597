"""Typed input and output ports, declared on a node class like fields.

Node code reads ``self.<input>.latest`` or gets ``on_<input>(msg)`` calls, and calls
``self.<output>.publish(msg)``; the executor (or a test harness) moves the bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import Message

from krabgraph.msgs.common_pb2 import Header


class PortOwner(Protocol):
    """What a port needs of the node that owns it (``Node`` is one): its name and the graph clock.

    A protocol, not ``Node``: node.py builds on this module, so this module must not import it back.
    """

    name: str

    def now_ns(self) -> int: ...


class AnyMessage:
    """Port type of an input that takes frames of any type, undecoded (recorders, bridges, viewers).

    ``Input(AnyMessage, queue=N)`` may be wired to one topic, a list of topics or glob patterns
    (``[hal/*, policy/joint_command]``); its callback gets ``RawMessage`` objects.
    """


class RawMessage:
    """A frame as it came off a topic: ``<type tag> NUL <payload>``, plus the topic and its type.

    Nothing is parsed on arrival; ``header`` parses only the leading Header field (cached),
    ``decode()`` the whole message.
    """

    __slots__ = ("_header", "frame", "msg_type", "offset", "topic")

    def __init__(self, topic: str, msg_type: type[Message] | None, frame: bytes, offset: int):
        self.topic = topic
        self.msg_type = msg_type  # None: the topic's type is not known to the graph (see ``resolve``)
        self.frame = frame
        self.offset = offset  # where the payload starts
        self._header: Header | None = None

    @property
    def payload(self) -> bytes:
        return self.frame[self.offset :]

    @property
    def type_name(self) -> str:
        """Full protobuf name from the frame's tag, e.g. ``krabgraph.msgs.RobotState``."""
        return bytes(self.frame[: self.offset - 1]).decode(errors="replace").partition("@")[0]

    def resolve(self) -> type[Message]:
        """The message class (from the graph, else from the tag); ``KeyError`` if unknown."""
        if self.msg_type is None:
            from krabgraph.msgs.schema import message_class

            self.msg_type = message_class(self.type_name)
        return self.msg_type

    def decode(self) -> Message:
        return self.resolve().FromString(self.payload)

    @property
    def header(self) -> Header:
        """The message's ``header`` (field 1 by convention), parsed without the rest of the payload."""
        if self._header is None:
            self._header = _leading_header(self.frame, self.offset) or getattr(self.decode(), "header", Header())
        return self._header

    def __repr__(self) -> str:
        return f"<RawMessage {self.topic} {self.type_name} {len(self.frame) - self.offset} bytes>"


def _leading_header(frame: bytes, i: int) -> Header | None:
    """Field 1 (length-delimited) at the start of a payload, as a Header; None if not there."""
    if len(frame) <= i:
        return Header()  # empty payload: every field at its default
    if frame[i] != 0x0A:
        return None
    n, shift, i = 0, 0, i + 1
    while i < len(frame) and shift < 64:
        b = frame[i]
        n |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return Header.FromString(frame[i : i + n])
        shift += 7
    return None


class Input:
    """Declares an input port of message type ``msg_type``.

    ``queue=0`` (default) is latest-only: a slow reader sees the newest message and older ones are
    dropped (counted). ``queue=N`` keeps up to N messages in order, dropping the oldest (counted).
    The callback is ``callback`` (a method name) or ``on_<port>`` if the class defines it.
    ``triggers=False`` declares that the callback never publishes (it stores the message; a timer
    publishes later): validation then knows that a topic cycle through this input has a delay.
    """

    def __init__(
        self,
        msg_type: type[Message] | type[AnyMessage],
        *,
        queue: int = 0,
        required: bool = True,
        callback: str | None = None,
        triggers: bool = True,
        doc: str = "",
    ):
        if queue < 0:
            raise ValueError("queue must be >= 0 (0 = latest-only)")
        self.msg_type = msg_type
        self.queue = queue
        self.required = required
        self.callback = callback
        self.triggers = triggers  # the callback may publish on receipt (a cycle through it has no delay)
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:  # obj: the Node
        if obj is None:
            return self
        return obj._inputs[self.name]

    @property
    def policy(self) -> str:
        return "latest" if self.queue == 0 else f"queue({self.queue})"

    @property
    def raw(self) -> bool:
        """True for ``Input(AnyMessage)``: frames of any topic, delivered as ``RawMessage``."""
        return self.msg_type is AnyMessage


class Output:
    """Declares an output port. ``shared=True`` lets several publishers share its topic.

    ``Output(AnyMessage)`` publishes ``RawMessage`` frames unchanged (a replay), each on its own
    ``topic``; it may be wired to a list of topics.
    """

    def __init__(self, msg_type: type[Message] | type[AnyMessage], *, shared: bool = False, doc: str = ""):
        self.msg_type = msg_type
        self.shared = shared
        self.doc = doc
        self.name = ""

    @property
    def raw(self) -> bool:
        return self.msg_type is AnyMessage

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:  # obj: the Node
        if obj is None:
            return self
        return obj._outputs[self.name]


class InputPort:
    """Runtime side of an input: the latest message, counters and the node's callback."""

    __slots__ = ("_callback", "count", "dropped", "latest", "lost", "node", "received_ns", "spec")

    def __init__(self, node: PortOwner, spec: Input):
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

    __slots__ = ("_flag", "_listened", "_raw", "_sink", "_type", "node", "sent", "seq", "spec", "topics")

    def __init__(self, node: PortOwner, spec: Output):
        self.node = node
        self.spec = spec
        self._type = spec.msg_type
        self.seq = 0  # typed messages published (the last one's header.seq)
        self._raw = 0  # raw frames published (they keep their own seq)
        self.sent: deque[Message] = deque(maxlen=10_000)
        self._sink: Callable[[Message], None] = self.sent.append
        self._listened = True  # a subscriber or observer gets every message (unbound: ``sent`` keeps them)
        self._flag: Any = None  # the tap's flag of the topic: ``on`` while a tap listener wants it
        self.topics: dict[str, type[Message] | None] = {}  # where the executor wired it, with each type

    def bind(self, sink: Callable[[Message], None], listened: bool = True, flag: Any = None) -> None:
        """Route published messages to ``sink`` (done by the executor); ``listened``: a node of the graph
        reads the topic; ``flag``: the tap's flag of the topic (``wanted`` reads both)."""
        self._sink = sink
        self._listened = listened
        self._flag = flag

    @property
    def wanted(self) -> bool:
        """Whether a message published now reaches anyone: a node of the graph (in any process) reads the
        topic, an in-process observer watches the port, a tap listener subscribes to it, or (outside an
        executor) ``sent`` keeps it. A node may skip building a message nobody wants (a debug output),
        as ROS 2 nodes check their publisher's subscription count; ``publish`` works either way."""
        flag = self._flag
        return self._listened or (flag is not None and flag.on)

    def observe(self, callback: Callable[[Message], None]) -> None:
        """Also hand each published message to ``callback``, after it is sent (in-process observers such
        as the launcher's run monitor; they must not change it). Call after ``bind``."""
        sink = self._sink

        def send_and_observe(msg: Message) -> None:
            sink(msg)
            callback(msg)

        self._sink = send_and_observe
        self._listened = True

    @property
    def count(self) -> int:
        """Messages published: typed ones and raw frames."""
        return self.seq + self._raw

    def publish(self, msg: Message) -> None:
        """Publish ``msg``; fills ``header.seq`` and, if unset, ``header.stamp_ns`` (graph clock)."""
        if type(msg) is not self._type:
            if type(msg) is RawMessage and self.spec.raw:  # frames go out as they are: seq, stamp kept
                self._raw += 1
                self._sink(msg)
                return
            raise TypeError(
                f"{self.node.name}.{self.spec.name} publishes {self.spec.msg_type.__name__}, got {type(msg).__name__}"
            )
        seq = self.seq + 1
        self.seq = seq
        header = msg.header
        header.seq = seq
        if not header.stamp_ns:
            header.stamp_ns = self.node.now_ns()
        self._sink(msg)
