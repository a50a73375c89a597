"""Client side of the tap: ``krabgraph topic list|echo|info|hz|bw`` and ``krabgraph node list|info``.

Rates are computed from receive timestamps (taken as each frame comes off the socket, before any
decoding) over a sliding window, so a large message reads at its real rate: nothing is parsed
on the way (ROS 2's ``topic hz`` under-reports large messages because it measures how fast it
can deserialize them).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
import zmq.auth
from google.protobuf.message import DecodeError, Message

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.declaration import DEFAULT_TAP
from krabgraph.launch.runtime.tap import INFO_TOPIC
from krabgraph.launch.runtime.wire import SEP
from krabgraph.msgs.schema import message_class


class TapClientError(KrabgraphError):
    """No graph answered, a topic it does not have, or something a graph would not send."""


MAX_FRAME = 64 << 20  # a larger message from the tap disconnects it (ZeroMQ's MAXMSGSIZE)
MAX_INFO = 16 << 20  # bytes of a graph description
_INFO_TOPIC_KEYS = {"name": str, "type": str, "publishers": list, "subscribers": list, "published": int}
_INFO_NODE_KEYS = {"name": str, "class": str, "kind": str, "state": str, "thread": bool, "received": int,
                   "published": int, "dropped": int, "lost": int, "errors": int, "restarts": int}  # fmt: skip


def parse_info(data: bytes, endpoint: str = "the tap") -> dict:
    """A graph description from the tap, checked: anything else raises ``TapClientError`` (one line)."""
    where = f"the graph on {endpoint} sent a bad description"
    if len(data) > MAX_INFO:
        raise TapClientError(f"{where}: {len(data)} bytes, over {MAX_INFO}")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise TapClientError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise TapClientError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise TapClientError(f"{where}: a JSON {type(doc).__name__}, not an object")
    for key, kind in (("graph", str), ("topics", list), ("nodes", list), ("time_ns", int)):
        if not isinstance(doc.get(key), kind) or (isinstance(doc.get(key), bool) and kind is int):
            raise TapClientError(f"{where}: {key!r} missing or not a {kind.__name__}")
    for section, keys in (("topics", _INFO_TOPIC_KEYS), ("nodes", _INFO_NODE_KEYS)):
        for i, entry in enumerate(doc[section]):
            if not isinstance(entry, dict):
                raise TapClientError(f"{where}: {section}[{i}] is not an object")
            for key, kind in keys.items():
                value = entry.get(key)
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise TapClientError(f"{where}: {section}[{i}].{key} missing or not a {kind.__name__}")
                if kind is list and not all(isinstance(v, str) for v in value):
                    raise TapClientError(f"{where}: {section}[{i}].{key} holds something other than strings")
            if "params" in entry and not isinstance(entry["params"], dict):
                raise TapClientError(f"{where}: {section}[{i}].params is not an object")
    return doc


class TapClient:
    """A SUB socket on a graph's tap. ``server_key``/``key``: CURVE certificate files."""

    def __init__(self, endpoint: str = DEFAULT_TAP, *, server_key: str = "", key: str = "", timeout_s: float = 3.0):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = 100_000
        self.sock.maxmsgsize = MAX_FRAME
        if server_key or key:
            if not (server_key and key):
                raise TapClientError("CURVE needs both --server-key (the graph's public key) and --key (yours)")
            try:
                server_public, _ = zmq.auth.load_certificate(server_key)
                public, secret = zmq.auth.load_certificate(key)
            except (OSError, ValueError) as exc:
                self.close()
                raise TapClientError(f"cannot read a CURVE certificate: {exc}") from None
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
                parts = self.sock.recv_multipart()
                if len(parts) == 2 and parts[0] == INFO_TOPIC.encode():
                    return parse_info(parts[1], self.endpoint)
        finally:
            self.unsubscribe(INFO_TOPIC)
        raise TapClientError(
            f"no graph answered on {self.endpoint} within {self.timeout_s:g} s "
            "(start one with `krabgraph launch GRAPH --tap`, or give its endpoint with --tap)"
        )

    def graph_infos(self, wall_s: float) -> list[dict]:
        """Every graph description published over ``wall_s`` seconds (4 a second), at least one."""
        first = self.graph_info()
        infos = [first]
        self.subscribe(INFO_TOPIC)
        try:
            end = time.monotonic() + wall_s
            while (left := end - time.monotonic()) > 0:
                if not self.sock.poll(int(left * 1000) + 1):
                    break
                parts = self.sock.recv_multipart()
                if len(parts) == 2 and parts[0] == INFO_TOPIC.encode():
                    infos.append(parse_info(parts[1], self.endpoint))
        finally:
            self.unsubscribe(INFO_TOPIC)
        return infos

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


def topic_info(infos: list[dict], topic: str) -> dict:
    """``krabgraph topic info``: type, publishers, subscribers, messages published and, from the
    published counter over the descriptions ``infos`` (oldest first), the rate per second of graph time."""
    entries = [next((t for t in info["topics"] if t["name"] == topic), None) for info in infos]
    last = entries[-1]
    if last is None:
        names = ", ".join(sorted(t["name"] for t in infos[-1]["topics"]))
        raise TapClientError(f"graph {infos[-1]['graph']!r} has no topic {topic!r}; topics: {names}")
    out = {
        "topic": topic,
        "type": last["type"] or "any",
        "publishers": last["publishers"],
        "subscribers": last["subscribers"],
        "published": last["published"],
        "rate_hz": None,
    }
    first = next((i, e) for i, e in zip(infos, entries, strict=True) if e is not None)
    span_ns = infos[-1]["time_ns"] - first[0]["time_ns"]
    if span_ns > 0 and last["publishers"]:
        out["rate_hz"] = round((last["published"] - first[1]["published"]) / (span_ns * 1e-9), 3)
    return out


def node_info(info: dict, name: str) -> dict:
    """``krabgraph node info``: class, kind, state, counters, parameters and ports with their topics.

    Parameter values are the running node's, as the tap publishes them.
    """
    node = next((n for n in info["nodes"] if n["name"] == name), None)
    if node is None:
        names = ", ".join(sorted(n["name"] for n in info["nodes"]))
        raise TapClientError(f"graph {info['graph']!r} has no node {name!r}; nodes: {names}")
    ports: dict[str, dict[str, dict]] = {"inputs": {}, "outputs": {}}
    for t in info["topics"]:
        for key, who in (("inputs", "subscribers"), ("outputs", "publishers")):
            for ref in t[who]:
                node_name, _, port = ref.rpartition(".")
                if node_name == name:
                    ports[key].setdefault(port, {"topic": t["name"], "type": t["type"].removeprefix("krabgraph.msgs.")})
    counters = ("received", "published", "dropped", "lost", "errors", "restarts")
    return {
        "node": name,
        "class": node["class"],
        "kind": node["kind"],
        "state": node["state"],
        "thread": node["thread"],
        "counters": {k: node[k] for k in counters},
        "params": node.get("params", {}),
        "dynamic": _strings(node.get("dynamic")),  # the params `krabgraph param set` may change
        **ports,
    }


def _strings(value: Any) -> list[str]:
    """The strings of a list from a graph description (anything else: none)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _frame_class(tag: bytes) -> type[Message] | None:
    """The message class a frame's tag names: a krabgraph.msgs type, or a class of a module this
    program has imported already; never imports what a frame names (a tap is not trusted to)."""
    try:
        name = tag.decode().partition("@")[0]
    except UnicodeDecodeError:
        return None
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(sys.modules.get(module), attr, None) if module in sys.modules else None
    else:
        try:
            cls = message_class(name)
        except (KeyError, ImportError, AttributeError, ValueError):
            return None
    return cls if isinstance(cls, type) and issubclass(cls, Message) else None


def decode(frame: bytes) -> Message:
    """A wire frame as a message, its class found from the type tag; ``TapClientError`` if it is not one."""
    tag, sep, payload = frame.partition(SEP)
    if not sep:
        raise TapClientError("a frame without a type tag")
    shown = tag[:80].decode("utf-8", "replace")
    cls = _frame_class(tag)
    if cls is None:
        raise TapClientError(f"a frame with an unknown type tag {shown!r}")
    try:
        return cls.FromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise TapClientError(f"a {shown} frame whose payload does not parse ({exc or type(exc).__name__})") from None


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [header, *rows])
