"""Client side of the tap: ``krabgraph topic list|echo|hz|bw`` and ``krabgraph node list``.

Rates are computed from receive timestamps (taken as each frame comes off the socket, before any
decoding) over a sliding window, so a large message reads at its real rate: nothing is parsed
on the way (ROS 2's ``topic hz`` under-reports large messages because it measures how fast it
can deserialize them).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
import zmq.auth
from google.protobuf.message import Message

from krabgraph.launch.errors import KrabgraphError
from krabgraph.launch.graph import DEFAULT_TAP
from krabgraph.launch.tap import INFO_TOPIC
from krabgraph.launch.wire import SEP
from krabgraph.msgs import Array, to_numpy
from krabgraph.msgs.schema import message_class


class TapClientError(KrabgraphError):
    """No graph answered, or a topic it does not have."""


class TapClient:
    """A SUB socket on a graph's tap. ``server_key``/``key``: CURVE certificate files."""

    def __init__(self, endpoint: str = DEFAULT_TAP, *, server_key: str = "", key: str = "", timeout_s: float = 3.0):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = 100_000
        if server_key or key:
            if not (server_key and key):
                raise TapClientError("CURVE needs both --server-key (the graph's public key) and --key (yours)")
            server_public, _ = zmq.auth.load_certificate(server_key)
            public, secret = zmq.auth.load_certificate(key)
            if secret is None:
                raise TapClientError(f"{key} holds no secret key")
            self.sock.curve_serverkey = server_public
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(0)
        self.context.term()

    def __enter__(self) -> TapClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def subscribe(self, prefix: str) -> None:
        self.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())

    def unsubscribe(self, prefix: str) -> None:
        self.sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())

    def graph_info(self) -> dict:
        """The graph's description (topics, nodes, counters); raises if none answers in time."""
        self.subscribe(INFO_TOPIC)
        try:
            deadline = time.monotonic() + self.timeout_s
            while (left := deadline - time.monotonic()) > 0:
                if not self.sock.poll(int(left * 1000) + 1):
                    break
                topic, data = self.sock.recv_multipart()
                if topic == INFO_TOPIC.encode():
                    return json.loads(data)
        finally:
            self.unsubscribe(INFO_TOPIC)
        raise TapClientError(
            f"no graph answered on {self.endpoint} within {self.timeout_s:g} s "
            "(start one with `krabgraph launch GRAPH --tap`, or give its endpoint with --tap)"
        )

    def check_topic(self, topic: str) -> dict:
        """The topic's entry in the graph description; raises naming the known topics."""
        info = self.graph_info()
        for entry in info["topics"]:
            if entry["name"] == topic:
                return entry
        names = ", ".join(sorted(t["name"] for t in info["topics"]))
        raise TapClientError(f"graph {info['graph']!r} has no topic {topic!r}; topics: {names}")

    def frames(self, topic: str, duration_s: float | None = None) -> Iterator[tuple[int, bytes]]:
        """(receive time ns, wire frame) of each message on exactly ``topic``."""
        self.subscribe(topic)
        name = topic.encode()
        end = None if duration_s is None else time.monotonic() + duration_s
        recv, poll, clock = self.sock.recv_multipart, self.sock.poll, time.monotonic_ns
        try:
            while end is None or time.monotonic() < end:
                wait = 200 if end is None else max(1, min(200, int((end - time.monotonic()) * 1000)))
                if not poll(wait):
                    continue
                while True:  # drain: stamp each frame as it comes off the socket
                    try:
                        parts = recv(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    t = clock()
                    if len(parts) == 2 and parts[0].bytes == name:
                        yield t, parts[1].bytes
        finally:
            self.unsubscribe(topic)


@dataclass
class RateStats:
    count: int  # messages in the window
    rate_hz: float
    min_s: float
    max_s: float
    std_s: float
    bytes_per_s: float
    mean_bytes: float


class RateWindow:
    """Receive times and sizes of the last ``window`` messages."""

    def __init__(self, window: int = 1000):
        self.times: deque[int] = deque(maxlen=window)
        self.sizes: deque[int] = deque(maxlen=window)

    def add(self, t_ns: int, size: int) -> None:
        self.times.append(t_ns)
        self.sizes.append(size)

    def stats(self) -> RateStats | None:
        if len(self.times) < 2:
            return None
        t = np.array(self.times, dtype=np.int64)
        dt = np.diff(t) * 1e-9
        span = (t[-1] - t[0]) * 1e-9
        sizes = np.array(self.sizes, dtype=np.float64)
        return RateStats(
            len(t),
            (len(t) - 1) / span if span > 0 else float("inf"),
            float(dt.min()),
            float(dt.max()),
            float(dt.std()),
            float(sizes[1:].sum() / span) if span > 0 else float("inf"),
            float(sizes.mean()),
        )


def measure(
    client: TapClient,
    topic: str,
    duration_s: float | None,
    *,
    window: int = 1000,
    report_s: float = 1.0,
    report: Callable[[RateStats], None] | None = None,
) -> RateStats | None:
    """Rate and bandwidth of ``topic`` over the last ``window`` messages; ``report`` every ``report_s``."""
    win = RateWindow(window)
    next_report = time.monotonic() + report_s
    for t, frame in client.frames(topic, duration_s):
        win.add(t, len(frame))
        if report is not None and time.monotonic() >= next_report:
            next_report += report_s
            stats = win.stats()
            if stats is not None:
                report(stats)
    return win.stats()


def decode(frame: bytes) -> Message:
    """A wire frame as a message, its class found from the type tag."""
    tag, sep, payload = frame.partition(SEP)
    if not sep:
        raise TapClientError("a frame without a type tag")
    return message_class(tag.decode().partition("@")[0]).FromString(payload)


def format_message(msg: Message, indent: str = "", width: int = 8) -> str:
    """YAML-like text of a message; ``Array`` fields shown as NumPy values (``width`` per line)."""
    lines = []
    for field, value in msg.ListFields():
        name = f"{indent}{field.name}:"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            lines.append(f"{name} {json.dumps({str(k): str(v) for k, v in value.items()})}")
        elif field.message_type is not None and field.message_type.full_name == Array.DESCRIPTOR.full_name:
            lines.append(f"{name} {_array_text(value)}")
        elif field.message_type is not None and _repeated(field):
            for item in value:
                lines.append(f"{name}\n{format_message(item, indent + '  - ', width)}")
        elif field.message_type is not None:
            lines.append(f"{name}\n{format_message(value, indent + '  ', width)}")
        elif _repeated(field):
            lines.append(f"{name} [{', '.join(_scalar(v, field) for v in value)}]")
        else:
            lines.append(f"{name} {_scalar(value, field)}")
    return "\n".join(lines)


def _repeated(field: Any) -> bool:
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _scalar(value: Any, field: Any) -> str:
    if field.enum_type is not None:
        item = field.enum_type.values_by_number.get(value)
        return item.name if item else str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _array_text(arr: Array) -> str:
    try:
        values = to_numpy(arr)
    except ValueError as exc:
        return f"<bad array: {exc}>"
    body = np.array2string(values, threshold=24, edgeitems=4, max_line_width=10_000, precision=4).replace("\n", "")
    return f"{body}  # {values.dtype}, shape {list(values.shape)}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [header, *rows])
