"""The introspection tap: copies of topics, and a description of the graph, for outside tools.

Opt-in (``tap:`` in a graph file or ``krabgraph launch --tap``). One XPUB socket listens on the tap
endpoint (loopback TCP by default; CURVE-encrypted and client-authenticated when keys are
configured, or when the graph has ``security:``; refused off loopback without them). It belongs to
a gate thread, never to a worker: each worker has an XPUB of its own on an inproc XSUB, and the gate
forwards tapped messages out and checked subscriptions in. The tap is read-only (what a listener
sends never reaches the graph) and bounded: connections, queued messages per listener, subscriptions
held and read per check are capped; floods are cut off and counted (``TapHub``).

Subscriptions travel the other way: a worker reads them from its XPUB when idle and sets a
per-topic flag. Its send path checks the flag and, only when a listener wants the topic, queues a
reference to the bytes it already sent; the queue is flushed when the loop is idle, so the hop
itself pays one list append. A graph without a tap runs the unchanged send path.

Messages on the tap are two frames: the topic name, then the wire frame (``<tag> NUL <payload>``).
The topic ``_tap/graph`` carries JSON describing topics and nodes (name, class, lifecycle state,
counters, parameters and which of them are dynamic) and the control channel's endpoint
(``launch/runtime/control.py``), published 4 times a second while someone subscribes to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import zmq
from zmq.utils import monitor as zmq_monitor

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.endpoints import check_tap
from krabgraph.launch.runtime.security import curve_server, release_auth

if TYPE_CHECKING:
    from krabgraph.launch.api.node import Node
    from krabgraph.launch.graph.declaration import TapSpec
    from krabgraph.launch.graph.model import Graph, NodeSpec

log = logging.getLogger("krabgraph.tap")

INFO_TOPIC = "_tap/graph"
INFO_PERIOD_NS = 250_000_000
CHECK_PERIOD_NS = 10_000_000  # how often an idle worker looks for new subscriptions
BACKLOG = 4096  # tapped messages a worker holds between flushes; more are dropped (counted)
FLUSH_PERIOD_NS = 2_000_000  # an idle worker sends its tapped messages at most this often...
FLUSH_BATCH = 64  # ...or when this many are waiting: fewer wake-ups of the gate and listeners
HWM = 10_000  # messages a worker's inproc XPUB queues for the gate
SNDHWM = 1000  # messages the listening socket queues per listener; more are dropped (ZeroMQ's PUB rule)
SUB_HWM = 100  # subscription messages ZeroMQ holds per listener before it stops reading its connection
SUB_BUDGET = 512  # subscription messages read per check (every CHECK_PERIOD_NS, on the gate's thread)
MAX_SUB_BYTES = 1024  # a longer message to the tap disconnects its sender (topic names are short)
MAX_PREFIXES = 1024  # distinct subscriptions held at once; more are refused (counted)
MAX_CLIENTS = 16  # listeners connected at once; more are cut as they arrive
FLOOD_CHECKS = 10  # checks in a row over budget (100 ms) before every listener is cut off...
FLOOD_LOG_S = 10.0  # a flood is logged at most this often (and counted always)
FLOOD_REFUSED = 64  # ...or this many subscriptions to nothing the tap carries within one check
GATE_BATCH = 1024  # tapped messages the gate forwards per wake-up


class TapError(KrabgraphError):
    """The tap cannot be opened as configured."""


class TapFlag:
    """Whether someone listens to one topic; read by the send path of the worker that owns it."""

    __slots__ = ("on", "topic")

    def __init__(self, topic: str):
        self.topic = topic
        self.on = False


class Subscriptions:
    """The subscriptions the tap's listeners hold, read from an XPUB under a budget and checked.

    Only a prefix of a topic this tap carries (or of ``_tap/graph``; ``""`` is everything) is taken;
    anything else, data sent to the tap (it is read-only: nothing it receives reaches the graph) and
    prefixes over ``MAX_PREFIXES`` are dropped and counted. At most ``SUB_BUDGET`` messages are read
    per call; the rest wait in ZeroMQ, bounded by the socket's receive high-water mark.
    """

    def __init__(self, names: Callable[[], list[bytes]]):
        self.names = names  # every name a listener may want: topic names and INFO_TOPIC
        self.counts: dict[bytes, int] = {}
        self._valid: set[bytes] = set()  # every prefix of every name
        self._known = -1
        self.read = 0
        self.refused = 0  # subscriptions to nothing this tap carries, or over MAX_PREFIXES
        self.ignored = 0  # messages that were not subscriptions (data sent to a read-only tap)
        self.over_budget = 0  # calls that left messages waiting

    def take(self, sock: zmq.Socket, budget: int = 0) -> list[bytes]:
        """Read up to ``budget`` messages; return the changes of the active set (``\\x01p``/``\\x00p``)."""
        changes: list[bytes] = []
        names = self.names()
        if len(names) != self._known:
            self._valid = {name[:i] for name in names for i in range(len(name) + 1)}
            self._known = len(names)
        valid = self._valid
        for _ in range(budget or SUB_BUDGET):
            try:
                event = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return changes
            self.read += 1
            if sock.rcvmore:  # a multi-part message is data, not a subscription: drop every part
                self.ignored += 1
                while sock.rcvmore:
                    sock.recv()
                continue
            kind, prefix = event[:1], event[1:]
            if kind == b"\x01":
                n = self.counts.get(prefix, 0)
                if prefix not in valid or (n == 0 and len(self.counts) >= MAX_PREFIXES):
                    self.refused += 1
                    continue
                self.counts[prefix] = n + 1
                if n == 0:
                    changes.append(event)
            elif kind == b"\x00":
                n = self.counts.get(prefix, 0)
                if n == 1:
                    del self.counts[prefix]
                    changes.append(event)
                elif n > 1:
                    self.counts[prefix] = n - 1
            else:
                self.ignored += 1
        self.over_budget += 1
        return changes

    def wants(self, name: bytes) -> bool:
        return any(name.startswith(p) for p in self.counts)


class WorkerTap:
    """One worker's side of the tap: its XPUB, the flags of its topics and the send backlog."""

    def __init__(self, sock: zmq.Socket, info: Callable[[], bytes] | None = None):
        self.sock = sock
        self.flags: dict[str, TapFlag] = {}
        self.backlog: list[tuple[bytes, bytes]] = []
        self.dropped = 0
        self.info = info  # the main worker also publishes the graph description
        self.info_on = False
        self.subs = Subscriptions(self._names)
        self.hub = _hub_of.get(id(sock))  # the hub whose listening socket or clients this worker looks after
        _worker_taps[id(sock)] = self
        self._next_check = 0
        self._next_info = 0
        self._next_flush = 0

    @property
    def prefixes(self) -> set[bytes]:
        return set(self.subs.counts)

    def _names(self) -> list[bytes]:
        return [INFO_TOPIC.encode(), *(t.encode() for t in self.flags)]

    def flag(self, topic: str) -> TapFlag:
        return self.flags.setdefault(topic, TapFlag(topic))

    def service(self) -> None:
        """Called by an idle worker loop: flush the backlog now and then, read subscriptions."""
        now = time.monotonic_ns()
        if self.backlog and (len(self.backlog) >= FLUSH_BATCH or now >= self._next_flush):
            self.flush()
            self._next_flush = now + FLUSH_PERIOD_NS
        if now < self._next_check:
            return
        self._next_check = now + CHECK_PERIOD_NS
        if self.sock.poll(0):
            self._read_subscriptions()
        if self.info_on and now >= self._next_info:
            self._next_info = now + INFO_PERIOD_NS
            try:
                self.sock.send_multipart([INFO_TOPIC.encode(), self.info()], zmq.NOBLOCK)
            except zmq.Again:
                self.dropped += 1

    def flush(self) -> None:
        send = self.sock.send
        try:
            for topic, data in self.backlog:
                send(topic, zmq.SNDMORE | zmq.NOBLOCK)
                send(data, zmq.NOBLOCK, copy=len(data) < 65536)
        except zmq.Again:  # an XPUB drops at its high-water mark rather than block; this is a safety net
            self.dropped += 1
        self.backlog.clear()

    def _read_subscriptions(self) -> None:
        if not self.subs.take(self.sock):
            return
        for flag in self.flags.values():
            flag.on = self.subs.wants(flag.topic.encode())
        if self.info is not None:
            on = self.subs.wants(INFO_TOPIC.encode())
            if on and not self.info_on:
                self._next_info = 0
            self.info_on = on

    def stats(self) -> dict[str, int]:
        """Counters: subscriptions read, refused and active; messages ignored; backlog drops."""
        out = {
            "read": self.subs.read,
            "refused": self.subs.refused,
            "ignored": self.subs.ignored,
            "over_budget": self.subs.over_budget,
            "active": len(self.subs.counts),
            "dropped": self.dropped,
        }
        if self.hub is not None:
            out |= self.hub.client_stats()
        return out


_hub_of: dict[int, TapHub] = {}  # id(listening socket) -> its hub
_worker_taps: dict[int, WorkerTap] = {}  # id(worker socket) -> its WorkerTap (the gate learns the topics)


class TapHub:
    """The tap's listening socket: bounded, read-only, and (several workers) a gate thread joining it
    to every worker.

    Bounds: at most ``MAX_CLIENTS`` connections (more are cut as they arrive), ``SNDHWM`` queued
    messages per client, subscriptions checked and read under a budget (``Subscriptions``), and a
    listener set that keeps the tap over budget for ``FLOOD_CHECKS`` checks in a row is cut off (all
    connections: ZeroMQ does not say which one floods; well-behaved clients reconnect and
    resubscribe by themselves), so what libzmq holds for them stays bounded too.
    """

    def __init__(self, context: zmq.Context, spec: TapSpec, name: str):
        errors = check_tap(spec)
        if errors:
            raise TapError("\n".join(errors))
        self.context = context
        self.spec = spec
        # The listening socket always has a thread of its own (the gate), even with one worker:
        # libzmq reads a listener's subscriptions inside whichever call touches the socket, as many as
        # arrive meanwhile, so on a worker's thread a flood would stop that worker's loop.
        self.inner = f"inproc://krabgraph-tap/{name}/{id(self)}"
        self.auth: Any = None
        self.backend = context.socket(zmq.XPUB)
        self.backend.linger = 0
        self.backend.sndhwm = SNDHWM
        self.backend.rcvhwm = SUB_HWM
        self.backend.maxmsgsize = MAX_SUB_BYTES  # a longer message (no topic name is that long) cuts its sender off
        self.sockets = [self.backend]
        self.clients: set[int] = set()  # file descriptors of connected listeners
        self.cut = 0  # connections cut: over MAX_CLIENTS, or part of a flood
        self.floods = 0
        self._flood_checks = 0
        self._last_over = self._last_refused = 0
        self._next_flood_log = 0.0
        try:
            if spec.secret_key:
                self._curve()
            self.backend.bind(spec.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise TapError(f"{spec.loc}: tap: cannot listen on {spec.endpoint}: {exc}") from None
        self.endpoint = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.monitor = self.backend.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.sockets.append(self.monitor)
        _hub_of[id(self.backend)] = self
        self.frontend = context.socket(zmq.XSUB)
        self.control = context.socket(zmq.PAIR)
        self._peer = context.socket(zmq.PAIR)
        self.sockets += [self.frontend, self.control, self._peer]
        for sock in self.sockets:
            sock.linger = 0
        self.frontend.bind(self.inner)
        self.control.bind(self.inner + "/control")
        self._peer.connect(self.inner + "/control")
        self.subs = Subscriptions(lambda: self.names)
        self.names: list[bytes] = [INFO_TOPIC.encode()]
        self.forwarded = 0
        self.thread: threading.Thread | None = None

    def _curve(self) -> None:
        self.auth = curve_server(
            self.context, self.backend, self.spec.secret_key, self.spec.clients, where=f"{self.spec.loc}: tap"
        )

    def worker_socket(self) -> zmq.Socket:
        """An XPUB for one worker, joined to the gate (use it on that worker's thread only)."""
        sock = self.context.socket(zmq.XPUB)
        self.sockets.append(sock)
        sock.linger = 0
        sock.sndhwm = HWM
        sock.connect(self.inner)
        return sock

    def start(self) -> None:
        self.names = [INFO_TOPIC.encode()] + [
            t.encode() for s in self.sockets if (w := _worker_taps.get(id(s))) for t in w.flags
        ]
        self.thread = threading.Thread(target=self._run, name="krabgraph-tap", daemon=True)
        self.thread.start()
        log.info("tap open on %s", self.endpoint)

    # -- clients -----------------------------------------------------------------------------
    def service_clients(self, subs: Subscriptions) -> None:
        """Count connections from the monitor, cut those over the cap, and cut everyone when the
        listeners have kept the subscription reader over budget for ``FLOOD_CHECKS`` checks."""
        for _ in range(SUB_BUDGET):
            try:
                event = zmq_monitor.recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            fd = event["value"]
            if event["event"] == zmq.EVENT_ACCEPTED:
                if len(self.clients) >= MAX_CLIENTS:
                    if self._cut(fd):
                        log.warning("tap: refused a listener: already %d connected (the most allowed)", MAX_CLIENTS)
                    continue
                self.clients.add(fd)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.clients.discard(fd)
        over, refused = subs.over_budget, subs.refused
        if over > self._last_over:
            self._flood_checks += 1
        else:
            self._flood_checks = 0
        flood = self._flood_checks >= FLOOD_CHECKS or refused - self._last_refused >= FLOOD_REFUSED
        self._last_over, self._last_refused = over, refused
        if flood and self.clients:
            self.floods += 1
            now = time.monotonic()
            if now < self._next_flood_log:
                for fd in list(self.clients):
                    self._cut(fd)
                self.clients.clear()
                self._flood_checks = 0
                return
            self._next_flood_log = now + FLOOD_LOG_S
            log.warning(
                "tap: subscription flood (over %d per %d ms, or %d+ for topics this graph does not have): "
                "disconnecting all %d listeners (well-behaved ones reconnect); %d refused, %d cut-offs so far "
                "(next report in %g s at the earliest)",
                SUB_BUDGET,
                CHECK_PERIOD_NS // 1_000_000,
                FLOOD_REFUSED,
                len(self.clients),
                refused,
                self.floods,
                FLOOD_LOG_S,
            )
            for fd in list(self.clients):
                self._cut(fd)
            self.clients.clear()
            self._flood_checks = 0

    def _cut(self, fd: int) -> bool:
        """Shut down the connection on ``fd`` if it is one of this tap's (libzmq then drops the peer)."""
        import socket as pysocket

        try:
            conn = pysocket.socket(fileno=os.dup(fd))
        except OSError:
            return False
        try:
            if conn.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_ACCEPTCONN) or not self._ours(conn.getsockname()):
                return False
            conn.shutdown(pysocket.SHUT_RDWR)
            self.cut += 1
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def _ours(self, address: Any) -> bool:
        scheme, _, rest = self.endpoint.partition("://")
        if scheme == "ipc":
            return address in (rest, rest.encode())
        return isinstance(address, tuple) and str(address[1]) == rest.rpartition(":")[2]

    def client_stats(self) -> dict[str, int]:
        return {"clients": len(self.clients), "cut": self.cut, "floods": self.floods}

    # -- gate (several workers) --------------------------------------------------------------
    def _run(self) -> None:
        """Forward workers' tapped messages to the listeners; read, check and pass on subscriptions
        under the budget (the flood never reaches the workers' sockets)."""
        poller = zmq.Poller()
        for sock in (self.frontend, self.backend, self._peer):
            poller.register(sock, zmq.POLLIN)
        next_check = 0
        try:
            while True:
                ready = dict(poller.poll(CHECK_PERIOD_NS // 1_000_000))
                if self._peer in ready:
                    return
                if self.frontend in ready:
                    for _ in range(GATE_BATCH):
                        try:
                            parts = self.frontend.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        try:
                            self.backend.send_multipart(parts, zmq.NOBLOCK, copy=False)
                            self.forwarded += 1
                        except zmq.Again:
                            pass
                now = time.monotonic_ns()
                if now >= next_check:
                    next_check = now + CHECK_PERIOD_NS
                    self.service_clients(self.subs)
                    if self.backend in ready or self.backend.poll(0):
                        for change in self.subs.take(self.backend):
                            self.frontend.send(change)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("tap gate stopped: %s", exc)

    def stop(self) -> None:
        if self.thread is not None:
            self.control.send(b"TERMINATE")
            self.thread.join(timeout=2.0)
            self.thread = None
        self.close()

    def close(self) -> None:
        _hub_of.pop(id(self.backend), None)
        for sock in self.sockets:
            _worker_taps.pop(id(sock), None)
        if getattr(self, "monitor", None) is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.backend.disable_monitor()
        for sock in self.sockets:
            sock.close(linger=0)
        if self.auth is not None:
            release_auth(self.context)
            self.auth = None


class Described(Protocol):
    """What ``describe`` reads of a running graph (``Executor`` is one; a protocol: executor.py imports this module)."""

    graph: Graph
    local: dict[str, NodeSpec]  # the nodes this process runs
    nodes: dict[str, Node]
    failures: list[tuple[str, str, str]]  # (node, where, traceback) per callback error
    restarts: dict[str, int]
    clock: Any  # has now_ns()
    control: Any  # the control channel (``endpoint``), or None


def describe(executor: Described) -> bytes:
    """The JSON published on ``_tap/graph``: topics and nodes with lifecycle state, counters and parameters
    (``dynamic``: those ``krabgraph param set`` may change); ``control``: the control channel's endpoint."""
    graph = executor.graph
    out_counts: dict[str, int] = {}
    for name, spec in executor.local.items():
        outputs = executor.nodes[name].output_ports()
        for port, topic in spec.outputs.items():
            out_counts[topic] = out_counts.get(topic, 0) + outputs[port].count
    topics = [
        {
            "name": t,
            "type": info.msg_type.DESCRIPTOR.full_name if info.msg_type else "",
            "publishers": [f"{n}.{p}" for n, p in info.publishers],
            "subscribers": [f"{n}.{p}" for n, p in info.subscribers],
            "published": out_counts.get(t, 0),
        }
        for t, info in graph.topics.items()
    ]
    errors: dict[str, int] = {}
    for name, *_ in list(executor.failures):
        errors[name] = errors.get(name, 0) + 1
    nodes = []
    for name, spec in executor.local.items():
        node = executor.nodes[name]
        ins, outs = list(node.input_ports().values()), list(node.output_ports().values())
        nodes.append(
            {
                "name": name,
                "class": f"{spec.cls.__module__}:{spec.cls.__qualname__}",
                "kind": spec.cls.kind,
                "state": node.lifecycle,
                "thread": spec.thread,
                "received": sum(p.count for p in ins),
                "published": sum(p.count for p in outs),
                "dropped": sum(p.dropped for p in ins),
                "lost": sum(p.lost for p in ins),
                "errors": errors.get(name, 0),
                "restarts": executor.restarts.get(name, 0),
                "params": json.loads(json.dumps(node.param_values(), default=str)),  # the running values
                "dynamic": type(node).dynamic_params(),
            }
        )
    doc = {
        "graph": graph.name,
        "clock": graph.clock.mode,
        "time_ns": executor.clock.now_ns(),
        "pid": os.getpid(),
        "control": executor.control.endpoint if getattr(executor, "control", None) is not None else "",
        "topics": topics,
        "nodes": nodes,
    }
    return json.dumps(doc).encode()
