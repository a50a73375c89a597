#!/usr/bin/env python3
"""Run a krabgraph graph with the Isaac Sim HAL: an Isaac Lab task driven by a learned policy.

Everything that can be checked is checked before Isaac Sim starts, each failure one ``error:``
line: the policy bundle against ``--obs_dim``, ``--action_dim`` and ``--control_rate``; the
checkpoint (loaded on the CPU) against the bundle; the graph; the endpoint flags; then whether
Isaac Sim and Isaac Lab are importable at all. Only then does the HAL start Isaac Sim.

Endpoints: ``--observation_bind`` names the topic the HAL publishes its RobotState on and
``--command_bind`` the topic its JointCommand input reads (``inproc://<topic>``: inside this
process; the graph is rewired to the names given). ``tcp://`` for the observation opens the
runtime's read-only introspection tap there (the state is one of its topics); ``tcp://`` for
the command is refused: the runtime has no inbound TCP bridge.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GRAPH = "graphs/parkour_isaac.yaml"
HAL_CLASS = "krabgraph.nodes.isaac.hal:IsaacHal"
POLICY_CLASS = "krabgraph.nodes.policy.node:PolicyNode"


class SetupError(Exception):
    """Problems found before Isaac Sim starts; ``lines`` are printed one per ``error:`` line."""

    def __init__(self, lines: list[str], code: int = 2):
        super().__init__("; ".join(lines))
        self.lines = lines
        self.code = code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description="Run a krabgraph graph against Isaac Sim through an Isaac Lab task (Isaac HAL -> policy -> "
        "safety -> Isaac HAL). The policy bundle and checkpoint are checked before the simulator starts.",
    )
    p.add_argument("--graph", default=DEFAULT_GRAPH, help=f"graph file or name (default {DEFAULT_GRAPH})")
    p.add_argument("--task", help="Isaac Lab task id (default: the graph's, Isaac-Velocity-Rough-Anymal-D-Play-v0)")
    p.add_argument("--task_package", help="module to import first that registers the task (e.g. a parkour extension)")
    p.add_argument("--bundle", help="policy bundle name or contract.yaml (default: the graph's policy bundle)")
    p.add_argument(
        "--checkpoint", type=Path, help="policy weights: exported policy.onnx / policy.pt, or an rsl_rl model_*.pt"
    )
    p.add_argument("--obs_dim", type=int, help="expected observation size; checked against the bundle")
    p.add_argument("--action_dim", type=int, help="expected action size; checked against the bundle")
    p.add_argument("--control_rate", type=float, help="expected policy rate in Hz; checked against the bundle")
    p.add_argument("--device", help="Isaac Sim device (default: the graph's, cuda:0); the policy runs on the CPU")
    p.add_argument("--headless", action=argparse.BooleanOptionalAction, default=None, help="run without the GUI")
    p.add_argument(
        "--observation_bind",
        help="endpoint of the HAL's RobotState: inproc://<topic> (default: the graph's, inproc://hal/state) or "
        "tcp://host:port (read-only introspection tap)",
    )
    p.add_argument(
        "--command_bind",
        help="endpoint the HAL reads JointCommands from: inproc://<topic> (default: the graph's, inproc://hal/command)",
    )
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a parameter")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much simulated time")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


# -- graph surgery ------------------------------------------------------------------------------


def graph_path(ref: str) -> Path | str:
    """``ref`` as given if it exists, else relative to the repository, else as a graph name."""
    path = Path(ref)
    if path.is_file():
        return path
    if not path.is_absolute() and (REPO / path).is_file():
        return REPO / path
    return ref


def node_of_class(decl: Any, target: str) -> str:
    """The one node of ``decl`` whose class is ``target`` (``module:Class``)."""
    from krabgraph.launch.graph.registry import resolve_class

    want = resolve_class(target)
    names = [name for name, nd in decl.nodes.items() if _resolves_to(nd.class_ref, want, resolve_class)]
    if len(names) != 1:
        raise SetupError([f"graph {decl.name!r} needs exactly one {want.__name__} node, found {names or 'none'}"])
    return names[0]


def _resolves_to(ref: Any, want: type, resolve_class: Any) -> bool:
    try:
        cls = resolve_class(ref)
    except LookupError:
        return False
    return isinstance(cls, type) and issubclass(cls, want)


def output_topics(decl: Any) -> dict[tuple[str, str], str]:
    """(node, output port) -> topic, defaults included."""
    from krabgraph.launch.graph.registry import resolve_class

    topics = {}
    for name, nd in decl.nodes.items():
        try:
            ports = resolve_class(nd.class_ref).outputs()
        except LookupError:
            ports = dict.fromkeys(nd.outputs)
        for port in ports:
            topics[(name, port)] = nd.outputs.get(port, f"{name}/{port}")
    return topics


def rename_topic(decl: Any, old: str, new: str) -> None:
    """Move every publisher and subscriber of topic ``old`` to ``new``."""
    if old == new:
        return
    for (name, port), topic in output_topics(decl).items():
        if topic == old:
            decl.nodes[name].outputs[port] = new
    for nd in decl.nodes.values():
        for port, topic in list(nd.inputs.items()):
            if topic == old:
                nd.inputs[port] = new
            elif isinstance(topic, list):
                nd.inputs[port] = [new if t == old else t for t in topic]


def bind_topic(flag: str, value: str) -> str:
    """The topic of an ``inproc://`` endpoint; ``SetupError`` for anything else."""
    scheme, sep, rest = value.partition("://")
    if sep and scheme == "inproc" and rest.strip("/"):
        return rest.strip("/")
    raise SetupError([f"{flag} {value!r}: expected inproc://<topic> or tcp://host:port"])


def apply_binds(decl: Any, hal: str, observation: str | None, command: str | None) -> None:
    """Rewire the HAL's state and command topics (and open the tap for a tcp:// observation)."""
    errors = []
    if command is not None:
        if command.startswith("tcp://"):
            errors.append(
                f"--command_bind {command!r}: the krabgraph runtime has no inbound TCP bridge "
                "(launch/runtime/executor.py wires inproc endpoints inside one process), so commands cannot come in "
                "over TCP; use inproc://<topic>"
            )
        else:
            try:
                rename_topic(decl, decl.nodes[hal].inputs["command"], bind_topic("--command_bind", command))
            except SetupError as exc:
                errors += exc.lines
    if observation is not None:
        state_topic = output_topics(decl)[(hal, "state")]
        if observation.startswith("tcp://"):
            errors += _open_tap(decl, observation, state_topic)
        else:
            try:
                rename_topic(decl, state_topic, bind_topic("--observation_bind", observation))
            except SetupError as exc:
                errors += exc.lines
    if errors:
        raise SetupError(errors)


def _open_tap(decl: Any, endpoint: str, state_topic: str) -> list[str]:
    try:
        from krabgraph.launch.graph.declaration import TapSpec
    except ImportError:
        return [f"--observation_bind {endpoint!r}: this krabgraph runtime has no TCP endpoint; use inproc://<topic>"]
    if not hasattr(decl, "tap"):
        return [f"--observation_bind {endpoint!r}: this krabgraph runtime has no TCP endpoint; use inproc://<topic>"]
    decl.tap = TapSpec(endpoint)
    logging.getLogger("krabgraph").info("the HAL's state is on the tap %s as topic %s", endpoint, state_topic)
    return []


# -- the policy bundle -----------------------------------------------------------------------


def checkpoint_format(path: Path) -> str:
    """``onnx`` for .onnx; for a zip archive (torch): ``torchscript`` if it holds code, else ``rsl_rl``."""
    if path.suffix == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise SetupError([f"--checkpoint {path}: not an ONNX file or a torch archive ({exc})"]) from None
    return "torchscript" if any("/code/" in n or n.endswith("constants.pkl") for n in names) else "rsl_rl"


def bundle_with_checkpoint(bundle: str, checkpoint: Path, out_dir: Path) -> Path:
    """A copy of ``bundle``'s contract whose ``weights`` is ``checkpoint`` (format inferred)."""
    import yaml

    from krabgraph.nodes.policy.contract import contract_path

    if not checkpoint.is_file():
        raise SetupError([f"--checkpoint {checkpoint}: no such file"])
    raw = yaml.safe_load(contract_path(bundle).read_text())
    fmt = checkpoint_format(checkpoint)
    raw["weights"] = str(checkpoint.resolve())
    if raw.get("format") != fmt:
        raw["format"] = fmt
        raw.pop("input", None)
        raw.pop("output", None)
    if fmt != "rsl_rl":
        raw.pop("activation", None)
    path = out_dir / "contract.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def check_bundle(contract: Any, args: argparse.Namespace) -> None:
    """Compare the contract with the expected sizes and rate, then load its weights on the CPU."""
    from krabgraph.launch.api.errors import KrabgraphError
    from krabgraph.nodes.policy import load_backend

    terms = ", ".join(f"{t.name}={t.size}" for t in contract.observations)
    errors = []
    if args.obs_dim is not None and args.obs_dim != contract.obs_dim:
        errors.append(
            f"--obs_dim {args.obs_dim} does not match policy bundle {contract.name!r}, whose observation has "
            f"{contract.obs_dim} values ({terms}); {contract.path}"
        )
    if args.action_dim is not None and args.action_dim != contract.action_dim:
        errors.append(
            f"--action_dim {args.action_dim} does not match policy bundle {contract.name!r}, which drives "
            f"{contract.action_dim} joints; {contract.path}"
        )
    rate = 1.0 / contract.control_dt
    if args.control_rate is not None and abs(args.control_rate - rate) > 1e-6 * rate:
        errors.append(
            f"--control_rate {args.control_rate:g} Hz does not match policy bundle {contract.name!r}, trained at "
            f"{rate:g} Hz (control_dt {contract.control_dt} s)"
        )
    if errors:
        raise SetupError(errors)
    try:
        load_backend(contract, device="cpu")
    except KrabgraphError as exc:
        hint = "" if args.checkpoint else "; pass --checkpoint PATH"
        raise SetupError([f"{exc}{hint}"]) from None


# -- main ---------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, workdir: Path) -> Any:
    """Load, check and rewire the graph; return the validated graph. Nothing has started yet."""
    from krabgraph.launch.api.errors import GraphError, KrabgraphError
    from krabgraph.launch.graph.declaration import load_graph
    from krabgraph.launch.graph.validation import build_graph
    from krabgraph.nodes.isaac import parkour_terms  # noqa: F401 - terms some bundles use
    from krabgraph.nodes.policy import load_contract

    try:
        decl = load_graph(graph_path(args.graph), sets=args.set)
    except GraphError as exc:
        raise SetupError(exc.errors) from None
    hal = node_of_class(decl, HAL_CLASS)
    policy = node_of_class(decl, POLICY_CLASS)
    overrides = {"task": args.task, "task_package": args.task_package, "device": args.device}
    overrides["headless"] = args.headless
    decl.nodes[hal].params.update({k: v for k, v in overrides.items() if v is not None})
    bundle = args.bundle or decl.nodes[policy].params.get("bundle") or "go2_walk"
    try:
        if args.checkpoint is not None:
            bundle = str(bundle_with_checkpoint(bundle, args.checkpoint, workdir))
        contract = load_contract(bundle)
    except KrabgraphError as exc:
        raise SetupError([str(exc)]) from None
    check_bundle(contract, args)
    decl.nodes[policy].params["bundle"] = str(contract.path) if args.checkpoint else bundle
    apply_binds(decl, hal, args.observation_bind, args.command_bind)
    try:
        return build_graph(decl)
    except GraphError as exc:
        raise SetupError(exc.errors) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    with tempfile.TemporaryDirectory(prefix="krabgraph-isaac-") as tmp:
        try:
            graph = prepare(args, Path(tmp))
            from krabgraph.nodes.isaac.adapter import IsaacUnavailableError, require_isaac

            try:
                require_isaac()
            except IsaacUnavailableError as exc:
                raise SetupError([str(exc)], code=1) from None
        except SetupError as exc:
            for line in exc.lines:
                print(f"error: {line}", file=sys.stderr)
            print("nothing was started.", file=sys.stderr)
            return exc.code
        from krabgraph.launch.runtime.executor import Executor

        return Executor(graph).run(duration_s=args.duration)


if __name__ == "__main__":
    sys.exit(main())
