"""``krabgraph foxglove``: a running graph's topics on a Foxglove WebSocket server, read through its tap.

The one observation server: the GUI reads through the tap as ``krabgraph topic`` does, so watching
never changes the run. What goes on which channel is ``krabgraph.nodes.record.foxglove.FoxgloveView``'s
business; this module reads the tap (``pump``, shared with ``krabgraph record``), starts the server
and, with ``--teleop``/``--estop``, forwards what Foxglove clients send through the control channel.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.cli.args import add_tap_options, positive
from krabgraph.launch.runtime.wire import SEP

log = logging.getLogger("krabgraph.foxglove")

POLL_MS = 50  # the loop's longest wait for a frame: client events and the deadman are served this often
BATCH = 2000  # frames read per pass before serving client events
VELOCITY = "krabgraph.msgs.VelocityCommand"


def tap_client(args: argparse.Namespace):
    from krabgraph.launch.cli.introspect import TapClient

    return TapClient(args.tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout)


def select_topics(info: dict, globs: list[str] | None) -> dict[str, str]:
    """Topic -> type name of the graph's topics matching ``globs`` (all without); raises naming the topics."""
    topics = {t["name"]: t["type"] for t in info["topics"]}
    if not globs:
        return topics
    chosen = {name: kind for name, kind in topics.items() if any(fnmatch.fnmatchcase(name, g) for g in globs)}
    unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(name, g) for name in topics)]
    if unmatched:
        raise KrabgraphError(
            f"{', '.join(repr(g) for g in unmatched)} matches no topic of graph {info['graph']!r}; "
            f"its topics: {', '.join(sorted(topics))}"
        )
    return chosen


class Pump:
    """Frames of ``topics`` off a tap client's socket, decoded, handed to ``handle(topic, type, payload,
    stamp, msg)``; a frame that does not decode is skipped with one warning per kind, then counted."""

    def __init__(self, client: Any, topics: dict[str, str], handle: Callable[..., None]):
        self.client, self.handle = client, handle
        self.names = {name.encode(): name for name in topics}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        for name in topics:
            client.subscribe(name)

    def run(self, *, duration_s: float | None = None, each_pass: Callable[[], None] | None = None) -> None:
        """Until ``duration_s`` of wall time has passed (None: until Ctrl-C)."""
        end = None if duration_s is None else time.monotonic() + duration_s
        sock = self.client.sock
        try:
            while end is None or time.monotonic() < end:
                if sock.poll(POLL_MS):
                    self._drain(sock)
                if each_pass is not None:
                    each_pass()
        except KeyboardInterrupt:
            pass

    def _drain(self, sock: Any) -> None:
        import zmq

        for _ in range(BATCH):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            topic = self.names.get(parts[0]) if len(parts) == 2 else None
            if topic is not None:
                self._frame(topic, parts[1])

    def _frame(self, topic: str, frame: bytes) -> None:
        from krabgraph.launch.cli.introspect import TapClientError, decode

        try:
            msg = decode(frame)
        except TapClientError as exc:
            kind = f"{topic}: {str(exc).partition(' (')[0]}"
            if kind not in self.skipped:
                print(f"warning: skipped {exc} on {topic} (further ones are counted)", file=sys.stderr)
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            return
        payload = frame[frame.index(SEP) + 1 :]
        header = getattr(msg, "header", None)
        stamp = int(header.stamp_ns) if header is not None else 0
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.handle(topic, msg.DESCRIPTOR.full_name, payload, stamp, msg)


def check_teleop(info: dict, topic: str) -> None:
    """``--teleop TOPIC`` must name a VelocityCommand topic of the graph; raises saying which ones are."""
    types = {t["name"]: t["type"] for t in info["topics"]}
    if VELOCITY in (types.get(topic), types.get(topic.lstrip("/"))):
        return
    velocity = ", ".join(sorted(n for n, t in types.items() if t == VELOCITY)) or "none"
    raise KrabgraphError(
        f"--teleop {topic}: graph {info['graph']!r} has no VelocityCommand topic {topic!r}; "
        f"its VelocityCommand topics: {velocity}"
    )


def _controls(args: argparse.Namespace, info: dict):
    """The teleop/e-stop gate and its control client, or (None, None) when neither is asked for."""
    if not (args.teleop or args.estop):
        return None, None
    from krabgraph.launch.cli.control_client import ControlClient, ControlError
    from krabgraph.nodes.record.controls import Controls

    if args.teleop:
        check_teleop(info, args.teleop)
    client = ControlClient(args.tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout)
    controls = Controls(
        client,
        teleop_topic=args.teleop.lstrip("/") if args.teleop else "",
        estop=args.estop,
        max_speed=args.max_speed,
        max_yaw_rate=args.max_yaw_rate,
        errors=(ControlError,),
    )
    return controls, client


def cmd_foxglove(args: argparse.Namespace) -> int:
    """Serve the graph on Foxglove's WebSocket protocol until Ctrl-C, SIGTERM (or ``--duration``)."""
    from krabgraph.nodes.record.foxglove import server_token

    server_token(args.host, args.token)  # off loopback without a token: refused before anything starts
    with tap_client(args) as client:
        info = client.graph_info()
        topics = select_topics(info, args.topics)
        controls, control_client = _controls(args, info)
        try:
            _serve(args, client, info, topics, controls)
        finally:
            if control_client is not None:
                control_client.close()
    return 0


def _serve(args: argparse.Namespace, client: Any, info: dict, topics: dict[str, str], controls: Any) -> None:
    from krabgraph.launch.cli.echo import to_data
    from krabgraph.nodes.record.controls import ClientEvents
    from krabgraph.nodes.record.foxglove import SCENE_TOPICS, FoxgloveView, LiveServer
    from krabgraph.nodes.record.outlets import LiveOutlet
    from krabgraph.nodes.record.wsguard import DEFAULT_ORIGINS

    outlet = LiveOutlet()
    view = FoxgloveView(outlet, info, to_data=to_data, scene=not args.no_scene)
    events = ClientEvents()
    origins = tuple(args.allowed_origin or DEFAULT_ORIGINS)
    server = LiveServer(
        outlet, host=args.host, port=args.port, token=args.token, origins=origins, listener=events,
        client_publish=controls is not None, name=f"krabgraph {info['graph']}",
    )  # fmt: skip
    gated = f"{', teleop on ' + args.teleop if args.teleop else ''}{', e-stop' if controls else ''}"
    print(f"Foxglove server on {server.url} for graph {info['graph']!r} ({len(topics)} topics{gated}): "
          "in Foxglove, Open connection > Foxglove WebSocket", flush=True)  # fmt: skip

    def each_pass() -> None:
        batch = events.drain()
        for event in batch:
            if event[0] == "subscribe" and event[1] in SCENE_TOPICS:
                view.send_scene(event[1])
        if controls is not None:
            controls.handle(batch)
            controls.tick()

    pump = Pump(client, topics, view.handle)
    try:
        with sigterm_as_interrupt():
            pump.run(duration_s=args.duration, each_pass=each_pass)
    finally:
        server.stop()
    _summary(pump, view, controls, server)


def _summary(pump: Pump, view: Any, controls: Any, server: Any) -> None:
    counts = view.counts()
    sent = sum(counts.values())
    print(
        f"served {sum(pump.counts.values())} messages of {len(pump.counts)} topics; {sent} logged on "
        f"{len(counts)} channels",
        flush=True,
    )
    refused = dict(server.guard.refused)
    if controls is not None:
        print(f"teleop: {controls.sent} velocity commands ({controls.zeros} deadman zeros), {controls.estops} e-stops")
        refused |= controls.refused
    if refused:
        print("refused: " + ", ".join(f"{k} ({n})" for k, n in sorted(refused.items())))


def add_parser(sub: Any) -> None:
    """Register ``foxglove`` on the ``krabgraph`` sub-command parser."""
    from krabgraph.nodes.record.wsguard import DEFAULT_ORIGINS, TOKEN_ENV

    sp = sub.add_parser(
        "foxglove", help="serve a running graph (launch --tap) to Foxglove: topics, /values, /tf, /scene/*, teleop"
    )
    sp.add_argument("--topics", nargs="+", metavar="GLOB", help="only these topics (globs; default: all)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on; off loopback a token is required")
    sp.add_argument("--port", type=_port, default=8765, help="TCP port (0: any free port)")
    sp.add_argument("--token", default="", help=f"clients must give it (?token=...); default ${TOKEN_ENV}")
    sp.add_argument(
        "--allowed-origin",
        action="append",
        metavar="GLOB",
        help=f"browser origins allowed to connect (default {', '.join(DEFAULT_ORIGINS)}); no Origin header: allowed",
    )
    sp.add_argument(
        "--teleop",
        default="",
        metavar="TOPIC",
        help="accept Foxglove's Teleop panel on this VelocityCommand topic (e.g. command/cmd_vel); off by default",
    )
    sp.add_argument("--estop", action="store_true", help="accept /estop from clients (on with --teleop too)")
    sp.add_argument("--max-speed", type=positive, default=1.0, metavar="M/S", help="teleop: clamp vx, vy to this")
    sp.add_argument("--max-yaw-rate", type=positive, default=1.0, metavar="RAD/S", help="teleop: clamp the yaw rate")
    sp.add_argument("--no-scene", action="store_true", help="no robot model or terrain (/tf, /scene/*)")
    sp.add_argument("--duration", type=positive, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_foxglove)


def _port(text: str) -> int:
    """A TCP port, 0 to 65535 (for argparse ``type=``)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a TCP port 0..65535 (0: any free port)")
    return int(text)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the loop as Ctrl-C does (files closed, summary printed); the old handler after."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test calling main() from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


__all__ = ["Pump", "add_parser", "check_teleop", "cmd_foxglove", "select_topics", "tap_client"]
