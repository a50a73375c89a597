"""Acting on a running graph from the terminal, through its control channel (``launch --tap``):
``krabgraph topic pub``, ``krabgraph estop``, ``krabgraph param get|set|list``, ``krabgraph node
activate|deactivate``. Exit codes: 0 done, 1 refused by the graph (or no graph answered; its message on
stderr), 2 a usage error (a bad YAML message, an unknown field, a missing argument).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from krabgraph.launch.cli.args import add_tap_options

if TYPE_CHECKING:  # imported when a verb runs: building the parser stays light
    from krabgraph.launch.cli.control_client import ControlClient

USAGE, REFUSED = 2, 1


class UsageError(Exception):
    """A command line that cannot become a request (exit code 2)."""


def add_parsers(sub: Any) -> None:
    """``estop`` and ``param``; ``topic pub`` and ``node activate|deactivate`` live with ``topic``/``node``."""
    sp = sub.add_parser("estop", help="e-stop every safety node of a running graph (latched), or --reset it")
    sp.add_argument("--reason", default="", metavar="TEXT", help="why (shown in the safety node's status and log)")
    sp.add_argument("--reset", action="store_true", help="clear the e-stop (needs a fresh robot state, level)")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_estop)

    sp = sub.add_parser("param", help="read or change node parameters of a running graph (set: dynamic ones only)")
    sp.add_argument("action", choices=["get", "set", "list"])
    sp.add_argument("target", metavar="NODE.PARAM|NODE", help="get/set: NODE.PARAM; list: NODE")
    sp.add_argument("value", nargs="?", metavar="VALUE", help="set: the new value, read as YAML (e.g. 0.5, [1, 2])")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_param)


def _client(args: argparse.Namespace) -> ControlClient:
    from krabgraph.launch.cli.control_client import ControlClient

    return ControlClient(args.tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout)


def _run(action: Callable[[], int]) -> int:
    """Run a verb: a usage error is exit code 2, a refusal (or silence) 1, each as one line on stderr."""
    from krabgraph.launch.cli.control_client import ControlError

    try:
        return action()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        return 0


# -- topic pub ----------------------------------------------------------------------------------
def topic_pub(args: argparse.Namespace) -> int:
    """``krabgraph topic pub TOPIC 'YAML' [--rate HZ] [--once] [--times N]``: like ROS 2, 1 Hz until Ctrl-C."""
    return _run(lambda: _topic_pub(args))


def _topic_pub(args: argparse.Namespace) -> int:
    import yaml

    from krabgraph.launch.cli.echo import EchoError, find_type, from_data

    if not args.topic:
        raise UsageError("topic pub needs a TOPIC and the message as YAML, e.g. topic pub command/cmd_vel '{vx: 0.3}'")
    times = _times(args)
    rate = args.rate
    if not (math.isfinite(rate) and rate > 0):
        raise UsageError(f"--rate {rate:g}: expected a rate in Hz > 0, e.g. --rate 10")
    try:
        data = yaml.safe_load(args.values or "{}")
    except yaml.YAMLError as exc:
        raise UsageError(f"topic pub: the message is not YAML ({' '.join(str(exc).split())})") from None
    with _client(args) as client:
        type_name = _topic_type(client.graph_info(), args.topic)
        try:
            msg = from_data(find_type(type_name), data)
        except EchoError as exc:
            raise UsageError(f"topic pub {args.topic}: {exc}") from None
        short = type_name.removeprefix("krabgraph.msgs.")
        n, period, next_t = 0, 1.0 / rate, time.monotonic()
        while times is None or n < times:
            reply = client.publish(args.topic, msg)
            n += 1
            stamp = f", t={reply['stamp_ns'] * 1e-9:.3f} s" if "stamp_ns" in reply else ""
            seq = f", seq {reply['seq']}" if "seq" in reply else ""
            print(f"published #{n} on {args.topic} ({short}) via {reply.get('via', '?')}{seq}{stamp}", flush=True)
            if times is not None and n >= times:
                break
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
    return 0


def _times(args: argparse.Namespace) -> int | None:
    """How many messages: ``--once`` 1, ``--times N`` N, else until Ctrl-C (None)."""
    if args.once and args.times is not None and args.times != 1:
        raise UsageError(f"--once and --times {args.times} disagree; give one of them")
    if args.times is not None and args.times < 1:
        raise UsageError(f"--times {args.times}: expected a count >= 1")
    return 1 if args.once else args.times


def _topic_type(info: dict[str, Any], topic: str) -> str:
    """The topic's message type as the graph describes it; refused (exit 1) for a topic it lacks."""
    from krabgraph.launch.cli.control_client import ControlError

    for entry in info["topics"]:
        if entry["name"] == topic:
            if not entry["type"]:
                raise ControlError(f"topic {topic!r} of graph {info['graph']!r} has no fixed type to publish")
            return entry["type"]
    names = ", ".join(sorted(t["name"] for t in info["topics"]))
    raise ControlError(f"graph {info['graph']!r} has no topic {topic!r}; topics: {names}")


# -- estop --------------------------------------------------------------------------------------
def cmd_estop(args: argparse.Namespace) -> int:
    """``krabgraph estop [--reason TEXT]`` / ``krabgraph estop --reset``."""

    def act() -> int:
        with _client(args) as client:
            reply = client.estop(args.reason, reset=args.reset)
        what = "e-stop reset" if args.reset else "e-stop engaged"
        for entry in reply["safety"]:
            print(f"{what}: {entry['node']} is {entry['mode']} ({entry['reason']})")
        return 0

    return _run(act)


# -- param --------------------------------------------------------------------------------------
def cmd_param(args: argparse.Namespace) -> int:
    """``krabgraph param get NODE.PARAM``, ``param set NODE.PARAM VALUE``, ``param list NODE``."""
    return _run(lambda: _param(args))


def _param(args: argparse.Namespace) -> int:
    from krabgraph.launch.cli.echo import to_yaml

    if args.action == "list":
        if "." in args.target or args.value is not None:
            raise UsageError(f"param list takes a NODE only, got {' '.join(filter(None, [args.target, args.value]))}")
        with _client(args) as client:
            reply = client.param_list(args.target)
        params, dynamic = reply["params"], set(reply["dynamic"])
        data = {
            "node": reply["node"],
            "dynamic": {k: v for k, v in params.items() if k in dynamic},
            "fixed": {k: v for k, v in params.items() if k not in dynamic},
        }
        print(to_yaml(data), end="")
        return 0
    node, sep, param = args.target.rpartition(".")
    if not (sep and node and param):
        raise UsageError(f"param {args.action} {args.target!r}: expected NODE.PARAM, e.g. command.schedule")
    if args.action == "get":
        if args.value is not None:
            raise UsageError(f"param get takes no VALUE (got {args.value!r}); to change it: param set")
        with _client(args) as client:
            reply = client.param_get(node, param)
        print(to_yaml(reply["value"]).removesuffix("...\n"), end="")
        return 0
    if args.value is None:
        raise UsageError(f"param set {args.target} needs a VALUE (read as YAML, e.g. 0.5 or [1, 2])")
    from krabgraph.launch.graph.declaration import parse_value

    value = json.loads(json.dumps(parse_value(args.value), default=str))  # YAML dates and the like: as text
    with _client(args) as client:
        reply = client.param_set(node, param, value)
    print(f"{node}.{param}: {json.dumps(reply['value'])} (was {json.dumps(reply['old'])})")
    return 0


# -- node activate|deactivate -------------------------------------------------------------------
def node_transition(args: argparse.Namespace) -> int:
    """``krabgraph node activate NODE`` / ``krabgraph node deactivate NODE``."""

    def act() -> int:
        if not args.node:
            raise UsageError(f"node {args.action} needs a NODE")
        with _client(args) as client:
            reply = client.lifecycle(args.node, args.action)
        print(f"{args.node}: {reply['state']} ({args.action}d)")
        return 0

    return _run(act)
