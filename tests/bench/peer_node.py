"""One end of a cross-process hop, run as its own process by ``peers.py`` (or by the dora daemon).

``python -m tests.bench.peer_node {zenoh,zmq,dora} {pub,sub} --shape 753 --count N ...``

Every transport carries the same bytes: a serialized ``ArrayStamped`` of float32 values whose
``header.stamp_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on
Linux) taken just before the send, and ``header.seq`` counting from 0. The publisher sends
``count`` messages every ``period_us`` (sleeping between sends); the subscriber parses each one and
records ``monotonic_ns() - stamp`` for ``seq >= warmup``, then writes the latencies (ns, int64)
to ``--out`` as ``.npy``. Every wait is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from krabgraph.msgs import ArrayStamped, set_array


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("x"))


def publish_paced(send: Callable[[bytes], None], args: argparse.Namespace) -> None:
    """Send ``args.count`` stamped messages, one every ``args.period_us``, after ``args.start_s``."""
    msg = ArrayStamped()
    set_array(msg.data, np.random.default_rng(0).random(_shape(args.shape), dtype=np.float32))
    if args.wait_for:  # the subscriber touches this file once it can receive
        end = time.monotonic() + args.timeout
        while not Path(args.wait_for).exists() and time.monotonic() < end:
            time.sleep(0.01)
    time.sleep(args.start_s)
    period = args.period_us * 1e-6
    clock = time.perf_counter
    due = clock()
    for seq in range(args.count):
        due += period
        delay = due - clock()
        if delay > 0:
            time.sleep(delay)
        msg.header.seq = seq
        msg.header.stamp_ns = time.monotonic_ns()
        send(msg.SerializeToString())


class Collector:
    """Latency of each message from its stamp; ``done`` is set after the last one is recorded."""

    def __init__(self, args: argparse.Namespace):
        self.warmup, self.last = args.warmup, args.count - 1
        self.lat: list[int] = []
        self.done = threading.Event()

    def __call__(self, data: bytes) -> None:
        t = time.monotonic_ns()
        msg = ArrayStamped.FromString(data)
        if msg.header.seq >= self.warmup:
            self.lat.append(t - msg.header.stamp_ns)
        if msg.header.seq >= self.last:
            self.done.set()

    def save(self, path: str) -> None:
        np.save(path, np.array(self.lat, dtype=np.int64))


def zenoh_config(role: str, endpoint: str) -> str:
    """Peer mode on one TCP loopback endpoint, no multicast or gossip scouting (no UDP at all)."""
    import json

    return json.dumps(
        {
            "mode": "peer",
            "listen": {"endpoints": [endpoint] if role == "sub" else []},
            "connect": {"endpoints": [endpoint] if role == "pub" else []},
            "scouting": {"multicast": {"enabled": False}, "gossip": {"enabled": False}},
        }
    )


def run_zenoh(args: argparse.Namespace) -> None:
    import zenoh

    session = zenoh.open(zenoh.Config.from_json5(zenoh_config(args.role, args.endpoint)))
    try:
        if args.role == "sub":
            collect = Collector(args)
            sub = session.declare_subscriber("krabgraph/bench/hop", lambda s: collect(s.payload.to_bytes()))
            Path(args.out + ".ready").touch()
            collect.done.wait(args.timeout)
            sub.undeclare()
            collect.save(args.out)
        else:
            pub = session.declare_publisher("krabgraph/bench/hop", express=True)
            end = time.monotonic() + args.timeout
            while not pub.matching_status.matching and time.monotonic() < end:
                time.sleep(0.01)
            publish_paced(pub.put, args)
            time.sleep(0.2)  # let the last messages leave before the session closes
            pub.undeclare()
    finally:
        session.close()


def run_zmq(args: argparse.Namespace) -> None:
    import zmq

    ctx = zmq.Context()
    try:
        if args.role == "sub":
            sock = ctx.socket(zmq.SUB)
            sock.linger = 0
            sock.rcvtimeo = round(args.timeout * 1e3)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.bind(args.endpoint)
            Path(args.out + ".ready").touch()
            collect = Collector(args)
            try:
                while not collect.done.is_set():
                    collect(sock.recv())
            except zmq.Again:
                pass
            collect.save(args.out)
        else:
            sock = ctx.socket(zmq.PUB)
            sock.linger = 1000
            sock.connect(args.endpoint)
            time.sleep(0.3)  # the subscriber is bound; let the connection and subscription settle
            publish_paced(sock.send, args)
        sock.close()
    finally:
        ctx.term()


def run_dora(args: argparse.Namespace) -> None:
    from dora import Node

    node = Node()
    if args.role == "pub":
        publish_paced(lambda data: node.send_output("out", data), args)
        return
    collect = Collector(args)
    import pyarrow

    pyarrow.array(np.zeros(8, np.uint8)).to_numpy().tobytes()  # warm the conversion path before the first message
    Path(args.out + ".ready").touch()
    end = time.monotonic() + args.timeout
    while not collect.done.is_set() and time.monotonic() < end:
        event = node.next(timeout=1.0)
        if event is None:
            continue
        if event["type"] == "INPUT":
            collect(event["value"].to_numpy().tobytes())
        elif event["type"] == "STOP":
            break
    collect.save(args.out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("transport", choices=["zenoh", "zmq", "dora"])
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--shape", default="753", help="float32 array shape, e.g. 58x87")
    p.add_argument("--count", type=int, default=2000, help="messages, warmup included")
    p.add_argument("--warmup", type=int, default=200, help="first messages not recorded")
    p.add_argument("--period-us", type=float, default=500.0)
    p.add_argument("--start-s", type=float, default=0.2, help="publisher: wait before the first message")
    p.add_argument("--wait-for", default="", help="publisher: wait for this file (the subscriber's ready mark)")
    p.add_argument("--cpu", type=int, default=-1, help="pin this process to one core (-1: leave as is)")
    p.add_argument("--endpoint", default="", help="zenoh/zmq: the subscriber's address")
    p.add_argument("--out", default="", help="subscriber: .npy file for the latencies")
    p.add_argument("--timeout", type=float, default=60.0, help="s: bound on every wait")
    args = p.parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})  # before any library starts a thread: they all inherit it
    {"zenoh": run_zenoh, "zmq": run_zmq, "dora": run_dora}[args.transport](args)


if __name__ == "__main__":
    main()
