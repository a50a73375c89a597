"""``krabgraph graph GRAPH --live``: the graph's picture with figures measured on the running graph.

Every ``--period`` seconds the running graph's description (``_tap/graph``, through its tap) is read
over that span: each topic's rate is the change of its published counter over the change of graph
time between the first and the last description (messages per second of graph time: a lockstep
graph running faster than real time still reads its nominal rates), each node shows its lifecycle
state and received/published/dropped counters. The page (``launch/graph/render.py``'s HTML with
annotations) is rewritten in place (write, then rename: a browser never reads half a file) and
reloads itself every period, so a browser left open on it stays live.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.cli.args import positive_seconds
from krabgraph.launch.graph.declaration import DEFAULT_TAP
from krabgraph.launch.graph.render import Annotations, NodeFigures, to_html

if TYPE_CHECKING:  # the tap client (pyzmq) is imported when a live view starts, not by `krabgraph --help`
    from krabgraph.launch.cli.introspect import TapClient
    from krabgraph.launch.graph.model import Graph

MIN_REFRESH_S = 1.0  # the page reloads at most this often
DEFAULT_PERIOD_S = 1.0  # --period: seconds between two snapshots (and the span their rates are measured over)


class LiveGraphError(KrabgraphError):
    """A live view that cannot start: a wrong option, or a running graph that is not the one drawn."""


def rates(first: dict, last: dict) -> dict[str, float | None]:
    """Messages per second of graph time of each topic between two descriptions (oldest first);
    None for a topic no node of that process publishes (its counter is not there) or no time passed."""
    span_ns = last["time_ns"] - first["time_ns"]
    before = {t["name"]: t["published"] for t in first["topics"]}
    out: dict[str, float | None] = {}
    for topic in last["topics"]:
        name = topic["name"]
        if span_ns <= 0 or not topic["publishers"] or name not in before:
            out[name] = None
        else:
            out[name] = (topic["published"] - before[name]) / (span_ns * 1e-9)
    return out


def annotations(
    first: dict, last: dict, endpoint: str, refresh_s: float, *, read_at: str = "", stale: str = ""
) -> Annotations:
    """The figures drawn over the picture, from two descriptions ``first`` .. ``last`` of one graph
    (``read_at``: the wall-clock time they were read; ``stale``: why they are the last ones)."""
    nodes = {n["name"]: NodeFigures(n["state"], n["received"], n["published"], n["dropped"]) for n in last["nodes"]}
    span = (last["time_ns"] - first["time_ns"]) * 1e-9
    caption = (
        f"{last['graph']} on {endpoint} (pid {last.get('pid', '?')}, clock {last.get('clock', '?')}): "
        f"graph time {last['time_ns'] * 1e-9:.2f} s; rates over the last {span:.2f} s of graph time; "
        f"read at {read_at or time.strftime('%H:%M:%S')}"
    )
    if stale:
        caption = f"{stale} — showing its last state ({caption})"
    return Annotations(rates(first, last), nodes, caption, max(refresh_s, MIN_REFRESH_S))


def check_same_graph(graph: Graph, info: dict, endpoint: str) -> None:
    """Refuse to draw one graph's file with another graph's figures."""
    if info["graph"] != graph.name:
        raise LiveGraphError(
            f"the graph on {endpoint} is {info['graph']!r}, the file drawn is {graph.name!r}: give the graph "
            "it was launched from, or the tap of the right graph with --tap"
        )


def write_page(path: Path, page: str) -> None:
    """Replace ``path`` with ``page`` in one rename (a reloading browser sees the old or the new page)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, path)


def default_output(graph: Graph) -> Path:
    return Path("build") / f"{graph.name}-live.html"


def run_live(graph: Graph, client: TapClient, output: Path, args: argparse.Namespace, out: TextIO) -> int:
    """Snapshots until ``--once`` is done, ``--duration`` has passed or Ctrl-C; the number written.

    A graph that stops answering (it ended, or restarts) leaves the page on its last figures, marked
    as such, while the view keeps asking; one warning line says so."""
    from krabgraph.launch.cli.introspect import TapClientError

    period = args.period or DEFAULT_PERIOD_S
    end = None if args.duration is None else time.monotonic() + args.duration
    infos = client.graph_infos(period)  # raises if no graph answers: nothing is written then
    check_same_graph(graph, infos[0], client.endpoint)
    output.parent.mkdir(parents=True, exist_ok=True)
    written, window, read_at, stale = 0, (infos[0], infos[-1]), time.strftime("%H:%M:%S"), ""
    interactive = out.isatty()
    while True:
        figures = annotations(*window, client.endpoint, period, read_at=read_at, stale=stale)
        write_page(output, to_html(graph, figures))
        written += 1
        if written == 1:
            print(f"wrote {output}" + ("" if args.once else f" (every {period:g} s until Ctrl-C)"), file=out)
        elif interactive:
            now = window[1]["time_ns"] * 1e-9
            print(f"\r{written} snapshots, graph time {now:.2f} s", end="", file=out, flush=True)
        if args.once or (end is not None and time.monotonic() >= end):
            break
        try:
            infos = client.graph_infos(period)
            check_same_graph(graph, infos[0], client.endpoint)
            window, read_at, stale = (infos[0], infos[-1]), time.strftime("%H:%M:%S"), ""
        except TapClientError as exc:
            if not stale:
                newline = "\n" if interactive else ""  # after the progress line
                print(f"{newline}warning: {exc}; the page keeps the graph's last figures", file=sys.stderr)
                stale = f"not answering since {time.strftime('%H:%M:%S')}"
    if interactive and written > 1:
        print(file=out)
    return written


def cmd_live(args: argparse.Namespace, graph: Graph) -> int:
    """``krabgraph graph GRAPH --live``: exit 0, or 1 with one error line (no graph answering, another graph)."""
    if args.format != "html":
        raise LiveGraphError(f"--live writes an HTML page that reloads itself; drop --format {args.format}")
    from krabgraph.launch.cli.introspect import TapClient

    output = Path(args.output) if args.output else default_output(graph)
    with TapClient(args.live_tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout) as client:
        try:
            run_live(graph, client, output, args, sys.stdout)
        except KeyboardInterrupt:
            print(f"\nstopped: {output} holds the last snapshot", file=sys.stderr)
    return 0


def check_options(args: argparse.Namespace) -> None:
    """Live-only options without ``--live``: one error line."""
    given = [flag for flag, value in (("--period", args.period), ("--duration", args.duration)) if value]
    if given and not (args.live or args.once):
        raise LiveGraphError(
            f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to a live view: add --live"
        )


def add_arguments(sp: Any) -> None:
    """The ``graph`` verb's live options."""
    sp.add_argument(
        "--live",
        action="store_true",
        help="draw the running graph (through its tap) with each topic's measured rate and each node's state "
        "and counters; the HTML page (default build/GRAPH-live.html) is rewritten and reloads itself every --period",
    )
    sp.add_argument("--once", action="store_true", help="--live: write one snapshot and exit")
    sp.add_argument(
        "--period", type=positive_seconds, metavar="S", help=f"--live: measure over S seconds ({DEFAULT_PERIOD_S:g})"
    )
    sp.add_argument("--duration", type=positive_seconds, metavar="S", help="--live: stop after S seconds")
    sp.add_argument(
        "--tap",
        dest="live_tap",
        default=DEFAULT_TAP,
        metavar="ENDPOINT",
        help=f"--live: the graph's tap ({DEFAULT_TAP})",
    )
    sp.add_argument("--server-key", default="", metavar="CERT", help="--live, CURVE: the graph's public certificate")
    sp.add_argument("--key", default="", metavar="CERT", help="--live, CURVE: your secret certificate")
    sp.add_argument("--timeout", type=float, default=3.0, metavar="S", help="--live: wait this long for the graph")


__all__ = ["Annotations", "LiveGraphError", "add_arguments", "annotations", "check_options", "cmd_live", "rates"]
