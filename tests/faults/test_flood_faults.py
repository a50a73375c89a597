"""A publish flood cannot starve the control loop (issue 14, item 4).

The robot process of a small two-process graph (fake robot at 50 Hz + safety; the policy's process
is absent) runs in this test's process, in real time; a foreign publisher in another process binds
the policy's ipc endpoint and sends small NaN joint commands as fast as it can (bounded: at most
``FLOOD_MAX`` messages and ``FLOOD_S`` seconds). Before the per-pass read budget, one loop pass read
such an input until it was empty, which under a flood is never: commands to the HAL had 340-931 ms
gaps. Now a pass reads at most ``READ_BUDGET`` messages of one input, then due timers fire.

What is asserted is the mechanism, not a speed: the HAL's control timer and safety's control timer
fire in at least 90% of the control periods, and no firing is late by a whole period (so no gap
between two firings reaches 2 periods) but for at most 2, room for the odd scheduler stall of a
loaded, shared 2-core machine (50-100 ms stalls were seen there once in a while without any flood;
the budget itself bounds the delay to one pass, ~0.3 ms); the flood did arrive (passes cut at the
budget, most frames dropped as stale) and the input's queue is bounded (RCVHWM). With the budget off
(``test_flood_figures``, the old read-until-empty) the timers fired 53 times in 200 periods, up to
2.6 s late. Loopback only (an ipc socket in the private directory).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from krabgraph.launch import Executor, build_graph, load_graph
from krabgraph.launch.graph.endpoints import plan
from krabgraph.launch.runtime import executor as executor_mod
from krabgraph.launch.runtime.wire import prefix
from krabgraph.msgs import JointCommand, set_array

PERIOD_S = 0.02  # the fake robot's and safety's control period (50 Hz, the go2 description's rate)
RUN_S = 4.0  # graph time of the robot process
FLOOD_S = 3.0  # the flood starts ~0.3 s in and lasts at most this long
FLOOD_MAX = 30_000_000  # messages: a bound (~2 M/s on a 2-core machine: the time bound ends it first)

# The foreign publisher: binds the absent policy process's endpoint and floods it.
FLOODER = textwrap.dedent("""
    import sys, time, zmq
    endpoint, frame, seconds, most = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.sndhwm = 100_000
    pub.linger = 0
    pub.bind(endpoint)
    print("bound", flush=True)
    time.sleep(0.3)  # let the subscriber connect
    send, sent, end = pub.send, 0, time.monotonic() + seconds
    while sent < most and time.monotonic() < end:
        for _ in range(1000):
            send(frame)
        sent += 1000
    print("sent", sent, flush=True)
    pub.close()
    ctx.term()
""")


def nan_command() -> bytes:
    """A small, well-tagged JointCommand whose targets are NaN: parsable, rejected by safety."""
    msg = JointCommand()
    msg.header.seq = 1
    set_array(msg.position, [math.nan] * 12)
    return prefix(JointCommand) + msg.SerializeToString()


@pytest.fixture
def flood_graph(tmp_path, write_split) -> Path:
    return write_split(tmp_path / "flood.yaml", f"flood{os.getpid()}", 30000 + (os.getpid() * 13) % 20000)


def run_flooded(path: Path, flood: bool = True) -> tuple[Executor, int, dict[str, int]]:
    """Run the robot process of the split graph at ``path`` for RUN_S with (or without) the flood; the
    executor, the messages sent and each input's RCVHWM (read before the run: sockets are closed after it)."""
    graph = build_graph(load_graph(path))
    endpoint = plan(graph)[("policy/joint_command", "brain")].ipc
    ex = Executor(graph, process="robot")
    hwm = {sub.topic: sub.socket.rcvhwm for sub in ex.subscriptions}
    runner = threading.Thread(target=ex.run, kwargs={"duration_s": RUN_S, "handle_signals": False}, daemon=True)
    flooder = None
    sent = 0
    try:
        if flood:
            flooder = subprocess.Popen(
                [sys.executable, "-c", FLOODER, endpoint, nan_command().hex(), str(FLOOD_S), str(FLOOD_MAX)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert flooder.stdout.readline().strip() == "bound"
        runner.start()
        runner.join(timeout=RUN_S + 15)
        assert not runner.is_alive(), "the robot process did not stop"
        if flooder is not None:
            out, _ = flooder.communicate(timeout=FLOOD_S + 10)
            sent = int(out.split()[-1])
    finally:
        if flooder is not None and flooder.poll() is None:
            flooder.kill()
            flooder.wait(timeout=5)
        if runner.is_alive():
            ex.stop(1)
            runner.join(timeout=5)
        Path(endpoint.removeprefix("ipc://")).unlink(missing_ok=True)  # the flooder's socket file
    return ex, sent, hwm


def record_lateness(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Every firing's lateness (ns) of the control-period timers, by owner (test-side instrumentation)."""
    late: dict[str, list[int]] = {}
    fire_due = executor_mod.Worker.fire_due

    def recording(self: executor_mod.Worker, now_ns: int, clock_mode: str) -> bool:
        timer = self.timers[0][3]  # the heap's entries: (deadline, rank, order, timer)
        if not timer.cancelled and timer.due_ns <= now_ns and timer.period_ns == round(PERIOD_S * 1e9):
            late.setdefault(timer.node.name, []).append(now_ns - timer.due_ns)
        return fire_due(self, now_ns, clock_mode)

    monkeypatch.setattr(executor_mod.Worker, "fire_due", recording)
    return late


def test_flood_on_an_input_does_not_delay_the_control_timers(flood_graph, monkeypatch):
    late = record_lateness(monkeypatch)
    ex, sent, hwm = run_flooded(flood_graph)
    (sub,) = [s for s in ex.subscriptions if s.topic == "policy/joint_command"]
    period_ns = PERIOD_S * 1e9
    over = {name: sum(x >= period_ns for x in xs) for name, xs in late.items()}
    print(
        f"flood: {sent} messages sent in {FLOOD_S} s; {sub.port.count} delivered to safety, "
        f"{sub.port.dropped} dropped as stale, {sub.deferred} passes cut at {executor_mod.READ_BUDGET}; "
        f"max timer lateness (ms): { {n: max(xs) / 1e6 for n, xs in late.items()} }; "
        f"firings: { {n: len(xs) for n, xs in late.items()} }; a period or more late: {over}"
    )
    assert sent > 100_000  # a flood did happen
    assert sub.deferred > 0 and sub.port.dropped > 10 * sub.port.count  # it reached the input, cut at the budget
    assert hwm["policy/joint_command"] == executor_mod.POLLED_HWM  # a bounded queue
    assert set(late) == {"robot", "safety"}, late
    for name, xs in late.items():
        assert len(xs) >= 0.9 * RUN_S / PERIOD_S  # it kept its rate: ~200 firings in 4 s
        # No firing is late by a whole period (so no gap reaches 2 periods), but for at most 2: room
        # for the odd scheduler stall of a shared 2-core machine (50-100 ms seen once in a while
        # without any flood). Read until empty, as before, nearly every firing was late, by 1-3 s.
        assert over[name] <= 2, f"{name}'s control timer was a period or more late {over[name]} times"
    assert ex.exit_code == 0


@pytest.mark.skipif(not os.environ.get("KRABGRAPH_FLOOD_FIGURES"), reason="figures: set KRABGRAPH_FLOOD_FIGURES=1")
@pytest.mark.parametrize("case", ["quiet", "flood", "flood_unbudgeted"])
def test_flood_figures(flood_graph, monkeypatch, case):
    """Timer lateness without a flood, with it, and with the budget off (the old read-until-empty)."""
    late = record_lateness(monkeypatch)
    if case == "flood_unbudgeted":
        monkeypatch.setattr(executor_mod, "READ_BUDGET", 1 << 40)
        monkeypatch.setattr(executor_mod, "POLLED_HWM", executor_mod.HWM)
    _, sent, _ = run_flooded(flood_graph, flood=case != "quiet")
    period_ns = PERIOD_S * 1e9
    for name, xs in sorted(late.items()):
        xs = sorted(xs)
        print(
            f"\n{case}: {sent} sent; {name}: {len(xs)} firings, lateness ms p50 {xs[len(xs) // 2] / 1e6:.2f} "
            f"p99 {xs[int(len(xs) * 0.99)] / 1e6:.2f} max {xs[-1] / 1e6:.2f}; "
            f"{sum(x >= period_ns for x in xs)} a period or more late"
        )
