"""The ``krabgraph`` command: launch, check, graph, nodes."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from krabgraph.launch.errors import GraphError, KrabgraphError


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _build(args: argparse.Namespace):
    from krabgraph.launch.validate import load_and_build

    return load_and_build(
        args.graph,
        sets=getattr(args, "set", None) or [],
        replaces=getattr(args, "replace", None) or [],
        clock=getattr(args, "clock", None),
    )


def cmd_check(args: argparse.Namespace) -> int:
    graph = _build(args)
    print(f"{graph.name}: OK — {len(graph.nodes)} nodes, {len(graph.topics)} topics, clock {graph.clock.mode}")
    for name, spec in graph.nodes.items():
        replaced = f" (replaces {spec.decl.replaced})" if spec.decl.replaced else ""
        print(f"  {name}: {spec.cls.__name__} [{spec.cls.kind}]{replaced}")
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from krabgraph.launch.executor import Executor

    graph = _build(args)
    log = logging.getLogger("krabgraph")
    log.info(
        "launching %s: %d nodes, clock %s%s",
        graph.name,
        len(graph.nodes),
        graph.clock.mode,
        f", for {args.duration} s" if args.duration else "",
    )
    executor = Executor(graph)
    code = executor.run(duration_s=args.duration)
    log.info("%s stopped (exit code %d)", graph.name, code)
    return code


def cmd_graph(args: argparse.Namespace) -> int:
    from krabgraph.launch.render import render

    graph = _build(args)
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


def cmd_nodes(args: argparse.Namespace) -> int:
    from krabgraph.launch.registry import node_registry, resolve_class

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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="krabgraph", description="ROS 2-style node graphs on ZeroMQ for legged robots.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_graph(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("graph", metavar="GRAPH", help="a name under graphs/ (e.g. parkour) or a path")
        sp.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a parameter")
        sp.add_argument("--replace", action="append", metavar="NODE=CLASS", help="swap a node's class")
        sp.add_argument(
            "--clock",
            metavar="SPEC",
            help="override the graph's clock: wall, sim (lockstep, as fast as possible), sim:FACTOR, topic:TOPIC",
        )

    sp = sub.add_parser("launch", help="validate and run a graph")
    with_graph(sp)
    sp.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much graph time")
    sp.set_defaults(func=cmd_launch)

    sp = sub.add_parser("check", help="validate a graph without starting anything")
    with_graph(sp)
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("graph", help="draw a graph")
    with_graph(sp)
    sp.add_argument("--format", default="html", choices=["svg", "png", "dot", "mermaid", "html"])
    sp.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    sp.set_defaults(func=cmd_graph)

    sp = sub.add_parser("nodes", help="list the available node classes with their ports and parameters")
    sp.set_defaults(func=cmd_nodes)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging(args.log_level)
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
        from krabgraph.launch.render import RenderError

        if isinstance(exc, RenderError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
