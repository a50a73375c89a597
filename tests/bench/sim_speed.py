"""Embedded-simulator speed: the walk graph in lockstep vs the same sim + policy loop, bare.

Both run the Go2 on flat ground with the go2_walk ONNX policy at 50 Hz and 400 Hz physics, the
height scan every tick, and the same message building (RobotState → observation). The graph adds
ZeroMQ transport, dispatch, the scripted command node and the safety node. Reported per control
tick (wall µs per 20 ms of simulated time) and as a real-time factor.
"""

from __future__ import annotations

import time

import numpy as np

from krabgraph.launch import Executor, Input, Node, build_graph, load_graph
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.msgs import RobotState

from .stats import Row, interleaved, summarize

TARGET_RATIO = 0.85  # the graph's real-time factor ≥ 0.85× the bare loop's (issue 16)
TARGET_RTF = 20.0


def bare_loop(seconds: float) -> np.ndarray:
    """Wall time (µs) of each control tick of the loop without the graph."""
    from .bare_loop import BareLoop

    loop = BareLoop("go2_walk", "flat")
    loop.command.vx = 0.5
    ticks = round(seconds / loop.sim.robot.control_dt)
    out = np.empty(ticks)
    clock = time.perf_counter_ns
    for k in range(ticks):
        t = clock()
        loop.tick()
        out[k] = clock() - t
    return out / 1e3


class _TickClock(Node):
    """Wall time between consecutive robot states (one control tick of the whole graph)."""

    kind = "recorder"
    state = Input(RobotState)

    def on_configure(self) -> None:
        self.stamps: list[int] = []

    def on_state(self, msg: RobotState) -> None:
        self.stamps.append(time.perf_counter_ns())


def graph_loop(seconds: float) -> np.ndarray:
    """Wall time (µs) of each control tick of graphs/walk.yaml in lockstep, as fast as possible."""
    # walk.yaml's own policy is go2_rough; both sides of the comparison run go2_walk
    decl = load_graph("walk", clock="sim", sets=["hal.status_period_s=0", "policy.bundle=go2_walk"])
    decl.nodes["ticks"] = NodeDecl("ticks", _TickClock, inputs={"state": "hal/state"}, locs={"node": Loc("bench")})
    ex = Executor(build_graph(decl))
    ex.run(duration_s=seconds, handle_signals=False)
    if ex.failures:
        raise RuntimeError(f"graph run failed: {ex.failures[0][2]}")
    return np.diff(np.array(ex.nodes["ticks"].stamps, dtype=np.float64)) / 1e3


def run(count: int, repeats: int) -> list[Row]:
    seconds = max(4.0, count * 0.02 / 20)  # 20 s of simulated time for the full suite
    runs = interleaved({"bare": lambda: bare_loop(seconds), "graph": lambda: graph_loop(seconds)}, repeats)
    bare, graph = runs["bare"], runs["graph"]
    rb = summarize("sim", "bare loop: MuJoCo + height scan + obs + ONNX, per 20 ms tick", bare, placement="one core")
    rg = summarize("sim", "walk graph, lockstep: hal → policy → safety, per 20 ms tick", graph, placement="one core")
    rtf_bare = [20e3 / r.mean() for r in bare]
    rtf_graph = [20e3 / r.mean() for r in graph]
    ratio = float(np.median(rtf_graph) / np.median(rtf_bare))
    rb.note = f"{np.median(rtf_bare):.1f}× real time"
    met = ratio >= TARGET_RATIO and np.median(rtf_graph) >= TARGET_RTF
    rg.note = (
        f"{np.median(rtf_graph):.1f}× real time = {ratio:.2f}× the bare loop "
        f"(the graph adds {float(np.median([g.mean() for g in graph]) - np.median([b.mean() for b in bare])):.0f} µs "
        "per tick: transport, dispatch, messages, the command and safety nodes); "
        f"target ≥ {TARGET_RATIO}× and ≥ {TARGET_RTF:.0f}× real time: {'met' if met else 'MISSED'}"
    )
    rg.extra = {"rtf": float(np.median(rtf_graph)), "ratio_to_bare": ratio, "target_met": bool(met)}
    rb.extra = {"rtf": float(np.median(rtf_bare))}
    return [rb, rg]
