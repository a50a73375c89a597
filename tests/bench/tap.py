"""Hop latency with the introspection tap: off, open with nobody listening, and one listener.

Same hop as ``hop.py`` (publish → subscriber callback, one thread, wall clock, the 3 KB and 20 KB
messages). The listener is another process subscribed to the hop's topic through the tap, as
``krabgraph topic hz`` would be, on another core than the pinned benchmark when there is one; it
counts what it receives, which the row's note reports. ZeroMQ's I/O thread, which does the tap's
TCP sends, is put on the other cores too (``zmq.THREAD_AFFINITY_CPU_ADD``): pinned to the graph's
core it competes with the control loop (measured here: 1.10×/1.11× p50 instead of 1.05×/1.08×).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import zmq

from krabgraph.launch import Executor, build_graph, graph_from_dict

from .hop import _Sink, _Source
from .stats import Row, interleaved, summarize

SIZES = {"3 KB obs (753 floats)": (753,), "20 KB depth (58×87)": (58, 87)}
LISTENER = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.rcvhwm = 1_000_000
s.connect(sys.argv[1]); s.setsockopt(zmq.SUBSCRIBE, b"src/out")
print("ready", flush=True)
n = 0
while s.poll(3000):
    s.recv_multipart(); n += 1
print(n, flush=True)
"""


def _others() -> set[int]:
    """The cores the benchmark is not pinned to."""
    return set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)


def _other_cores() -> None:
    """Run the listener off the benchmark's pinned core, as a separate tool would be (if there is one)."""
    if others := _others():
        os.sched_setaffinity(0, others)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tap_hop(shape: tuple[int, ...], count: int, mode: str, period_s: float = 1e-4) -> tuple[np.ndarray, int]:
    """Latencies (µs) of the hop; ``mode``: ``off``, ``idle`` (tap, no listener) or ``listener``."""
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    nodes = {
        "src": {"class": _Source, "params": {"shape": list(shape), "count": count, "period_s": period_s}},
        "sink": {"class": _Sink, "inputs": {"inp": "src/out"}},
    }
    spec = {"clock": "wall", "nodes": nodes} | ({"tap": endpoint} if mode != "off" else {})
    context = zmq.Context()
    for core in _others():  # ZeroMQ's I/O thread does the tap's TCP sends: off the pinned core
        context.set(zmq.THREAD_AFFINITY_CPU_ADD, core)
    ex = Executor(build_graph(graph_from_dict(spec, name="bench_tap")), context=context)
    ex.nodes["sink"].source = ex.nodes["src"]
    sink = ex.nodes["sink"]
    original = sink.on_inp
    listener = None
    if mode == "listener":
        listener = subprocess.Popen(
            [sys.executable, "-c", LISTENER, endpoint],
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=_other_cores,
        )
        assert listener.stdout.readline().strip() == "ready"

    def stop_when_done(msg) -> None:
        original(msg)
        if len(sink.lat) >= count:
            ex.stop()

    sink.input_ports()["inp"]._callback = stop_when_done
    try:
        ex.run(duration_s=count * period_s * 5 + 5, handle_signals=False)
    finally:
        context.term()
    received = -1
    if listener is not None:
        out, _ = listener.communicate(timeout=10)
        received = int(out.split()[-1])
    lat = np.array(sink.lat, dtype=np.float64) / 1e3
    if len(lat) < count:
        raise RuntimeError(f"tap hop ({mode}): {len(lat)} of {count} messages arrived")
    return lat, received


def run(count: int, repeats: int) -> list[Row]:
    rows = []
    placement = "one thread; listener in another process"
    for label, shape in SIZES.items():
        taken = interleaved(
            {m: lambda s=shape, m=m: tap_hop(s, count, m) for m in ("off", "idle", "listener")}, repeats
        )
        runs = {mode: [lat for lat, _ in results] for mode, results in taken.items()}
        received = [got for _, got in taken["listener"]]
        base = summarize("tap", f"no tap — {label}", runs["off"], placement=placement)
        idle = summarize("tap", f"tap open, nobody listening — {label}", runs["idle"], placement=placement)
        one = summarize("tap", f"tap, one listener on the topic — {label}", runs["listener"], placement=placement)
        for row in (idle, one):
            row.extra = {"ratio_p50": row.p50 / base.p50, "ratio_p99": row.p99 / base.p99}
            row.note = f"{row.p50 / base.p50:.2f}×/{row.p99 / base.p99:.2f}× no tap (p50/p99)"
        # The first few ms go out before the listener's subscription reaches the worker.
        one.note += f"; listener received {min(received)}/{count}"
        one.extra["received"] = min(received)
        rows += [base, idle, one]
    return rows
