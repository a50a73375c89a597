"""Hop latency, publish → subscriber callback, next to raw pyzmq inproc in the same run.

Rows (each for a 48-float message, the 3 KB observation of 753 floats, and a 20 KB 58×87 depth
image, all float32 in an ``ArrayStamped``):
- krabgraph executor, one thread: ``Output.publish`` (header, serialize, send) → dispatch → parse →
  the subscriber's callback.
- raw pyzmq inproc, one thread: ``send`` then ``recv`` of the serialized bytes (the transport floor),
  and the same plus protobuf serialize/parse of the same message (the floor for any protobuf graph).
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.bench.stats import Row, summarize
from krabgraph.msgs import ArrayStamped, set_array

SIZES = {"48 floats": (48,), "3 KB obs (753 floats)": (753,), "20 KB depth (58×87)": (58, 87)}


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

    ex.nodes["sink"]._inputs["inp"]._callback = stop_when_done
    ex.run(duration_s=count * 1e-4 * 5 + 5, handle_signals=False)
    lat = np.array(ex.nodes["sink"].lat, dtype=np.float64) / 1e3
    if len(lat) < count:
        raise RuntimeError(f"executor hop: {len(lat)} of {count} messages arrived")
    return lat


def raw_zmq_hop(shape: tuple[int, ...], count: int, with_protobuf: bool) -> np.ndarray:
    """Latencies (µs) of send → recv on one thread over inproc PUB/SUB (optionally + protobuf)."""
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.bind("inproc://bench-raw")
    sub.connect("inproc://bench-raw")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.05)
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


def run(count: int, repeats: int) -> list[Row]:
    rows = []
    placement = "one thread (both ends on one core)"
    for label, shape in SIZES.items():
        floor_bytes = [raw_zmq_hop(shape, count, False) for _ in range(repeats)]
        floor_pb = [raw_zmq_hop(shape, count, True) for _ in range(repeats)]
        ours = [executor_hop(shape, count) for _ in range(repeats)]
        r_bytes = summarize("hop", f"raw pyzmq inproc, bytes only — {label}", floor_bytes, placement=placement)
        r_pb = summarize(
            "hop", f"raw pyzmq inproc + protobuf — {label}", floor_pb, placement=placement, note="floor for the target"
        )
        r_ours = summarize("hop", f"krabgraph executor — {label}", ours, placement=placement)
        ratio50, ratio99 = r_ours.p50 / r_pb.p50, r_ours.p99 / r_pb.p99
        met = ratio50 <= 2.0 and ratio99 <= 2.0
        r_ours.note = (
            f"{ratio50:.2f}×/{ratio99:.2f}× the protobuf floor (p50/p99), "
            f"{r_ours.p50 / r_bytes.p50:.1f}× bytes-only p50; target ≤ 2×: {'met' if met else 'MISSED'}"
        )
        r_ours.extra = {"ratio_p50": ratio50, "ratio_p99": ratio99, "target_met": met}
        rows += [r_bytes, r_pb, r_ours]
    return rows
