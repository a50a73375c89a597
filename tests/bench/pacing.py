"""Pacing: 100 Hz and 1 kHz wall-clock timers through the executor vs a bare sleep-then-spin loop.

Executor: one node with one timer (``create_timer``), wall clock; the callback reads the graph
clock first thing and records its lateness, ``now - due`` (``due`` is the timer's deadline for this
firing). The executor waits in ``zmq_poll`` (whole ms) until ``SPIN_S`` before the deadline, then
spins; ``Worker.timer_stats`` counts missed deadlines (a whole period skipped).
Bare loop: the same waiting policy written out by hand — ``time.sleep`` for the whole ms that fit
before ``SPIN_S`` ahead of the deadline, then spin on ``time.monotonic_ns`` to it — and an empty
body; next deadline one period on (a whole period late counts as missed). So the difference between
the rows is what the executor adds (heap, dispatch, the callback), not a different sleep.
Rows give the lateness percentiles (µs); the note gives the period jitter (p99 of
``|interval - period|`` between consecutive callbacks) of both and the missed deadlines.
Each row runs for ``seconds`` in all, split evenly over the repeats (60 s for ``make bench``).
"""

from __future__ import annotations

import time

import numpy as np

from krabgraph.launch import Executor, Node, Param, build_graph, graph_from_dict
from krabgraph.launch.runtime.executor import SPIN_S

from . import placement
from .stats import Row, interleaved, summarize

RATES_HZ = (100.0, 1000.0)
FULL_S, SMOKE_S = 60.0, 2.0


class Ticker(Node):
    """One wall-clock timer; records each callback's lateness and time (graph clock, ns)."""

    period_s = Param(float, 0.01, "", gt=0)

    def on_activate(self) -> None:
        self.late: list[int] = []
        self.times: list[int] = []
        self.timer = self.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        now = self.now_ns()
        self.late.append(now - (self.timer.due_ns - self.timer.period_ns))  # due_ns already points one period on
        self.times.append(now)


def executor_pacing(period_s: float, seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Lateness (µs), callback times (µs) and missed deadlines of a timer run for ``seconds``."""
    graph = graph_from_dict({"clock": "wall", "nodes": {"tick": {"class": Ticker, "params": {"period_s": period_s}}}})
    ex = Executor(build_graph(graph))
    ex.run(duration_s=seconds, handle_signals=False)
    node = ex.nodes["tick"]
    stats = ex.workers[0].timer_stats.get(node.timer)
    missed = stats.missed if stats is not None else -1
    return np.array(node.late, dtype=np.float64) / 1e3, np.array(node.times, dtype=np.float64) / 1e3, missed


def bare_pacing(period_s: float, seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The same figures for a plain loop: sleep whole ms to ``SPIN_S`` before the deadline, then spin."""
    period, spin = round(period_s * 1e9), round(SPIN_S * 1e9)
    clock = time.monotonic_ns
    late: list[int] = []
    times: list[int] = []

    def tick(due: int) -> None:  # the callback: what Ticker.tick does
        now = clock()
        late.append(now - due)
        times.append(now)

    missed = 0
    due = clock() + period
    end = due + round(seconds * 1e9) - period  # as many deadlines as the executor's run has
    while due <= end:
        wait_ms = (due - clock() - spin) // 1_000_000  # as the executor's zmq_poll timeout
        if wait_ms > 0:
            time.sleep(wait_ms / 1e3)
        while clock() < due:
            pass
        tick(due)
        skipped = (times[-1] - due) // period
        missed += skipped
        due += (skipped + 1) * period
    return np.array(late, dtype=np.float64) / 1e3, np.array(times, dtype=np.float64) / 1e3, int(missed)


def _jitter(times: np.ndarray, period_s: float) -> float:
    """p99 of |interval - period| (µs) between consecutive callbacks."""
    return float(np.percentile(np.abs(np.diff(times) - period_s * 1e6), 99))


def run(count: int, repeats: int, seconds: float | None = None) -> list[Row]:
    """``seconds`` per row in all (default: 60 s for a full run, 2 s for a smoke run, by ``count``)."""
    seconds = seconds if seconds is not None else (FULL_S if count >= 20_000 else SMOKE_S)
    each = seconds / repeats
    where = f"one thread, core {placement.main_core()}"
    rows = []
    for rate in RATES_HZ:
        period = 1.0 / rate
        measured = {}
        taken = interleaved(
            {"executor": lambda p=period: executor_pacing(p, each), "bare": lambda p=period: bare_pacing(p, each)},
            repeats,
        )
        for label, runs in taken.items():
            measured[label] = (
                [r[0] for r in runs],
                float(np.median([_jitter(r[1], period) for r in runs])),
                sum(r[2] for r in runs),
            )
        ex_late, ex_jitter, ex_missed = measured["executor"]
        bare_late, bare_jitter, bare_missed = measured["bare"]
        r_ex = summarize("pacing", f"{rate:.0f} Hz, executor timer (wall clock)", ex_late, placement=where)
        r_bare = summarize("pacing", f"{rate:.0f} Hz, bare sleep-then-spin loop", bare_late, placement=where)
        ratio = ex_jitter / bare_jitter if bare_jitter > 0 else float("inf")
        met = ratio <= 2.0 and (ex_missed == 0 or rate != 100.0)
        target = "jitter ≤ 2× bare" + (" and 0 missed" if rate == 100.0 else "")
        r_ex.note = (
            f"lateness; period jitter p99 {ex_jitter:.1f} µs = {ratio:.2f}× bare; "
            f"{ex_missed} missed in {seconds:g} s; target {target}: {'met' if met else 'MISSED'}"
        )
        r_bare.note = f"lateness; period jitter p99 {bare_jitter:.1f} µs; {bare_missed} missed in {seconds:g} s"
        r_ex.extra = {"jitter_p99_us": ex_jitter, "jitter_ratio": ratio, "missed": ex_missed, "target_met": met}
        r_bare.extra = {"jitter_p99_us": bare_jitter, "missed": bare_missed}
        rows += [r_ex, r_bare]
    return rows
