"""The single-process executor: one ``zmq.Context``, one inproc PUB/SUB endpoint per topic.

Nodes run on the main thread by default, in one event loop whose dispatch order is fixed (messages
in publish order, subscribers in graph order, timers by deadline, then the node's place in the graph
file, then creation order within the node), so the same inputs give the same outputs, whatever
observers are added. A node marked ``thread: true`` runs its own loop on its own thread.
"""

from __future__ import annotations

import heapq
import logging
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
from google.protobuf.message import DecodeError, Message

from krabgraph.launch.api.context import NodeContext
from krabgraph.launch.api.errors import KrabgraphError, WireError
from krabgraph.launch.api.node import Node, Timer
from krabgraph.launch.api.ports import InputPort, RawMessage
from krabgraph.launch.runtime.clock import SimClock, TopicClock, WallClock
from krabgraph.launch.runtime.tap import BACKLOG as TAP_BACKLOG
from krabgraph.launch.runtime.tap import TapFlag, TapHub, WorkerTap, describe
from krabgraph.launch.runtime.wire import VIEW_BYTES, Decoder, RawDecoder
from krabgraph.launch.runtime.wire import prefix as wire_prefix
from krabgraph.msgs import Clock

if TYPE_CHECKING:
    from krabgraph.launch.graph.model import Graph

log = logging.getLogger("krabgraph.executor")

MAX_WAIT_S = 0.05  # longest a loop blocks before it looks at the stop flag again
SPIN_S = 200e-6  # busy-wait this long before a timer deadline (wall clock) for precise firing
YIELD_EVERY_NS = 1_000_000  # spinning with only service threads alive: yield the GIL and serve the tap this often
SUB_MS_STEP_NS = 100_000  # with other threads, sub-millisecond waits sleep in steps this long, polling between
MAX_RESTARTS = 3
HWM = 10_000
# Inputs fed from other threads or processes (a foreign publisher can flood these): each holds at
# most POLLED_HWM messages (ZMQ RCVHWM; a queued input twice its queue if more), and one loop pass
# reads at most READ_BUDGET of them, then timers due and other inputs get their turn. So input
# traffic delays a timer by at most one pass (READ_BUDGET reads per flooded input, ~0.3-1 ms).
POLLED_HWM = 1000
READ_BUDGET = 256
NOBLOCK = zmq.NOBLOCK
STALL_PASSES = 100_000  # lockstep loop passes (deliveries, timer firings) at one graph time: a livelock
JOIN_S, HURRY_JOIN_S = 2.0, 0.25  # how long shutdown waits for each node thread (after a second signal)
DRAIN_S = 0.1  # longest one shutdown drain delivers (a flood keeps sockets readable forever)


def endpoint(topic: str, worker: int | str) -> str:
    """The inproc address of a topic's publisher socket on one worker (``"ext"``: from outside)."""
    return f"inproc://krabgraph{topic if topic.startswith('/') else '/' + topic}#{worker}"


@dataclass(eq=False, slots=True)
class Subscription:
    """One input port's SUB socket and how its messages are decoded and delivered."""

    node: Node
    port: InputPort
    topic: str
    socket: zmq.Socket
    decoder: Decoder
    polled: bool  # fed from another thread: watched by the poller, not the ready queue
    pending: int = 0  # same-thread messages sent but not yet read (exact, so no failing recv)
    last_seq: int = 0
    fast: bool = False  # same-thread and latest-only: dispatched by the short path
    deferred: int = 0  # passes that read READ_BUDGET messages and left more for the next pass
    errors: dict[str, int] = field(default_factory=dict)
    recv: Callable[[int], bytes] = field(init=False, repr=False)  # the socket's, bound once for the short path
    # The short path parses a typed frame itself (one Python call less): the tag it must start with,
    # its length and the parser; ``parse`` is None for raw inputs, which always go through the decoder.
    tag: bytes = field(init=False, repr=False)
    tag_len: int = field(init=False, repr=False)
    parse: Callable[[bytes], Message] | None = field(init=False, repr=False)
    now_ns: Callable[[], int] | None = field(init=False, repr=False)  # the node's graph clock, for the short path

    def __post_init__(self) -> None:
        self.recv = self.socket.recv
        self.now_ns = None if self.node is None else self.node.now_ns
        plain = type(self.decoder) is Decoder
        self.tag, self.tag_len = self.decoder.expected, self.decoder.n
        self.parse = self.decoder.parse if plain else None


@dataclass
class TimerStats:
    fired: int = 0
    missed: int = 0  # deadlines skipped because a callback overran (wall clock)
    max_late_ns: int = 0


class Worker:
    """An event loop over a set of nodes; the main thread's worker or one per threaded node."""

    def __init__(self, executor: Executor, index: int, nodes: list[Node]):
        self.executor = executor
        self.index = index
        self.nodes = nodes
        self.ready: deque[Subscription] = deque()
        # heap of (due_ns, rank, order, timer): the order Timer defines, compared in C (no Python
        # __lt__ per comparison); an entry is replaced whenever its timer's deadline moves
        self.timers: list[tuple[int, int, int, Timer]] = []
        self.poller = zmq.Poller()
        self.by_socket: dict[zmq.Socket, Subscription] = {}
        self.thread: threading.Thread | None = None
        self.timer_stats: dict[Timer, TimerStats] = {}
        self.tap: WorkerTap | None = None  # set when the graph has a tap
        self.control: Any = None  # with the tap: the control channel (main worker) or this worker's inbox

    # -- wiring ------------------------------------------------------------------------------
    def add_polled(self, sub: Subscription) -> None:
        self.poller.register(sub.socket, zmq.POLLIN)
        self.by_socket[sub.socket] = sub

    def add_timer(self, timer: Timer) -> None:
        heapq.heappush(self.timers, (timer.due_ns, timer.rank, timer.order, timer))
        self.timer_stats[timer] = TimerStats()

    # -- dispatch ----------------------------------------------------------------------------
    def dispatch(self, sub: Subscription) -> None:
        """Read what is pending on ``sub`` and deliver it by the port's policy (latest or queue)."""
        if sub.fast and sub.pending == 1 and sub.node.lifecycle == "active":
            # The hot path: one same-thread message for a latest-only input. Nothing can be lost
            # between a same-thread send and this read, so no sequence-gap check is needed here.
            sub.pending = 0
            frame = sub.recv(NOBLOCK)
            parse = sub.parse
            try:
                if parse is not None and len(frame) < VIEW_BYTES and frame.startswith(sub.tag):
                    msg = parse(frame[sub.tag_len :])  # Decoder.decode, inlined for a small typed frame
                else:
                    msg = sub.decoder.decode(frame)
            except (WireError, DecodeError) as exc:
                self._refuse(sub, frame, exc)
                return
            # InputPort.deliver, inlined: one Python call less per message
            port = sub.port
            port.latest = msg
            port.received_ns = sub.now_ns()
            port.count += 1
            callback = port._callback
            if callback is not None:
                try:
                    callback(msg)
                except Exception as exc:
                    self.executor.node_failed(sub.node, port.spec.name, exc)
            return
        port = sub.port
        frames = self._read(sub)
        if not frames:
            return
        if sub.node.lifecycle != "active":
            port.dropped += len(frames)
            return
        msgs = []  # newest last
        if port.spec.queue == 0:
            for i in range(len(frames) - 1, -1, -1):  # newest first: decode only what is delivered
                msg = self._decode(sub, frames[i])
                if msg is not None:
                    port.dropped += i
                    self._track_seq(sub, msg, i)
                    msgs = [msg]
                    break
        else:
            for frame in frames:
                msg = self._decode(sub, frame)
                if msg is not None:
                    self._track_seq(sub, msg, 0)
                    msgs.append(msg)
            overflow = len(msgs) - port.spec.queue
            if overflow > 0:
                port.dropped += overflow
                msgs = msgs[overflow:]
        for msg in msgs:
            if sub.node.lifecycle != "active":
                port.dropped += 1
                continue
            self._call(sub.node, port.deliver, msg, port.spec.name)

    def _refuse(self, sub: Subscription, frame: bytes, exc: Exception) -> None:
        """Count and report a frame the short path could not decode (the decoder words the error)."""
        if not isinstance(exc, WireError):  # the inlined parse failed: let the decoder say why
            try:
                sub.decoder.decode(frame)
            except WireError as wire:
                exc = wire
            else:  # cannot happen (the same bytes, the same parser); report what was raised
                exc = WireError("payload", f"malformed {sub.decoder.name} payload: {exc}")
        sub.port.dropped += 1
        self.executor.report_wire_error(sub, exc)

    def _read(self, sub: Subscription) -> list[bytes]:
        recv = sub.socket.recv
        if not sub.polled:
            n, sub.pending = sub.pending, 0
            return [recv(zmq.NOBLOCK) for _ in range(n)]
        # Other threads or processes: read until empty, or READ_BUDGET messages (the rest waits for
        # the next pass, after due timers); refuse multi-frame messages whole.
        frames = []
        recv_multipart = sub.socket.recv_multipart
        for _ in range(READ_BUDGET):
            try:
                parts = recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return frames
            if len(parts) == 1:
                frames.append(parts[0])
            else:
                sub.port.dropped += 1
                err = WireError("frames", f"malformed message: {len(parts)} frames, expected 1")
                self.executor.report_wire_error(sub, err)
        if sub.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            sub.deferred += 1
            if sub.deferred == 1:
                log.warning(
                    "input %s.%s (topic %s) has over %d messages waiting: reading %d per loop pass so timers "
                    "keep their period (a flood? further passes are counted)",
                    sub.node.name, sub.port.spec.name, sub.topic, READ_BUDGET, READ_BUDGET,
                )  # fmt: skip
        return frames

    def _decode(self, sub: Subscription, frame: bytes) -> Message | None:
        try:
            return sub.decoder.decode(frame)
        except WireError as exc:
            sub.port.dropped += 1
            self.executor.report_wire_error(sub, exc)
            return None

    def _track_seq(self, sub: Subscription, msg: Message, skipped: int) -> None:
        seq = msg.header.seq
        if sub.last_seq and seq > sub.last_seq + 1 + skipped:
            sub.port.lost += seq - sub.last_seq - 1 - skipped
        sub.last_seq = seq

    def _call(self, node: Node, fn: Callable[..., Any], arg: Any, what: str) -> None:
        try:
            if arg is None:
                fn()
            else:
                fn(arg)
        except Exception as exc:
            self.executor.node_failed(node, what, exc)

    def fire_due(self, now_ns: int, clock_mode: str) -> bool:
        """Fire the earliest timer if due; True if one fired (or a cancelled one was dropped)."""
        timers = self.timers
        timer = timers[0][3]
        if timer.cancelled:
            heapq.heappop(timers)
            self.timer_stats.pop(timer, None)
            return True
        due = timer.due_ns
        if due > now_ns:
            return False
        late = now_ns - due
        stats = self.timer_stats[timer]
        if late > stats.max_late_ns:
            stats.max_late_ns = late
        stats.fired += 1
        timer.count += 1
        period = timer.period_ns
        if clock_mode == "wall" and late >= period:
            skipped = late // period
            stats.missed += skipped
            due += skipped * period
        due += period
        timer.due_ns = due
        heapq.heapreplace(timers, (due, timer.rank, timer.order, timer))
        node = timer.node
        if node.lifecycle == "active":
            try:
                timer.callback()
            except Exception as exc:  # the name is built only here: no string per firing
                self.executor.node_failed(node, f"timer {timer.name}", exc)
        return True

    def poll(self, timeout_ms: int) -> None:
        if not self.by_socket:
            if timeout_ms > 0:
                time.sleep(timeout_ms / 1000)
            return
        for sock, _ in self.poller.poll(timeout_ms):
            self.ready.append(self.by_socket[sock])

    def drain(self) -> None:
        """Deliver everything pending, including cross-thread messages (used at shutdown); at most
        ``DRAIN_S`` (a flooded input always has more)."""
        deadline = time.monotonic() + DRAIN_S
        for _ in range(1000):
            if time.monotonic() > deadline:
                return
            self.poll(0)
            if not self.ready:
                return
            while self.ready:
                self.dispatch(self.ready.popleft())

    # -- loops -------------------------------------------------------------------------------
    def serve_outside(self) -> bool:
        """An idle pass with a tap: its subscriptions and backlog, then the control channel's requests
        (none on a watch-only tap); True if a request made something ready to dispatch."""
        self.tap.service()
        if self.control is None:
            return False
        self.control.service()
        return bool(self.ready)

    def run_realtime(self) -> None:
        """Loop for wall and topic clocks: dispatch, fire due timers, otherwise wait."""
        ex = self.executor
        clock = ex.clock
        ready, timers = self.ready, self.timers
        dispatch, take, fire_due, now_ns, wait = self.dispatch, ready.popleft, self.fire_due, clock.now_ns, self.wait
        mode = clock.mode
        spin_ns = int(SPIN_S * 1e9) if mode == "wall" else 0
        max_wait_ns = int(MAX_WAIT_S * 1e9)
        tap = self.tap
        no_sockets = not self.by_socket
        others = threading.active_count  # > 1: another Python thread (a worker, the tap's gate, a recorder's writer...)
        service_only = not ex.threaded  # other threads, if any, are service threads that mostly wait on sockets
        waited = 0
        while not ex.stopping:
            if ready:
                dispatch(take())
                continue
            now = now_ns()
            if timers:
                due, _, _, head = timers[0]
                if head.cancelled or due <= now:
                    fire_due(now, mode)  # fires it (or drops it, cancelled)
                    continue
                wait_ns = due - now if mode == "wall" and due - now < max_wait_ns else max_wait_ns
            else:
                wait_ns = max_wait_ns
            # Under a millisecond to go and nothing to poll: spin as a bare loop. Service threads (the
            # tap's gate...) get the GIL, and the tap and control channel their turn, once per
            # YIELD_EVERY_NS: doing that (or counting threads, a lock) on every pass costs each hop
            # and each timer microseconds. Other workers get it on every pass.
            if no_sockets and service_only and wait_ns - spin_ns < 1_000_000:
                if now - waited < YIELD_EVERY_NS:
                    if wait_ns <= spin_ns:  # the last stretch to the head timer's ``due``: on the clock alone,
                        while now_ns() < due:  # as a bare loop (nothing can arrive: no sockets, no other worker)
                            pass
                    continue
                waited = now
                if others() == 1:
                    continue  # alone: nothing to yield to
            if tap is not None and self.serve_outside():
                continue  # a control request published or delivered something
            wait(wait_ns, spin_ns)

    def wait(self, wait_ns: int, spin_ns: int) -> None:
        """Wait up to ``wait_ns`` for messages, blocking for all but the last ``spin_ns``.

        As a bare sleep-then-spin loop does: block (zmq_poll, or sleep without polled inputs) for
        the whole milliseconds that fit before the spin window, then spin, polling for messages on
        each pass. Blocking releases the GIL, so other threads run meanwhile. While another Python
        thread lives, a spin pass that comes here releases the GIL too (a pure-Python spin would
        starve it until CPython's 5 ms forced switch): a yield where the others are service threads
        that mostly wait on sockets (the tap's gate, a recorder's writer, DDS, ZAP; ``run_realtime``
        then comes here once per ``YIELD_EVERY_NS``), and sub-millisecond sleeps in
        ``SUB_MS_STEP_NS`` steps where other workers run nodes and need the core (every pass).
        """
        block_ns = wait_ns - spin_ns
        if block_ns >= 1_000_000:
            self.poll(block_ns // 1_000_000)
            return
        self.poll(0)
        if threading.active_count() > 1:
            if self.executor.threaded:
                time.sleep(min(block_ns, SUB_MS_STEP_NS) / 1e9 if block_ns > 0 else 0)
            else:
                time.sleep(0)

    def run_lockstep(self) -> None:
        """Loop for the sim clock: when nothing is pending, jump time to the next deadline."""
        ex = self.executor
        clock: SimClock = ex.clock
        ready, timers = self.ready, self.timers
        dispatch, take, fire_due = self.dispatch, ready.popleft, self.fire_due
        rtf = clock.real_time_factor
        wall0, sim0 = time.monotonic_ns(), clock.t_ns
        tap = self.tap
        passes, t_mark = 0, clock.t_ns  # livelock guard: graph time must move every STALL_PASSES passes
        while not ex.stopping:
            passes += 1
            if passes >= STALL_PASSES:
                if clock.t_ns == t_mark:
                    _stop_stalled(self, passes)
                    break
                passes, t_mark = 0, clock.t_ns
            if ready:
                dispatch(take())
                continue
            if tap is not None and self.serve_outside():
                continue  # a control request published or delivered something
            if not timers:
                log.warning("lockstep graph has no timers left: nothing can happen any more, stopping")
                ex.stop(0)
                break
            due, _, _, head = timers[0]
            if rtf and not head.cancelled:
                target = wall0 + int((due - sim0) / rtf)
                while not ex.stopping and (delay := target - time.monotonic_ns()) > 0:
                    self.poll(min(delay, int(MAX_WAIT_S * 1e9)) // 1_000_000)
                    if delay < 1_000_000:
                        break
            if due > clock.t_ns and not head.cancelled:
                clock.t_ns = due
            fire_due(clock.t_ns, "sim")


def _stop_stalled(worker: Worker, passes: int) -> None:
    """Stop a lockstep graph whose clock no longer moves (a zero-delay publish cycle, a zero-period timer)."""
    pending = sorted({f"{sub.topic} -> {sub.node.name}" for sub in worker.ready})
    due = [t for *_, t in worker.timers if not t.cancelled and t.due_ns <= worker.executor.clock.t_ns]
    busy = sorted({f"{t.node.name}.{t.name} (period {t.period_ns} ns)" for t in due})
    log.error(
        "lockstep graph stalled: %d deliveries and timer firings without graph time moving from %.6f s "
        "(pending: %s; due timers: %s); a zero-delay publish cycle or a zero-period timer livelocks the "
        "graph (`krabgraph check` finds cycles unless an input wrongly declares triggers=False); stopping",
        passes,
        worker.executor.clock.t_ns * 1e-9,
        ", ".join(pending) or "none",
        ", ".join(busy) or "none",
    )
    worker.executor.stop(1)


class Executor:
    """Runs a validated graph: builds nodes and sockets, configures, activates, loops, shuts down."""

    def __init__(self, graph: Graph, *, context: zmq.Context | None = None, process: str | None = None):
        """``process``: run only that process's nodes of a multi-process graph (None: every node)."""
        self.graph = graph
        if process is not None and process not in graph.processes:
            known = ", ".join(graph.processes)
            raise KrabgraphError(f"graph {graph.name!r} has no process {process!r} (processes: {known})")
        self.process = process
        self._lock_file = None  # this process's instance lock (multi-process graphs), released at shutdown
        if process is not None:
            from krabgraph.launch.runtime.transport import claim

            self._lock_file = claim(graph, process)  # before anything binds: refuse a second copy
        try:
            self._setup(context)
        except BaseException:
            if self._lock_file is not None:
                self._lock_file.release()
            raise

    def _setup(self, context: zmq.Context | None) -> None:
        """Build the nodes, workers, tap and sockets (``__init__`` after the lock)."""
        graph, process = self.graph, self.process
        self.context = context or zmq.Context()
        self._own_context = context is None
        self.stopping = False
        self.hurry = False  # a second stop signal: shorter waits at shutdown
        self.exit_code = 0
        self.restarts: dict[str, int] = {}
        self.failures: list[tuple[str, str, str]] = []  # (node, where, traceback)
        self._wire_logged: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._ipc_files: list[str] = []  # ipc endpoints this process bound (removed at shutdown)
        self._auth = 0  # how many holds this executor has on the context's ZAP authenticator

        cfg = graph.clock
        if cfg.mode == "sim":
            self.clock: Any = SimClock(cfg.real_time_factor)
        elif cfg.mode == "topic":
            self.clock = TopicClock(cfg.topic)
        else:
            self.clock = WallClock()

        self.local = {n: s for n, s in graph.nodes.items() if process is None or s.process == process}
        self.nodes: dict[str, Node] = {}
        rank = {name: i for i, name in enumerate(graph.nodes)}  # the whole file's order, in every process
        for name, spec in self.local.items():
            self.nodes[name] = spec.cls(name=name, **spec.params)

        threaded = [n for n, s in self.local.items() if s.thread and self.clock.mode != "sim"]
        main_nodes = [self.nodes[n] for n in self.local if n not in threaded]
        self.workers = [Worker(self, 0, main_nodes)]
        self.workers += [Worker(self, i + 1, [self.nodes[n]]) for i, n in enumerate(threaded)]
        self.worker_of = {node.name: w for w in self.workers for node in w.nodes}
        for name, node in self.nodes.items():  # the node's one handle on this executor
            schedule = self.worker_of[name].add_timer
            node.attach(NodeContext(self.clock, rank=rank[name], schedule=schedule, stop=self.stop))
        self.threaded = len(self.workers) > 1
        self.sockets: list[zmq.Socket] = []
        self.subscriptions: list[Subscription] = []
        self.tap: TapHub | None = None
        self.control: Any = None  # the control channel, opened with the tap (launch/runtime/control.py)
        if graph.decl.tap is not None and process in (None, next(iter(graph.processes))):
            self.tap = TapHub(self.context, graph.decl.tap, graph.name)
            for worker in self.workers:
                sock = self.tap.worker_socket()
                worker.tap = WorkerTap(sock, (lambda: describe(self)) if worker.index == 0 else None)
        self._wire()
        if self.tap is not None and graph.decl.tap.control:
            self._open_control()

    def _open_control(self) -> None:
        """The control channel next to the tap (its keys, its loopback rule); the tap closes if it fails."""
        from krabgraph.launch.runtime.control import ControlChannel

        try:
            self.control = ControlChannel(self, self.graph.decl.tap, lambda topic: endpoint(topic, "ext"))
        except BaseException:
            self.tap.close()
            raise

    # -- wiring ------------------------------------------------------------------------------
    def _socket(self, kind: int) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.linger = 0
        self.sockets.append(sock)
        return sock

    def _wire(self) -> None:
        graph = self.graph
        publishers: dict[str, list[tuple[str, str]]] = {}
        for name, spec in self.local.items():
            for port, topic in spec.outputs.items():
                publishers.setdefault(topic, []).append((name, port))
            for port, topics in spec.raw_outputs.items():
                for topic in topics:
                    publishers.setdefault(topic, []).append((name, port))
        subscribers: dict[str, list[tuple[str, str]]] = {}
        for name, spec in self.local.items():
            for port, topic in spec.inputs.items():
                subscribers.setdefault(topic, []).append((name, port))
            for port, topics in spec.raw_inputs.items():
                for topic in topics:
                    subscribers.setdefault(topic, []).append((name, port))
        if isinstance(self.clock, TopicClock):
            subscribers.setdefault(self.clock.topic, []).append(("", "clock"))

        # One PUB socket per (topic, publishing worker).
        pub_sockets: dict[tuple[str, int], zmq.Socket] = {}
        for topic, pubs in publishers.items():
            for name, _ in pubs:
                key = (topic, self.worker_of[name].index)
                if key not in pub_sockets:
                    sock = self._socket(zmq.PUB)
                    sock.sndhwm = HWM
                    sock.bind(endpoint(topic, key[1]))
                    pub_sockets[key] = sock
        remote = self._wire_exports(pub_sockets) if self.process is not None else {}

        local_subs: dict[tuple[str, int], list[Subscription]] = {}
        for topic, subs in subscribers.items():
            pub_workers = {self.worker_of[n].index for n, _ in publishers.get(topic, [])}
            info = graph.topics.get(topic)
            external = info is not None and info.external
            for name, port in subs:
                if name == "":  # the executor's own Clock subscription (topic clock)
                    worker, node, inport = self.workers[0], None, None
                else:
                    node = self.nodes[name]
                    worker, inport = self.worker_of[name], node.input_ports()[port]
                polled = pub_workers != {worker.index} or node is None or external or topic in remote
                sock = self._socket(zmq.SUB)
                sock.rcvhwm = _input_hwm(inport) if polled else HWM  # same thread: `pending` counts exactly
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                for w in sorted(pub_workers):
                    sock.connect(endpoint(topic, w))
                if external:
                    sock.connect(endpoint(topic, "ext"))
                if topic in remote:
                    self._connect_remote(sock, remote[topic])
                if inport is not None and inport.spec.raw:
                    decoder: Decoder = RawDecoder(topic, info.msg_type if info else None)
                else:
                    decoder = Decoder(Clock if node is None else inport.spec.msg_type)
                sub = Subscription(node, inport, topic, sock, decoder, polled)
                sub.fast = not polled and inport is not None and inport.spec.queue == 0
                if node is None:
                    sub.node, sub.port = _clock_sink(self.clock)
                self.subscriptions.append(sub)
                if polled:
                    worker.add_polled(sub)
                else:
                    local_subs.setdefault((topic, worker.index), []).append(sub)

        for name, spec in self.local.items():
            worker, outputs = self.worker_of[name], self.nodes[name].output_ports()
            for port, topic in spec.outputs.items():
                sock, out = pub_sockets[(topic, worker.index)], outputs[port]
                head = wire_prefix(out.spec.msg_type)
                local = local_subs.get((topic, worker.index), [])
                flag = worker.tap.flag(topic) if worker.tap is not None else None
                out.bind(
                    _sender(sock, head, worker.ready, local, flag, worker.tap),
                    _listened(graph, topic, self.clock),
                    flag,
                )
                out.topics = {topic: out.spec.msg_type}
            for port, topics in spec.raw_outputs.items():
                out, senders = outputs[port], {}
                for topic in topics:
                    local = local_subs.get((topic, worker.index), [])
                    flag = worker.tap.flag(topic) if worker.tap is not None else None
                    senders[topic] = _sender(
                        pub_sockets[(topic, worker.index)], b"", worker.ready, local, flag, worker.tap
                    )
                    info = graph.topics.get(topic)
                    out.topics[topic] = info.msg_type if info is not None else None
                out.bind(_raw_sender(f"{name}.{port}", senders))

        # Let every PUB process its pending subscriptions before the first publish.
        for sock in pub_sockets.values():
            sock.getsockopt(zmq.EVENTS)

    def _wire_exports(self, pub_sockets: dict[tuple[str, int], zmq.Socket]) -> dict[str, list[tuple[str, str]]]:
        """Multi-process: bind this process's exported topics; return topic -> [(remote endpoint,
        the process publishing there)].

        The PUB socket a topic already has also binds its ipc/tcp endpoint (CURVE server on tcp
        when the graph has keys: this process's own key with per-process ``keys``, else the
        graph's), so a cross-process subscriber costs the publisher nothing extra. The ipc
        directory is created, or checked, private (``security.private_dir``) right before binding.
        """
        from krabgraph.launch.graph.endpoints import ipc_dir, plan
        from krabgraph.launch.graph.keyfiles import process_secret
        from krabgraph.launch.runtime.security import private_dir

        graph, me = self.graph, self.process
        hosts = {n: p.host for n, p in graph.processes.items()}
        curve = graph.decl.curve
        if curve is not None and curve.keys:  # another host may hold only the public halves; this one needs its own
            from krabgraph.launch.graph.keyfiles import secret_key_problem

            problem = secret_key_problem(process_secret(curve, me), f"{curve.loc}: security.curve.keys.{me}")
            if problem:
                raise KrabgraphError(problem)
        remote: dict[str, list[tuple[str, str]]] = {}
        for (topic, proc), exp in plan(graph).items():
            if proc != me:
                reads = any(topic in _topics_in(s) for s in self.local.values())
                if reads or (isinstance(self.clock, TopicClock) and topic == self.clock.topic):
                    remote.setdefault(topic, []).append((exp.for_host(hosts[me], hosts[proc]), proc))
                continue
            socks = [sock for (t, _), sock in sorted(pub_sockets.items(), key=lambda kv: kv[0][1]) if t == topic]
            if len(socks) != 1:
                raise KrabgraphError(
                    f"topic {topic!r} is published from {len(socks)} threads of process {me!r} and read in "
                    "another process: publish it from one thread"
                )
            sock = socks[0]
            if exp.ipc:
                private_dir(ipc_dir())  # not mkdir(exist_ok): another account's directory is refused
                sock.bind(exp.ipc)
                self._ipc_files.append(exp.ipc.removeprefix("ipc://"))
            if exp.tcp:
                if curve is not None:
                    from krabgraph.launch.runtime.security import curve_server

                    curve_server(self.context, sock, process_secret(curve, me), curve.clients, domain="krabgraph",
                                 where=f"{curve.loc}: security")  # fmt: skip
                    self._auth += 1
                try:
                    sock.bind(exp.tcp)
                except zmq.ZMQError as exc:
                    raise KrabgraphError(
                        f"process {me!r}: cannot listen on {exp.tcp} for topic {topic!r}: {exc} "
                        "(another graph on this port? change base_port)"
                    ) from None
            log.info("process %s: topic %s exported on %s", me, topic, " ".join(x for x in (exp.ipc, exp.tcp) if x))
        return remote

    def _connect_remote(self, sock: zmq.Socket, endpoints: list[tuple[str, str]]) -> None:
        """Connect a SUB to other processes' publishers (``(endpoint, publishing process)``): ipc
        first, then tcp as a CURVE client when the graph has keys.

        Publish permission: each tcp connection pins the public key of the process that publishes
        there as the server key (``security.process_public``: with per-process ``keys``, that process's
        own; else the graph's), so a peer that binds the port after its process died gets nothing
        in, even one holding another authorized key: the CURVE handshake fails. The key options are
        set again before each connect, and ZeroMQ applies options to the connects made after they
        are set, so one SUB holds connections pinned to several publishing processes (a topic
        published from several processes over tcp), each to its own server key.
        """
        curve = self.graph.decl.curve
        for ep, proc in sorted(endpoints, key=lambda e: (e[0].startswith("tcp"), e[0])):
            if ep.startswith("tcp") and curve is not None:  # after every ipc connect: those stay plain
                from krabgraph.launch.graph.keyfiles import process_secret
                from krabgraph.launch.runtime.security import curve_client, process_public

                curve_client(sock, process_secret(curve, self.process or ""), process_public(curve, proc))
            sock.connect(ep)

    # -- failures ----------------------------------------------------------------------------
    def report_wire_error(self, sub: Subscription, exc: WireError) -> None:
        """Log the first error of each kind per topic and subscriber; count the rest."""
        sub.errors[exc.kind] = sub.errors.get(exc.kind, 0) + 1
        key = (sub.topic, sub.node.name, exc.kind)
        if key not in self._wire_logged:
            self._wire_logged.add(key)
            who = f"{sub.node.name}.{sub.port.spec.name}"
            log.error("dropped a message on topic %s for %s: %s (further ones are counted)", sub.topic, who, exc)

    def node_failed(self, node: Node, where: str, exc: BaseException) -> None:
        spec = self.graph.nodes[node.name]
        tb = "".join(traceback.format_exception(exc))
        with self._lock:
            self.failures.append((node.name, where, tb))
            count = self.restarts.get(node.name, 0)
        policy = spec.on_error
        if policy == "restart" and count >= MAX_RESTARTS:
            policy = "stop_node"
            note = f"restarted {count} times already; stopping the node"
        else:
            note = {
                "restart": f"restarting it ({count + 1}/{MAX_RESTARTS})",
                "stop_node": "stopping the node",
                "stop_graph": "stopping the graph",
            }[policy]
        log.error(
            "node %r (%s) raised in %s: %s; on_error=%s: %s\n%s",
            node.name,
            type(node).__name__,
            where,
            exc,
            spec.on_error,
            note,
            tb.rstrip(),
        )
        if policy == "stop_graph":
            self.stop(1)
            return
        if node.lifecycle == "active":
            try:
                node.deactivate()
            except Exception as exc2:
                log.error("node %r raised in on_deactivate: %s", node.name, exc2)
        if policy == "restart":
            with self._lock:
                self.restarts[node.name] = count + 1
            try:
                node.activate()
            except Exception as exc3:
                log.error("node %r could not be restarted (on_activate raised %s); it stays stopped", node.name, exc3)

    def _report_floods(self) -> None:
        """One line per input that got more messages than a loop pass reads (see READ_BUDGET)."""
        for sub in self.subscriptions:
            if sub.deferred:
                log.warning(
                    "input %s.%s (topic %s) was flooded: %d loop passes stopped reading at %d messages; "
                    "%d messages dropped, %d lost in transport",
                    sub.node.name, sub.port.spec.name, sub.topic, sub.deferred, READ_BUDGET,
                    sub.port.dropped, sub.port.lost,
                )  # fmt: skip

    # -- running -----------------------------------------------------------------------------
    def stop(self, code: int = 0) -> None:
        """Ask every loop to stop (thread-safe; the first nonzero code wins)."""
        if code and not self.exit_code:
            self.exit_code = code
        self.stopping = True

    def start(self) -> None:
        """Configure then activate every node, in graph order. Raises if any hook fails."""
        for node in self.nodes.values():
            node.configure()
        for node in self.nodes.values():
            node.activate()

    def run(self, duration_s: float | None = None, *, handle_signals: bool = True) -> int:
        """Start, loop until stopped (signal, ``stop()``, ``duration_s`` of graph time), shut down."""
        restore = self._install_signal_handlers() if handle_signals else {}
        try:
            try:
                self.start()
            except KrabgraphError as exc:  # a complete, user-facing message: no traceback
                log.error("startup failed: %s", exc)
                self.exit_code = 1
                return 1
            except Exception as exc:
                log.error("startup failed: %s\n%s", exc, traceback.format_exc().rstrip())
                self.exit_code = 1
                return 1
            if duration_s is not None:
                self.workers[0].add_timer(
                    Timer(
                        _StopOwner(self),
                        round(duration_s * 1e9),
                        lambda: self.stop(0),
                        round(duration_s * 1e9) + self.clock.now_ns(),
                        "duration",
                        0,
                        -1,  # before every node's timer at that instant: the run ends at duration_s
                    )
                )
            for worker in self.workers[1:]:
                worker.thread = threading.Thread(
                    target=self._thread_main, args=(worker,), name=f"krabgraph-{worker.nodes[0].name}", daemon=True
                )
                worker.thread.start()
            if self.tap is not None:
                self.tap.start()
            self._thread_main(self.workers[0])
            return self.exit_code
        finally:
            self.shutdown()
            for sig, handler in restore.items():
                signal.signal(sig, handler)

    def _thread_main(self, worker: Worker) -> None:
        try:
            if self.clock.mode == "sim":
                worker.run_lockstep()
            else:
                worker.run_realtime()
        except BaseException as exc:  # a bug in the executor itself: stop everything, loudly
            log.critical("executor loop crashed: %s\n%s", exc, traceback.format_exc())
            self.stop(2)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        signals = StopSignals(self.on_stop_signal).install()
        return signals.saved

    def on_stop_signal(self, count: int, signum: int) -> None:
        """The ``count``-th SIGINT/SIGTERM: the first stops in order, a second stops faster (short
        waits for node threads); either way every node is deactivated, so a safety node still sends
        its last damping command to the HAL. Never raises (a signal is no traceback)."""
        name = signal.Signals(signum).name
        if count == 1:
            log.info("received %s: shutting down (a second signal stops faster)", name)
        elif count == 2:
            log.warning("received %s again: stopping faster; nodes are still deactivated (safety damps)", name)
            self.hurry = True
        else:
            log.debug("received %s (%d signals): already stopping fast", name, count)
            self.hurry = True
        self.stop(0)

    def shutdown(self) -> None:
        """Deactivate (HALs last, delivering what others sent on the way), shut down, close all."""
        if self._closed:
            return
        self.stopping = True
        for worker in self.workers[1:]:
            if worker.thread is not None:
                wait_s = HURRY_JOIN_S if self.hurry else JOIN_S
                worker.thread.join(timeout=wait_s)
                if worker.thread.is_alive():
                    log.error("thread of node %r did not stop within %g s", worker.nodes[0].name, wait_s)
        # HALs after the rest, so a safety node's final command reaches them; recorders last, so
        # they record everything published on the way down.
        order = [n for n in reversed(self.nodes.values()) if n.kind not in ("hal", "recorder")]
        order += [n for n in self.nodes.values() if n.kind == "hal"]
        order += [n for n in self.nodes.values() if n.kind == "recorder"]
        for node in order:
            if node.lifecycle == "active":
                try:
                    node.deactivate()
                except Exception as exc:
                    log.error("node %r raised in on_deactivate: %s", node.name, exc)
            for worker in self.workers:
                worker.drain()
        for node in self.nodes.values():
            try:
                node.shutdown()
            except Exception as exc:
                log.error("node %r raised in on_shutdown: %s", node.name, exc)
        if self.tap is not None:
            for worker in self.workers:
                if worker.tap is not None and worker.tap.backlog:
                    worker.tap.flush()
            self.tap.stop()
            if self.control is not None:
                self.control.close()
        self._report_floods()
        for sock in self.sockets:
            sock.close(linger=0)
        for path in self._ipc_files:
            Path(path).unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.release()
        if self._auth:
            from krabgraph.launch.runtime.security import release_auth

            for _ in range(self._auth):
                release_auth(self.context)
        if self._own_context:
            self.context.term()
        self._closed = True


class StopSignals:
    """SIGINT and SIGTERM as counted stop requests, never an exception (so never a traceback).

    ``handler(count, signum)`` runs in the main thread for each signal (``Executor.on_stop_signal``:
    the first is an orderly stop, a second a faster one); until one is set, signals are only counted.
    """

    def __init__(self, handler: Callable[[int, int], None] | None = None):
        self.handler = handler
        self.count = 0
        self.last = 0  # the latest counted signal
        self.saved: dict[int, Any] = {}

    def install(self) -> StopSignals:
        """Take SIGINT and SIGTERM, but leave one that is ignored ignored (a background job's SIGINT,
        a supervised child's, ``nohup``)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.saved[sig] = signal.signal(sig, self._on)
        return self

    def restore(self) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)
        self.saved = {}

    def _on(self, signum: int, _frame: Any) -> None:
        self.count += 1
        self.last = signum
        if self.handler is not None:
            self.handler(self.count, signum)


def _input_hwm(port: InputPort | None) -> int:
    """RCVHWM of an input fed from another thread or process: bounded, and room for a queued input's queue."""
    queue = port.spec.queue if port is not None else 0
    return max(POLLED_HWM, 2 * queue)


def _listened(graph: Graph, topic: str, clock: Any) -> bool:
    """Whether something of the graph reads ``topic``: a node in any process, the executor's topic clock,
    or, for a topic open to outside publishers and readers (``external``), possibly anything."""
    info = graph.topics.get(topic)
    if info is None or info.external or info.subscribers:
        return True
    return isinstance(clock, TopicClock) and clock.topic == topic


def _topics_in(spec: Any) -> set[str]:
    """Every topic a node spec reads."""
    return {*spec.inputs.values(), *(t for ts in spec.raw_inputs.values() for t in ts)}


def _sender(
    sock: zmq.Socket,
    prefix: bytes,
    ready: deque,
    local: list[Subscription],
    flag: TapFlag | None = None,
    tap: WorkerTap | None = None,
) -> Callable[[Message], None]:
    """The sink bound to an output port: serialize, send, and queue same-thread subscribers.

    With a tap, a topic someone listens to also has its bytes queued for the tap (sent when the
    worker is idle); without one, the send path is the plain one.
    """
    send = _frame_send(sock)

    if flag is None or tap is None:
        if len(local) == 1:  # the common case: one same-thread subscriber, no loop
            (only,) = local

            def send_one(msg: Message) -> None:
                send(prefix + msg.SerializeToString())
                if not only.pending:
                    ready.append(only)
                only.pending += 1

            return send_one

        def send_msg(msg: Message) -> None:
            send(prefix + msg.SerializeToString())
            for sub in local:
                if not sub.pending:
                    ready.append(sub)
                sub.pending += 1

        return send_msg

    backlog, topic = tap.backlog, flag.topic.encode()

    def send_tapped(msg: Message) -> None:
        data = prefix + msg.SerializeToString()
        send(data)
        if flag.on:
            if len(backlog) < TAP_BACKLOG:
                backlog.append((topic, data))
            else:
                tap.dropped += 1
        for sub in local:
            if not sub.pending:
                ready.append(sub)
            sub.pending += 1

    return send_tapped


def _frame_send(sock: zmq.Socket) -> Callable[[bytes], Any]:
    """``sock.send`` for one bytes frame, without pyzmq's pure-Python wrapper (it only adds the DRAFT
    ``routing_id``/``group`` options, unused here): one Python call less per message."""
    base = getattr(zmq.backend, "Socket", None)
    if base is not None and isinstance(sock, base):
        return base.send.__get__(sock)
    return sock.send


def _raw_sender(where: str, senders: dict[str, Callable[[Any], None]]) -> Callable[[RawMessage], None]:
    """The sink of an ``Output(AnyMessage)``: each frame goes out unchanged on its own topic."""

    def send_raw(msg: RawMessage) -> None:
        send = senders.get(msg.topic)
        if send is None:
            raise TypeError(f"{where} is not wired to topic {msg.topic!r} (wired: {', '.join(senders) or 'none'})")
        send(_Frame(msg.frame))

    return send_raw


class _Frame:
    """Bytes that serialize to themselves, so raw frames share the typed send path."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


class _ClockFollower(Node):
    kind = "other"

    def __init__(self, clock: TopicClock):
        super().__init__(name="clock")
        self._graph_clock = clock

    def on_clock(self, msg: Clock) -> None:
        self._graph_clock.t_ns = max(self._graph_clock.t_ns, msg.sim_time_ns)


def _clock_sink(clock: TopicClock) -> tuple[Node, InputPort]:
    from krabgraph.launch.api.ports import Input

    follower = _ClockFollower(clock)
    follower.configure()
    follower.activate()  # always active: it only moves the clock
    spec = Input(Clock)
    spec.name = "clock"
    return follower, InputPort(follower, spec)


class _StopOwner:
    """Owner of the executor's own duration timer (looks active, never fails)."""

    lifecycle = "active"
    name = "executor"

    def __init__(self, executor: Executor):
        self.executor = executor
