"""Hop latency, publish → subscriber callback, next to raw pyzmq inproc in the same run.

Rows (each for a 48-float message, the 3 KB observation of 753 floats, and a 20 KB 58×87 depth
image, all float32 in an ``ArrayStamped``):
- krabgraph executor, one thread: ``Output.publish`` (header, serialize, send) → dispatch → parse →
  the subscriber's callback.
- raw pyzmq inproc, one thread: ``send`` then ``recv`` of the serialized bytes (the transport floor),
  and the same plus protobuf serialize/parse of the same message (the floor for any protobuf graph).
- raw pyzmq inproc, two threads (+ protobuf): a sender thread paced every ``PERIOD_S``, a receiver
  thread blocked in ``recv``; the floor for a hop between threads.
- krabgraph, subscriber node on its own thread (``thread: true``): a timer-driven publisher on the
  main thread, paced every ``PERIOD_S``.
Two-thread rows run with both threads on one core and on two cores; latency is one way, from
``perf_counter_ns`` (CLOCK_MONOTONIC) written into the message header just before it is sent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import zmq

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.runtime.executor import HWM
from krabgraph.msgs import ArrayStamped, set_array

from . import placement
from .stats import Row, interleaved, skipped, summarize

SIZES = {"48 floats": (48,), "3 KB obs (753 floats)": (753,), "20 KB depth (58×87)": (58, 87)}
PERIOD_S = 500e-6  # paced rows (between threads or processes): one message every 500 µs (2 kHz)
WARMUP = 200  # paced rows: messages sent first and not counted (fewer for short runs: see warmup())
START_S = 0.1  # paced rows: quiet time before the first message (threads start, pin, subscribe)


def warmup(count: int) -> int:
    """Untimed messages before ``count`` timed ones: ``WARMUP``, or a tenth of a short run (at least 20)."""
    return min(WARMUP, max(20, count // 10))


def _message(shape: tuple[int, ...]) -> ArrayStamped:
    msg = ArrayStamped()
    set_array(msg.data, np.random.default_rng(0).random(shape, dtype=np.float32))
    return msg


class _Source(Node):
    """Publishes a prebuilt message every ``period_s``; stamps it just before ``publish``."""

    period_s = Param(float, 1e-4, "", gt=0)
    shape = Param(list, [753], "", item=int)
    count = Param(int, 20_000, "", ge=1)
    out = Output(ArrayStamped)

    def on_activate(self) -> None:
        self.msg = _message(tuple(self.shape))
        self.sent = 0
        self.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        if self.sent >= self.count:
            return
        self.sent += 1
        msg = self.msg
        msg.header.stamp_ns = 0  # let publish stamp the graph time; latency uses perf_counter below
        msg.header.frame_id = ""
        self.t_send = time.perf_counter_ns()
        self.out.publish(msg)


class _Sink(Node):
    inp = Input(ArrayStamped)

    def on_activate(self) -> None:
        self.lat: list[int] = []

    def on_inp(self, msg: ArrayStamped) -> None:
        self.lat.append(time.perf_counter_ns() - self.source.t_send)


def executor_hop(shape: tuple[int, ...], count: int) -> np.ndarray:
    """Latencies (µs) through one executor, both nodes on the main thread, wall clock."""
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "wall",
                "nodes": {
                    "src": {"class": _Source, "params": {"shape": list(shape), "count": count, "period_s": 1e-4}},
                    "sink": {"class": _Sink, "inputs": {"inp": "src/out"}},
                },
            },
            name="bench_hop",
        )
    )
    ex = Executor(graph)
    ex.nodes["sink"].source = ex.nodes["src"]
    original = ex.nodes["sink"].on_inp

    def stop_when_done(msg: ArrayStamped) -> None:
        original(msg)
        if len(ex.nodes["sink"].lat) >= count:
            ex.stop()

    ex.nodes["sink"].input_ports()["inp"]._callback = stop_when_done
    ex.run(duration_s=count * 1e-4 * 5 + 5, handle_signals=False)
    lat = np.array(ex.nodes["sink"].lat, dtype=np.float64) / 1e3
    if len(lat) < count:
        raise RuntimeError(f"executor hop: {len(lat)} of {count} messages arrived")
    return lat


def _handshake(pub: zmq.Socket, sub: zmq.Socket, timeout_s: float = 5.0) -> None:
    """Send probes until one arrives: PUB drops messages until it has processed the subscription."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.send(b"probe")
        if sub.poll(10):
            while sub.poll(0):  # drain any further probes
                sub.recv()
            return
    raise RuntimeError("raw zmq hop: the subscription never reached the publisher")


def raw_zmq_hop(shape: tuple[int, ...], count: int, with_protobuf: bool) -> np.ndarray:
    """Latencies (µs) of send → recv on one thread over inproc PUB/SUB (optionally + protobuf)."""
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    # Unlimited HWM: in a ~1 µs loop the PUB learns of the SUB's reads only when libzmq processes
    # its commands (throttled to about once a millisecond), so a finite HWM drops messages here.
    pub.sndhwm = sub.rcvhwm = 0
    pub.bind("inproc://bench-raw")
    sub.connect("inproc://bench-raw")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.rcvtimeo = 1000  # ms: a lost message is an error, never a hang
    _handshake(pub, sub)
    msg = _message(shape)
    payload = msg.SerializeToString()
    out = np.empty(count)
    clock = time.perf_counter_ns
    try:
        for i in range(count):
            if with_protobuf:
                t = clock()
                pub.send(msg.SerializeToString())
                ArrayStamped.FromString(sub.recv())
            else:
                t = clock()
                pub.send(payload)
                sub.recv()
            out[i] = clock() - t
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()
    return out / 1e3


class _PacedSource(Node):
    """Publishes ``count`` messages every ``period_s`` after ``start_s``, each stamped with perf_counter_ns."""

    period_s = Param(float, PERIOD_S, "", gt=0)
    start_s = Param(float, START_S, "", ge=0)
    shape = Param(list, [753], "", item=int)
    count = Param(int, 20_000, "", ge=1)
    out = Output(ArrayStamped)

    def on_activate(self) -> None:
        self.msg = _message(tuple(self.shape))
        self.sent = 0
        self.start_ns = self.now_ns() + round(self.start_s * 1e9)
        self.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        if self.sent >= self.count or self.now_ns() < self.start_ns:
            return
        self.sent += 1
        self.msg.header.stamp_ns = time.perf_counter_ns()  # nonzero: publish keeps it
        self.out.publish(self.msg)


class _ThreadSink(Node):
    """Runs on its own thread (pinned to ``cpu`` by a one-shot timer); stops the graph after ``count``."""

    cpu = Param(int, -1, "", ge=-1)
    count = Param(int, 20_000, "", ge=1)
    inp = Input(ArrayStamped, queue=HWM)  # every message delivered (and timed), none dropped as stale

    def on_activate(self) -> None:
        self.lat: list[int] = []
        self.pin_timer = self.create_timer(1e-3, self.pin)

    def pin(self) -> None:
        self.pin_timer.cancel()
        if self.cpu >= 0:
            os.sched_setaffinity(0, {self.cpu})

    def on_inp(self, msg: ArrayStamped) -> None:
        self.lat.append(time.perf_counter_ns() - msg.header.stamp_ns)
        if len(self.lat) == self.count:
            self.request_stop()


def executor_thread_hop(shape: tuple[int, ...], count: int, cores: tuple[int, int]) -> np.ndarray:
    """Latencies (µs): publisher on the main thread (core ``cores[0]``), ``thread: true`` subscriber on ``cores[1]``."""
    skip = warmup(count)
    n = count + skip
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "wall",
                "nodes": {
                    "src": {"class": _PacedSource, "params": {"shape": list(shape), "count": n}},
                    "sink": {
                        "class": _ThreadSink,
                        "thread": True,
                        "params": {"cpu": cores[1], "count": n},
                        "inputs": {"inp": "src/out"},
                    },
                },
            },
            name="bench_hop_thread",
        )
    )
    with placement.pinned({cores[0]}):  # the sink's thread starts here and inherits this, then pins itself
        ex = Executor(graph)
        ex.run(duration_s=START_S + n * PERIOD_S * 3 + 5, handle_signals=False)
    return np.array(ex.nodes["sink"].lat[skip:], dtype=np.float64) / 1e3  # short if the time bound hit


def zmq_threads_hop(shape: tuple[int, ...], count: int, cores: tuple[int, int]) -> np.ndarray:
    """Latencies (µs) over inproc PUB/SUB + protobuf between a paced sender thread and a blocked receiver."""
    skip = warmup(count)
    n = count + skip
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.sndhwm = 0
    pub.bind("inproc://bench-threads")
    lat = np.zeros(n)
    received = [0]
    subscribed = threading.Event()

    def receive() -> None:
        os.sched_setaffinity(0, {cores[1]})
        sub = ctx.socket(zmq.SUB)
        sub.rcvtimeo = 2000  # ms: a lost message ends the row instead of hanging it
        sub.connect("inproc://bench-threads")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        subscribed.set()
        clock, parse = time.perf_counter_ns, ArrayStamped.FromString
        try:
            for i in range(n):
                msg = parse(sub.recv())
                lat[i] = clock() - msg.header.stamp_ns
                received[0] = i + 1
        except zmq.Again:
            pass
        finally:
            sub.close(0)

    msg = _message(shape)
    thread = threading.Thread(target=receive, name="bench-receiver", daemon=True)
    try:
        with placement.pinned({cores[0]}):
            thread.start()
            subscribed.wait(5)
            time.sleep(START_S)
            clock = time.perf_counter
            due = clock()
            for _ in range(n):
                due += PERIOD_S
                delay = due - clock()
                if delay > 0:
                    time.sleep(delay)
                msg.header.stamp_ns = time.perf_counter_ns()
                pub.send(msg.SerializeToString())
            thread.join(5)
    finally:
        pub.close(0)
        thread.join(5)
        ctx.term()
    return lat[skip : received[0]] / 1e3  # short if a message was lost


def paced_row(group: str, name: str, measure: Callable[[], np.ndarray], count: int, repeats: int, **kw) -> Row:
    """Summarize ``repeats`` runs of a paced hop; a run that fails is retried once; the note says so."""
    runs, retried = [], []
    try:
        for _ in range(repeats):
            try:
                runs.append(measure())
            except Exception as exc:
                retried.append(str(exc))
                runs.append(measure())
    except Exception as exc:
        return skipped(group, name, f"failed twice: {exc}", **kw)
    if min(len(r) for r in runs) < 2:
        return skipped(group, name, "fewer than 2 messages arrived within the time bound", **kw)
    row = summarize(group, name, runs, **kw)
    lost = count * repeats - sum(len(r) for r in runs)
    if lost:
        row.extra["not_delivered"] = lost
    if retried:
        row.extra["retried"] = retried
    return row


def _ratio_note(row: Row, floor: Row, what: str) -> None:
    """Set ``row.note``/``extra`` to its p50/p99 ratio to ``floor`` against the ≤ 2× target."""
    if not (row.ran and floor.ran):
        return
    ratio50, ratio99 = row.p50 / floor.p50, row.p99 / floor.p99
    met = ratio50 <= 2.0 and ratio99 <= 2.0
    row.note = f"{ratio50:.2f}×/{ratio99:.2f}× {what} (p50/p99); target ≤ 2×: {'met' if met else 'MISSED'}"
    row.extra.update(ratio_p50=ratio50, ratio_p99=ratio99, target_met=met)


def lost_note(row: Row, count: int) -> None:
    """Append to the note how many of the row's messages did not arrive, and any retried run."""
    lost = row.extra.get("not_delivered")
    if lost:
        row.note += f"; {lost} of {count * row.repeats} messages not delivered"
    for why in row.extra.get("retried", []):
        row.note += f"; a run failed and was repeated ({why[:120]})"


def run(count: int, repeats: int) -> list[Row]:
    rows = []
    one_core = "one thread (both ends on one core)"
    for label, shape in SIZES.items():
        group = f"hop: {label}"
        runs = interleaved(
            {
                "bytes": lambda s=shape: raw_zmq_hop(s, count, False),
                "protobuf": lambda s=shape: raw_zmq_hop(s, count, True),
                "ours": lambda s=shape: executor_hop(s, count),
            },
            repeats,
        )
        floor_bytes, floor_pb, ours = runs["bytes"], runs["protobuf"], runs["ours"]
        r_bytes = summarize(group, "raw pyzmq inproc, one thread, bytes only", floor_bytes, placement=one_core)
        r_pb = summarize(
            group, "raw pyzmq inproc, one thread, + protobuf", floor_pb, placement=one_core, note="floor for the target"
        )
        r_ours = summarize(group, "krabgraph executor, one thread", ours, placement=one_core)
        ratio50, ratio99 = r_ours.p50 / r_pb.p50, r_ours.p99 / r_pb.p99
        met, met99 = ratio50 <= 2.0, ratio99 <= 2.0
        r_ours.note = (
            f"{ratio50:.2f}×/{ratio99:.2f}× the protobuf floor (p50/p99), "
            f"{r_ours.p50 / r_bytes.p50:.1f}× bytes-only p50; target p50 ≤ 2×: {'met' if met else 'MISSED'}, "
            f"p99 ≤ 2×: {'met' if met99 else 'MISSED'}"
        )
        r_ours.extra = {"ratio_p50": ratio50, "ratio_p99": ratio99, "target_met": met, "p99_target_met": met99}
        rows += [r_bytes, r_pb, r_ours]
        for where, a, b in placement.placements():
            zmq_name, ours_name = "raw pyzmq inproc, two threads, + protobuf", "krabgraph, subscriber on its own thread"
            where = placement.label(where, a, b)
            if b is None:
                rows += [skipped(group, n, "only one core available", placement=where) for n in (zmq_name, ours_name)]
                continue
            floor = paced_row(
                group, zmq_name, lambda s=shape, c=(a, b): zmq_threads_hop(s, count, c), count, repeats, placement=where
            )
            if floor.ran:
                floor.note = f"floor for the row below; sender paced at {1 / PERIOD_S:.0f} Hz"
            threaded = paced_row(
                group,
                ours_name,
                lambda s=shape, c=(a, b): executor_thread_hop(s, count, c),
                count,
                repeats,
                placement=where + ", publisher: a timer on the main thread",
            )
            _ratio_note(threaded, floor, "the two-thread floor")
            lost_note(floor, count)
            lost_note(threaded, count)
            rows += [floor, threaded]
    return rows
