"""The ``krabgraph`` command: launch, check, graph, nodes; topic and node (through a graph's tap)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from krabgraph.launch.api.errors import GraphError, KrabgraphError
from krabgraph.launch.cli.args import add_tap_options, positive_seconds
from krabgraph.launch.graph.declaration import CLI, DEFAULT_TAP, NAME_RE

if TYPE_CHECKING:
    from krabgraph.launch.runtime.executor import StopSignals

MAX_INSTANCE_LEN = 24  # `--instance NAME`: it becomes part of ipc socket paths


def _setup_logging(level: str, process: str = "") -> None:
    tag = f"[{process}] " if process else ""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format=f"%(asctime)s.%(msecs)03d %(levelname)-5s {tag}%(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL (MuJoCo's renderer) says at INFO what it lacks


def _build(args: argparse.Namespace):
    from krabgraph.launch.graph.validation import load_and_build

    instance = getattr(args, "instance", None)
    if instance is not None and (len(instance) > MAX_INSTANCE_LEN or not NAME_RE.fullmatch(instance)):
        raise GraphError(
            [
                f"{CLI}: --instance {instance!r}: use up to {MAX_INSTANCE_LEN} letters, digits, '_', '.', '+' or "
                "'-', starting with a letter, digit or '_' (it becomes part of socket paths)"
            ]
        )
    graph = load_and_build(
        args.graph,
        sets=getattr(args, "set", None) or [],
        replaces=getattr(args, "replace", None) or [],
        overlays=getattr(args, "overlay", None) or [],
        clock=getattr(args, "clock", None),
        tap=getattr(args, "tap", None),
        allow_modules=getattr(args, "allow_module", None) or [],
    )
    if instance:
        from krabgraph.launch.graph.endpoints import SUN_PATH_MAX, plan

        graph.decl.instance = instance
        paths = [e.ipc.removeprefix("ipc://") for e in plan(graph).values() if e.ipc]
        longest = max(paths, key=lambda p: len(p.encode()), default="")
        if len(longest.encode()) > SUN_PATH_MAX:
            raise GraphError(
                [
                    f"{CLI}: --instance {instance!r}: ipc socket path {longest!r} is {len(longest.encode())} bytes, "
                    f"over the {SUN_PATH_MAX}-byte limit of a unix socket path; use a shorter instance name"
                ]
            )
    return graph


def cmd_check(args: argparse.Namespace) -> int:
    graph = _build(args)
    robot = f", robot {graph.robot}" if graph.robot else ""
    print(f"{graph.name}: OK — {len(graph.nodes)} nodes, {len(graph.topics)} topics, clock {graph.clock.mode}{robot}")
    for name, spec in graph.nodes.items():
        replaced = f" (replaces {spec.decl.replaced})" if spec.decl.replaced else ""
        where = f" in process {spec.process}" if len(graph.processes) > 1 else ""
        print(f"  {name}: {spec.cls.__name__} [{spec.cls.kind}]{replaced}{where}")
    if len(graph.processes) > 1:
        from krabgraph.launch.graph.endpoints import describe

        print("  processes: " + ", ".join(f"{n} on {p.host}" for n, p in graph.processes.items()))
        for line in describe(graph):
            print(f"  crosses: {line}")
    for line in graph.warnings:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    """Build and run the graph; SIGINT/SIGTERM are counted stop requests from here on (never a
    traceback): the first stops in order, a second faster, the safety node damping either way."""
    from krabgraph.launch.runtime.executor import StopSignals

    if getattr(args, "supervised", False):
        # A supervised child ignores SIGINT (its supervisor started it so): the terminal's Ctrl-C
        # reaches the whole process group, and the supervisor forwards each signal it gets as one
        # SIGTERM, so every escalation counts once.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    signals = StopSignals().install()
    try:
        return _launch(args, signals)
    finally:
        if _KEEP_SIGNALS:  # the program: ignore late signals (Python's exit would reset a handler to the default)
            signals.saved = {}
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        else:  # called in-process (tests, scripts): give the caller its handlers back
            signals.restore()


def _launch(args: argparse.Namespace, signals: StopSignals) -> int:
    from krabgraph.launch.runtime.executor import Executor
    from krabgraph.launch.runtime.monitor import RunMonitor

    graph = _build(args)
    if len(graph.processes) > 1 and args.process in (None, *graph.processes):
        from krabgraph.launch.runtime.transport import check_free

        # Refuse a second copy of a running instance before saying anything else (the supervisor
        # and the executor then take the locks for real).
        check_free(graph, [None, *graph.processes] if args.process is None else [args.process])
    log = logging.getLogger("krabgraph")
    for line in graph.warnings:
        log.warning("%s", line)
    log.info(
        "launching %s%s: %d nodes, clock %s%s",
        graph.name,
        f" (process {args.process})" if args.process else "",
        sum(1 for s in graph.nodes.values() if args.process in (None, s.process)),
        graph.clock.mode,
        f", for {args.duration} s" if args.duration else "",
    )
    if args.process is None and len(graph.processes) > 1:
        from krabgraph.launch.runtime.supervisor import supervise

        log.info("%s has %d processes (%s): starting those on this host", graph.name, len(graph.processes),
                 ", ".join(f"{n} on {p.host}" for n, p in graph.processes.items()))  # fmt: skip
        code = supervise(graph, args, signals)
        log.info("%s stopped (exit code %d)", graph.name, code)
        return code
    if args.process is not None and args.process not in graph.processes:
        known = ", ".join(graph.processes)
        print(f"error: --process {args.process!r}: graph {graph.name!r} has no such process ({known})", file=sys.stderr)
        return 1
    executor = Executor(graph, process=args.process)
    monitor = RunMonitor(executor)
    signals.handler = executor.on_stop_signal
    for count in range(1, signals.count + 1):  # signals during start-up: stop (faster) right after it
        executor.on_stop_signal(count, signals.last)
    code = monitor.finish(executor.run(duration_s=args.duration, handle_signals=False))
    log.info("%s stopped (exit code %d)", graph.name, code)
    return code


def cmd_graph(args: argparse.Namespace) -> int:
    from krabgraph.launch.cli import live_graph
    from krabgraph.launch.graph.render import render

    live_graph.check_options(args)
    graph = _build(args)
    if args.live or args.once:  # the running graph's figures over its picture (launch/cli/live_graph.py)
        return live_graph.cmd_live(args, graph)
    out = render(graph, args.format)
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(out, bytes):
            path.write_bytes(out)
        else:
            path.write_text(out)
        print(f"wrote {path}")
    elif isinstance(out, bytes):
        sys.stdout.buffer.write(out)
    else:
        sys.stdout.write(out)
    return 0


def _client(args: argparse.Namespace):
    from krabgraph.launch.cli.introspect import TapClient

    return TapClient(args.tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout)


def cmd_topic(args: argparse.Namespace) -> int:
    from krabgraph.launch.cli import introspect

    if args.action == "pub":  # through the control channel (launch/cli/act.py)
        from krabgraph.launch.cli.act import topic_pub

        return topic_pub(args)
    with _client(args) as client:
        if args.action == "list":
            info = client.graph_info()
            rows = [
                [
                    t["name"],
                    t["type"].removeprefix("krabgraph.msgs."),
                    ", ".join(t["publishers"]) or "-",
                    ", ".join(t["subscribers"]) or "-",
                    t["published"],
                ]
                for t in info["topics"]
            ]
            print(introspect.table(rows, ["topic", "type", "publishers", "subscribers", "published"]))
            return 0
        if not args.topic:
            print(f"error: topic {args.action} needs a TOPIC", file=sys.stderr)
            return 2
        if args.action == "info":
            infos = client.graph_infos(args.rate_s)
            print(_yaml(introspect.topic_info(infos, args.topic)), end="")
            return 0
        entry = client.check_topic(args.topic)
        try:
            if args.action == "echo":
                from krabgraph.launch.cli.echo import echo

                return echo(client, args.topic, entry["type"], args, sys.stdout)

            def show(st) -> None:
                if args.action == "hz":
                    print(
                        f"average rate: {st.rate_hz:.3f} Hz  min {st.min_s:.4f} s  max {st.max_s:.4f} s  "
                        f"std dev {st.std_s:.5f} s  window {st.count}",
                        flush=True,
                    )
                else:
                    print(f"{_human(st.bytes_per_s)}/s  mean {_human(st.mean_bytes)}  window {st.count}", flush=True)

            stats = introspect.measure(client, args.topic, args.duration, window=args.window, report=show)
            if stats is None:
                print(f"no messages on {args.topic}", file=sys.stderr)
                return 1
            return 0
        except KeyboardInterrupt:
            return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _yaml(data: object) -> str:
    """YAML text of plain data (anything JSON cannot hold shown as a string)."""
    import json

    from krabgraph.launch.cli.echo import to_yaml

    return to_yaml(json.loads(json.dumps(data, default=str)))


def cmd_node(args: argparse.Namespace) -> int:
    from krabgraph.launch.cli.introspect import node_info, table

    if args.action in ("activate", "deactivate"):  # through the control channel (launch/cli/act.py)
        from krabgraph.launch.cli.act import node_transition

        return node_transition(args)
    with _client(args) as client:
        info = client.graph_info()
    if args.action == "info":
        if not args.node:
            print("error: node info needs a NODE", file=sys.stderr)
            return 2
        print(_yaml(node_info(info, args.node)), end="")
        return 0
    rows = [
        [
            n["name"],
            n["class"].rpartition(":")[2],
            n["kind"],
            n["state"],
            n["received"],
            n["published"],
            n["dropped"],
            n["lost"],
            n["errors"],
            n["restarts"],
        ]
        for n in info["nodes"]
    ]
    header = ["node", "class", "kind", "state", "received", "published", "dropped", "lost", "errors", "restarts"]
    print(f"{info['graph']} (clock {info['clock']}, t = {info['time_ns'] * 1e-9:.2f} s, pid {info['pid']})")
    print(table(rows, header))
    return 0


def cmd_interface(args: argparse.Namespace) -> int:
    from krabgraph.launch.cli import echo

    if args.action == "list":
        print("\n".join(sorted(echo.message_types())))
        return 0
    if not args.type:
        print("error: interface show needs a TYPE (krabgraph interface list names them)", file=sys.stderr)
        return 2
    cls = echo.find_type(args.type)
    print(echo.field_listing(cls.DESCRIPTOR) if args.fields else echo.interface_text(cls))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from krabgraph.launch.graph.registry import node_registry, resolve_class

    for short, ref in sorted(node_registry().items()):
        try:
            cls = resolve_class(short)
        except LookupError as exc:
            print(f"{short}  ({ref})\n  unavailable: {exc}\n")
            continue
        print(f"{short}  ({ref}) [{cls.kind}]\n  {cls.summary()}")
        for name, spec in cls.inputs().items():
            opt = "" if spec.required else ", optional"
            print(f"  in   {name}: {spec.msg_type.__name__} ({spec.policy}{opt})")
        for name, spec in cls.outputs().items():
            print(f"  out  {name}: {spec.msg_type.__name__}{' (shared)' if spec.shared else ''}")
        for name, spec in cls.params().items():
            print(f"  param {name}: {spec.describe()}")
        print()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``krabgraph keys DIR NAME...``: CURVE key pairs for ``security:`` and the tap (runtime/security.py)."""
    from krabgraph.launch.runtime.security import main as keys_main

    return keys_main([args.dir, *args.names])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="krabgraph", description="ROS 2-style node graphs on ZeroMQ for legged robots.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_graph(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("graph", metavar="GRAPH", help="a name under graphs/ (e.g. parkour) or a path")
        sp.add_argument(
            "--overlay",
            action="append",
            metavar="FILE",
            help="apply an overlay graph file (no 'extends') on top, in order; e.g. a placement or a backend",
        )
        sp.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a parameter")
        sp.add_argument("--replace", action="append", metavar="NODE=CLASS", help="swap a node's class")
        sp.add_argument(
            "--clock",
            metavar="SPEC",
            help="override the graph's clock: wall, sim (lockstep, as fast as possible), sim:FACTOR, topic:TOPIC",
        )
        sp.add_argument(
            "--instance",
            metavar="NAME",
            help="a multi-process graph: run another copy of it on this host, with its own ipc endpoints "
            "(a second launch of a running copy is refused); tcp endpoints also need their own base_port",
        )
        sp.add_argument(
            "--allow-module",
            action="append",
            metavar="MODULE",
            help="let the graph file's `class:` name node classes in MODULE (and its submodules); without it "
            "only registered nodes (`krabgraph nodes`) are imported, since importing runs a module's code",
        )

    sp = sub.add_parser("launch", help="validate and run a graph")
    with_graph(sp)
    sp.add_argument("--duration", type=positive_seconds, metavar="SECONDS", help="stop after this much graph time")
    sp.add_argument(
        "--tap",
        nargs="?",
        const="",
        metavar="ENDPOINT",
        help=f"open the introspection tap (default {DEFAULT_TAP}; off loopback needs CURVE keys in the graph file)",
    )
    sp.add_argument(
        "--process",
        metavar="NAME",
        help="run only this process of a multi-process graph (how another host runs its part); "
        "without it, launch starts one child per process on this host and supervises them",
    )
    sp.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)  # a child of the supervisor
    sp.set_defaults(func=cmd_launch)

    sp = sub.add_parser("check", help="validate a graph without starting anything")
    with_graph(sp)
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("graph", help="draw a graph")
    with_graph(sp)
    sp.add_argument("--format", default="html", choices=["svg", "png", "dot", "mermaid", "html"])
    sp.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    from krabgraph.launch.cli.live_graph import add_arguments as add_live_arguments

    add_live_arguments(sp)
    sp.set_defaults(func=cmd_graph)

    sp = sub.add_parser("nodes", help="list the available node classes with their ports and parameters")
    sp.set_defaults(func=cmd_nodes)

    sp = sub.add_parser("topic", help="list, echo, measure, publish on topics of a running graph (needs launch --tap)")
    sp.add_argument("action", choices=["list", "echo", "info", "hz", "bw", "pub"])
    sp.add_argument("topic", nargs="?", metavar="TOPIC")
    sp.add_argument("values", nargs="?", metavar="YAML", help="pub: the message, e.g. '{vx: 0.3}' (echo's format)")
    sp.add_argument("--count", "-n", type=int, default=0, help="echo: stop after N messages")
    sp.add_argument("--once", action="store_true", help="echo: print one message and stop; pub: publish one")
    sp.add_argument("--times", type=int, metavar="N", help="pub: publish N messages (default: until Ctrl-C)")
    sp.add_argument("--rate", type=float, default=1.0, metavar="HZ", help="pub: messages per second (default 1)")
    sp.add_argument("--json", action="store_true", help="echo: one JSON object per line instead of YAML")
    sp.add_argument("--field", metavar="A.B", help="echo: print only this field (e.g. joints.position, header.seq)")
    sp.add_argument("--no-arr", action="store_true", help="echo: arrays as a summary like <float64[12]>")
    sp.add_argument(
        "--rate-s", type=float, default=1.0, metavar="S", help="info: measure the rate over S seconds (0: skip)"
    )
    sp.add_argument("--window", type=int, default=1000, help="hz/bw: messages in the sliding window")
    sp.add_argument(
        "--duration", type=positive_seconds, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    add_tap_options(sp)
    sp.set_defaults(func=cmd_topic)

    sp = sub.add_parser("node", help="nodes of a running graph: class, lifecycle state, counters (needs --tap)")
    sp.add_argument("action", choices=["list", "info", "activate", "deactivate"])
    sp.add_argument("node", nargs="?", metavar="NODE", help="info, activate, deactivate: the node")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_node)

    from krabgraph.launch.cli.act import add_parsers as add_act_parsers

    add_act_parsers(sub)  # estop, param: through the control channel

    sp = sub.add_parser("interface", help="message types: list them, show one's definition (no graph needed)")
    sp.add_argument("action", choices=["list", "show"])
    sp.add_argument("type", nargs="?", metavar="TYPE", help="show: e.g. RobotState or krabgraph.msgs.RobotState")
    sp.add_argument("--fields", action="store_true", help="show: every field, nested messages expanded")
    sp.set_defaults(func=cmd_interface)

    sp = sub.add_parser(
        "keys",
        help="make CURVE key pairs for security: and the tap: DIR/NAME.key (public) and DIR/NAME.key_secret (0600)",
    )
    sp.add_argument("dir", metavar="DIR", help="the key directory (created 0700 if missing)")
    sp.add_argument("names", nargs="+", metavar="NAME", help="one key pair per name (e.g. graph, robot, brain)")
    sp.set_defaults(func=cmd_keys)

    from krabgraph.launch.cli.plot import add_parser as add_plot_parser

    add_plot_parser(sub)
    from krabgraph.launch.cli.bag import add_parser as add_bag_parser

    add_bag_parser(sub)  # info, play (and record)
    from krabgraph.launch.cli.foxglove import add_parser as add_foxglove_parser

    add_foxglove_parser(sub)
    return p


_KEEP_SIGNALS = False  # the program itself (main() reading sys.argv): keep ignoring late signals until exit


def main(argv: list[str] | None = None) -> int:
    global _KEEP_SIGNALS
    _KEEP_SIGNALS = argv is None
    args = parser().parse_args(argv)
    _setup_logging(args.log_level, getattr(args, "process", None) or "")
    try:
        return args.func(args)
    except GraphError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        print("nothing was started." if args.command == "launch" else "", file=sys.stderr, end="")
        if args.command == "launch":
            print(file=sys.stderr)
        return 1
    except KrabgraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from krabgraph.launch.graph.render import RenderError

        if isinstance(exc, RenderError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
