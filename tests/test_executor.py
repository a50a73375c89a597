"""Executor behaviour: dispatch order, delivery policies, failures, bad wire data, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import zmq

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.runtime.executor import endpoint
from krabgraph.launch.runtime.wire import encode, prefix
from krabgraph.msgs import ArrayStamped, JointCommand, VelocityCommand, set_array, to_numpy
from krabgraph.nodes.demo import FakeRobot, HoldPose


class Counter(Node):
    """Publishes 1, 2, 3, ... at ``rate_hz``; ``burst`` messages per tick."""

    kind = "source"
    rate_hz = Param(float, 100.0, "rate", gt=0)
    burst = Param(int, 1, "messages per tick", ge=1)
    out = Output(VelocityCommand)

    def on_activate(self) -> None:
        self.n = 0
        self.create_timer(1.0 / self.rate_hz, self.tick)

    def tick(self) -> None:
        for _ in range(self.burst):
            self.n += 1
            self.out.publish(VelocityCommand(vx=float(self.n)))


class Recorder(Node):
    """Records what its latest-only and queued inputs deliver."""

    kind = "recorder"
    latest = Input(VelocityCommand, required=False)
    queued = Input(VelocityCommand, queue=3, required=False)

    def on_configure(self) -> None:
        self.got_latest: list[float] = []
        self.got_queued: list[float] = []
        self.pairs: list[tuple[float, float]] = []

    def on_latest(self, msg: VelocityCommand) -> None:
        self.got_latest.append(msg.vx)

    def on_queued(self, msg: VelocityCommand) -> None:
        self.got_queued.append(msg.vx)
        self.pairs.append((msg.vx, msg.vy))


class Mixer(Node):
    """Sums two inputs into one output: dispatch order decides the output sequence."""

    kind = "policy"
    a = Input(VelocityCommand)
    b = Input(VelocityCommand)
    out = Output(VelocityCommand)

    def on_a(self, msg: VelocityCommand) -> None:
        self.out.publish(VelocityCommand(vx=msg.vx, vy=(self.b.latest.vx if self.b.latest else -1.0)))

    def on_b(self, msg: VelocityCommand) -> None:
        self.out.publish(VelocityCommand(vx=-msg.vx, vy=(self.a.latest.vx if self.a.latest else -1.0)))


class Faulty(Node):
    """Raises on every ``fail_every``-th message."""

    kind = "policy"
    fail_every = Param(int, 3, "", ge=1)
    inp = Input(VelocityCommand)
    out = Output(VelocityCommand)

    def on_activate(self) -> None:
        self.activations = getattr(self, "activations", 0) + 1
        self.seen = 0

    def on_inp(self, msg: VelocityCommand) -> None:
        self.seen += 1
        if self.seen % self.fail_every == 0:
            raise RuntimeError(f"boom at {msg.vx}")
        self.out.publish(msg)


def run(nodes: dict, duration: float = 1.0, clock="sim", **kw) -> Executor:
    graph = build_graph(graph_from_dict({"clock": clock, "nodes": nodes, **kw}))
    ex = Executor(graph)
    ex.run(duration_s=duration, handle_signals=False)
    return ex


def test_dispatch_is_deterministic(no_thread_leak):
    def once() -> Executor:
        return run(
            {
                "c1": {"class": Counter, "params": {"rate_hz": 100.0}},
                "c2": {"class": Counter, "params": {"rate_hz": 30.0, "burst": 2}},
                "mix": {"class": Mixer, "inputs": {"a": "c1/out", "b": "c2/out"}},
                "rec": {"class": Recorder, "inputs": {"queued": "mix/out"}},
            }
        )

    first, second = once(), once()
    seq1 = first.nodes["rec"].got_queued
    # c1: 99 ticks before the stop at t = 1 s; c2: 30 ticks of 2, of which the latest-only input `b` takes 1.
    assert len(seq1) == 99 + 30
    assert first.nodes["mix"].b.dropped == 30
    # the full (input, other input's latest) pairs depend on dispatch order: identical across runs
    pairs = first.nodes["rec"].pairs
    assert pairs == second.nodes["rec"].pairs
    assert len({vy for _, vy in pairs}) > 10  # the interleaving is non-trivial


def test_latest_only_drops_superseded_and_queue_keeps_order():
    ex = run(
        {
            "c": {"class": Counter, "params": {"rate_hz": 10.0, "burst": 5}},
            "rec": {"class": Recorder, "inputs": {"latest": "c/out", "queued": "c/out"}},
        }
    )
    rec = ex.nodes["rec"]
    # 9 ticks in 1 s (the 10th coincides with the stop), 5 messages each
    assert rec.got_latest == [5.0 * k for k in range(1, 10)]
    assert rec.got_queued == [float(v) for k in range(1, 10) for v in range(5 * k - 2, 5 * k + 1)]
    assert rec.latest.dropped == 9 * 4 and rec.queued.dropped == 9 * 2
    assert rec.latest.lost == 0 and rec.queued.lost == 0


def test_restart_policy_restarts_then_stops_node(caplog):
    ex = run(
        {
            "c": {"class": Counter, "params": {"rate_hz": 100.0}},
            "f": {"class": Faulty, "inputs": {"inp": "c/out"}, "params": {"fail_every": 10}},
            "rec": {"class": Recorder, "inputs": {"queued": "f/out"}},
        }
    )
    f = ex.nodes["f"]
    assert ex.restarts["f"] == 3 and f.activations == 4 and f.lifecycle == "finalized"
    assert len(ex.failures) == 4 and "RuntimeError: boom at 10.0" in ex.failures[0][2]
    assert len(ex.nodes["rec"].got_queued) == 4 * 9  # 9 good messages per activation, then stopped
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(
        "node 'f' (Faulty) raised in inp: boom at 10.0; on_error=restart: restarting it (1/3)" in m for m in messages
    )
    assert any("restarted 3 times already; stopping the node" in m for m in messages)
    assert ex.exit_code == 0


def test_stop_node_policy_keeps_graph_running():
    ex = run(
        {
            "c": {"class": Counter, "params": {"rate_hz": 100.0}},
            "f": {"class": Faulty, "inputs": {"inp": "c/out"}, "on_error": "stop_node"},
            "rec": {"class": Recorder, "inputs": {"latest": "c/out"}},
        }
    )
    assert ex.nodes["f"].activations == 1 and len(ex.failures) == 1
    assert len(ex.nodes["rec"].got_latest) == 99  # the rest of the graph kept running
    assert ex.exit_code == 0


def test_stop_graph_policy_stops_with_nonzero_code():
    ex = run(
        {
            "c": {"class": Counter, "params": {"rate_hz": 100.0}},
            "f": {"class": Faulty, "inputs": {"inp": "c/out"}, "on_error": "stop_graph"},
        },
        duration=10.0,
    )
    assert ex.exit_code == 1 and ex.clock.now_ns() == 30_000_000


def test_timer_exception_is_reported_with_traceback(caplog):
    class BadTimer(Node):
        def on_activate(self) -> None:
            self.create_timer(0.1, self.tick)

        def tick(self) -> None:
            raise ValueError("timer broke")

    ex = run({"bad": {"class": BadTimer, "on_error": "stop_node"}}, duration=1.0)
    assert len(ex.failures) == 1
    assert "timer tick" in ex.failures[0][1] and "ValueError: timer broke" in ex.failures[0][2]
    assert "Traceback" in caplog.text


def test_bad_wire_data_is_dropped_with_one_error_and_graph_keeps_running(caplog):
    """Wrong type, wrong schema version, malformed payload and wrong frame count on one topic."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(endpoint("ext/cmd", "ext"))

    class Injector(Node):
        """Sends bad then good data from outside the graph on each tick (same thread, raw socket)."""

        def on_activate(self) -> None:
            self.create_timer(0.01, self.tick)
            self.k = 0

        def tick(self) -> None:
            self.k += 1
            good = VelocityCommand(vx=float(self.k))
            good.header.seq = self.k
            pub.send(b"krabgraph.msgs.VelocityCommand@2\0" + good.SerializeToString())
            pub.send(encode(JointCommand()))
            pub.send(prefix(VelocityCommand) + b"\xff\xff\xff garbage")
            pub.send(b"no tag at all")
            pub.send_multipart([prefix(VelocityCommand), good.SerializeToString()])
            pub.send(encode(good))

    graph = build_graph(
        graph_from_dict(
            {
                "clock": "wall",
                "topics": {"ext/cmd": {"type": "VelocityCommand", "external": True}},
                "nodes": {"inj": {"class": Injector}, "rec": {"class": Recorder, "inputs": {"queued": "ext/cmd"}}},
            }
        )
    )
    ex = Executor(graph, context=ctx)
    try:
        ex.run(duration_s=0.3, handle_signals=False)
    finally:
        pub.close(linger=0)
        ctx.term()
    rec = ex.nodes["rec"]
    assert len(rec.got_queued) >= 10
    assert rec.got_queued == sorted(rec.got_queued) and all(v == int(v) for v in rec.got_queued)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 5, errors  # one line per kind of problem, later ones counted
    assert any(
        "schema version mismatch for krabgraph.msgs.VelocityCommand: got v2, this node reads v1" in e for e in errors
    )
    assert any(
        "type mismatch: expected krabgraph.msgs.VelocityCommand, got krabgraph.msgs.JointCommand" in e for e in errors
    )
    assert any("malformed krabgraph.msgs.VelocityCommand payload" in e for e in errors)
    assert any("malformed message: no type tag (expected krabgraph.msgs.VelocityCommand@1" in e for e in errors)
    assert any("malformed message: 2 frames, expected 1" in e for e in errors)
    assert rec.queued.dropped >= 4 * len(rec.got_queued) - 8


def test_threaded_node_and_wall_clock(no_thread_leak):
    ex = run(
        {
            "robot": {
                "class": FakeRobot,
                "thread": True,
                "params": {"rate_hz": 200.0},
                "inputs": {"command": "policy/joint_command"},
                "unsafe_direct_command": True,
            },
            "policy": {"class": HoldPose, "inputs": {"state": "robot/state"}},
        },
        duration=0.5,
        clock="wall",
    )
    robot, policy = ex.nodes["robot"], ex.nodes["policy"]
    assert 80 <= policy.joint_command.count <= 101
    np.testing.assert_allclose(robot.q, [0.0, 0.8, -1.5] * 4, atol=1e-6)
    assert robot.command.count >= policy.joint_command.count - 2


def test_closed_loop_in_lockstep_reaches_target():
    ex = run(
        {
            "robot": {"class": FakeRobot, "inputs": {"command": "policy/joint_command"}, "unsafe_direct_command": True},
            "policy": {"class": HoldPose, "params": {"target": [0.3] * 12}, "inputs": {"state": "robot/state"}},
        },
        duration=0.5,
    )
    np.testing.assert_allclose(ex.nodes["robot"].q, 0.3, atol=1e-6)
    assert ex.nodes["robot"].command.count == 24  # 25 states, the last answered after the stop


def test_shutdown_closes_sockets_and_runs_hooks(no_thread_leak):
    calls: list[str] = []

    class Hooks(Node):
        out = Output(VelocityCommand)

        def on_configure(self) -> None:
            calls.append("configure")

        def on_activate(self) -> None:
            calls.append("activate")

        def on_deactivate(self) -> None:
            calls.append("deactivate")
            self.out.publish(VelocityCommand(vx=-1.0))  # a last message still goes out

        def on_shutdown(self) -> None:
            calls.append("shutdown")

    ex = run(
        {"h": {"class": Hooks}, "rec": {"class": Recorder, "inputs": {"queued": "h/out"}}}, duration=0.1, clock="wall"
    )
    assert calls == ["configure", "activate", "deactivate", "shutdown"]
    assert all(s.closed for s in ex.sockets)
    assert ex.context.closed


def test_startup_failure_starts_nothing():
    class BadConfig(Node):
        def on_configure(self) -> None:
            raise OSError("device /dev/ttyUSB0 not found")

    ex = run(
        {
            "robot": {"class": FakeRobot, "inputs": {"command": "p/joint_command"}, "unsafe_direct_command": True},
            "p": {"class": HoldPose, "inputs": {"state": "robot/state"}},
            "bad": {"class": BadConfig},
        }
    )
    assert ex.exit_code == 1
    assert ex.nodes["robot"].state.count == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_graph_within_a_second(tmp_path, sig):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent("""
        import sys, threading
        from krabgraph.launch.cli.main import main
        code = main(["launch", "demo", "--set", "robot.rate_hz=500"])
        print("threads", threading.active_count(), flush=True)
        sys.exit(code)
    """)
    )
    graph_file = tmp_path / "demo_wall.yaml"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        time.sleep(1.5)  # imports and start-up
        assert proc.poll() is None, proc.stderr.read()
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    del graph_file
    assert proc.returncode == 0, err
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert "threads 1" in out
    assert f"received {signal.Signals(sig).name}: shutting down" in err


def test_thread_is_not_leaked_when_node_raises(no_thread_leak):
    class SlowThread(Node):
        def on_activate(self) -> None:
            self.create_timer(0.01, self.tick)

        def tick(self) -> None:
            raise RuntimeError("fails in its own thread")

    ex = run({"s": {"class": SlowThread, "thread": True, "on_error": "stop_graph"}}, duration=5.0, clock="wall")
    assert ex.exit_code == 1
    assert not any(t.name.startswith("krabgraph-") for t in threading.enumerate())


def test_large_arrays_pass_unchanged():
    image = np.random.default_rng(0).random((58, 87), dtype=np.float32)

    class Camera(Node):
        out = Output(ArrayStamped)

        def on_activate(self) -> None:
            self.create_timer(0.1, self.tick)

        def tick(self) -> None:
            msg = ArrayStamped()
            set_array(msg.data, image)
            self.out.publish(msg)

    class Sink(Node):
        inp = Input(ArrayStamped)

        def on_inp(self, msg: ArrayStamped) -> None:
            self.last = to_numpy(msg.data)

    ex = run({"cam": {"class": Camera}, "sink": {"class": Sink, "inputs": {"inp": "cam/out"}}}, duration=0.25)
    np.testing.assert_array_equal(ex.nodes["sink"].last, image)
