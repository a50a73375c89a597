"""Graph files: load, follow ``extends``, apply overlays and command-line overrides.

The result (``GraphDecl``) is still unchecked against the node classes: ``validate.build_graph``
does that. Every value keeps the file and line it came from, for error messages.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from krabgraph.launch.api.errors import GraphError
from krabgraph.launch.graph.yamlloc import Loc, LocDict, YamlError, load_yaml

GRAPHS_DIR = Path(__file__).resolve().parents[2] / "graphs"
ON_ERROR = ("restart", "stop_node", "stop_graph")
CLI = Loc("command line")
DEFAULT_TAP = "tcp://127.0.0.1:7447"
DEFAULT_PROCESS = "main"  # the implicit process of a graph without `processes:`
DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 7600
MAX_EXTENDS_DEPTH = 16  # files in one `extends:` chain
MAX_NAME_LEN = 64  # a graph name: it becomes part of file and socket paths
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass
class ClockSpec:
    mode: str = "wall"  # wall | sim | topic
    real_time_factor: float | None = None
    topic: str = ""


@dataclass
class TapSpec:
    """Where the introspection tap listens (``tap:`` in a graph file, ``launch --tap``).

    ``secret_key``: a ZeroMQ certificate file with the server's CURVE secret key; ``clients``: a
    directory of client public-key certificates allowed in. Both are needed off loopback.
    """

    endpoint: str = DEFAULT_TAP
    secret_key: str = ""
    clients: str = ""
    loc: Loc = CLI
    control: bool = True  # the control channel next to the tap (topic pub, estop, param, node); false: watch only


@dataclass
class ProcessDecl:
    """One process of a multi-process graph (``processes:``): where it runs."""

    name: str
    host: str = DEFAULT_HOST
    loc: Loc = CLI


@dataclass
class CurveSpec:
    """``security: {curve: {secret_key, clients}}``: CURVE for topics that cross hosts over tcp.

    ``secret_key``: a ZeroMQ certificate file (``zmq.auth``) holding the graph's key pair, used by
    every process (server side of its publishers, client side of its subscribers); ``clients``: a
    directory of allowed client public-key certificates (the tap's format); ``keys``: optional
    per-process certificate files (process -> file): a process then serves and connects with its
    own key, and its subscribers accept a topic only from the key of the process that publishes it.
    """

    secret_key: str = ""
    clients: str = ""
    loc: Loc = CLI
    keys: dict[str, str] = field(default_factory=dict)


@dataclass
class NodeDecl:
    """A node as declared (after overlays), with where each part came from."""

    name: str
    class_ref: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str | list[str]] = field(default_factory=dict)  # a list only for Input(AnyMessage)
    outputs: dict[str, str | list[str]] = field(default_factory=dict)  # a list only for Output(AnyMessage)
    thread: bool = False
    on_error: str = "restart"
    locs: dict[str, Loc] = field(default_factory=dict)  # "node", "class", "params.x", "inputs.p", ...
    replaced: str = ""  # class this node had in the base graph, if an overlay replaced it
    process: str = ""  # `process:` key; "" = the implicit process (DEFAULT_PROCESS)
    host: str = ""  # the host of its process, set by validation when the graph declares processes
    unsafe_direct_command: bool = False  # a HAL that takes commands without a safety node (benchmarks)

    def loc(self, key: str) -> Loc:
        return self.locs.get(key) or self.locs.get(key.split(".")[0]) or self.locs["node"]


@dataclass
class TopicDecl:
    name: str
    type: str = ""
    external: bool = False
    loc: Loc = CLI


@dataclass
class GraphDecl:
    name: str
    path: Path
    description: str = ""
    clock: ClockSpec = field(default_factory=ClockSpec)
    clock_loc: Loc = CLI
    nodes: dict[str, NodeDecl] = field(default_factory=dict)
    topics: dict[str, TopicDecl] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # base first
    tap: TapSpec | None = None  # introspection tap: off unless a file or --tap asks for it
    processes: dict[str, ProcessDecl] = field(default_factory=dict)  # empty: one implicit process
    base_port: int = DEFAULT_BASE_PORT  # first tcp port for topics crossing hosts
    base_port_loc: Loc = CLI
    curve: CurveSpec | None = None  # `security: {curve: ...}`
    robot: str = ""  # `robot:`: the robot description every HAL, safety node and policy bundle is for
    robot_loc: Loc = CLI
    name_loc: Loc = CLI  # the `name:` key, or the file whose name the graph takes
    # Modules a `class:` from a file may name besides krabgraph's registered nodes (prefixes, e.g.
    # "mypkg" allows mypkg.nodes); None: any module (graphs built in Python, not from files).
    allow_modules: tuple[str, ...] | None = None
    # `launch --instance NAME`: another copy of the graph on this host, with its own ipc endpoints
    # and lock ("" for the default one; see launch/runtime/transport.py).
    instance: str = ""


def name_problem(name: Any) -> str:
    """Why ``name`` cannot name a graph ("" if it can): it becomes part of file and socket paths."""
    if not isinstance(name, str) or not name:
        return "a graph name must be a non-empty string"
    if len(name) > MAX_NAME_LEN:
        return f"graph name is {len(name)} characters long, over the limit of {MAX_NAME_LEN}; shorten it"
    if not NAME_RE.fullmatch(name):
        return (
            f"graph name {name!r} may hold only letters, digits, '_', '.', '+' and '-' and must start with a "
            "letter, digit or '_' (it becomes part of socket paths); rename it"
        )
    return ""


@cache
def graph_schema() -> dict:
    return json.loads((GRAPHS_DIR / "graph.schema.json").read_text())


def resolve_graph_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """A graph name under graphs/ (``parkour``), or a path (absolute or relative)."""
    p = Path(ref)
    candidates = []
    if relative_to is not None:
        candidates.append(relative_to / p)
    candidates.append(p)
    if p.suffix not in (".yaml", ".yml"):
        candidates.append(GRAPHS_DIR / f"{p}.yaml")
    candidates.append(GRAPHS_DIR / p)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    names = ", ".join(sorted(x.stem for x in GRAPHS_DIR.glob("*.yaml")))
    raise GraphError([f"graph {str(ref)!r} not found (looked for a file and under graphs/: {names})"])


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _schema_errors(data: Any, display: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(graph_schema())
    errors = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        top = err.absolute_path[0] if err.absolute_path else None
        if err.validator == "oneOf" and err.context and top not in ("clock", "tap"):
            # Report the branch that came closest (e.g. the mapping form of a node), not "none matched".
            err = max(err.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        # Find the deepest mapping on the error's path that knows a line.
        loc, node = Loc(display, 1), data
        for key in err.absolute_path:
            if isinstance(node, LocDict) and key in node:
                loc = node.where(key)
                node = node[key]
            else:
                break
        where = "/".join(map(str, err.absolute_path)) or "top level"
        what = err.message
        if err.validator == "additionalProperties" and isinstance(node, LocDict):
            extra = [k for k in node if k not in err.schema.get("properties", {})]
            if extra:
                loc = node.where(extra[0])
        if err.validator == "additionalProperties":
            what = f"{err.message}; see graphs/graph.schema.json for the allowed keys"
        elif err.validator == "oneOf" and top == "clock":
            what = "clock must be 'wall', 'sim' or {mode: wall|sim|topic, real_time_factor: N, topic: T}"
        elif err.validator == "oneOf" and top == "tap":
            what = "tap must be true, an endpoint (tcp://127.0.0.1:7447) or {endpoint, secret_key, clients, control}"
        elif err.validator == "oneOf":
            what = "must be a mapping with class/params/inputs/outputs/thread/on_error (or null to remove)"
        errors.append(f"{loc}: {where}: {what}")
    return errors


def _read(path: Path, chain: tuple[Path, ...]) -> LocDict:
    display = _display(path)
    if path in chain:
        raise GraphError([f"{display}: 'extends' loop: {' -> '.join(map(_display, (*chain, path)))}"])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        first = _display(chain[0])
        raise GraphError(
            [f"{display}: 'extends' chain longer than {MAX_EXTENDS_DEPTH} files (from {first}); shorten it"]
        )
    try:
        data = load_yaml(path, display)
    except YamlError as exc:
        raise GraphError([str(exc)]) from None
    if data is None:
        raise GraphError([f"{display}:1: graph file is empty; it needs at least 'nodes:'"])
    if not isinstance(data, LocDict):
        raise GraphError([f"{display}:1: a graph file is a mapping with 'nodes:', got {type(data).__name__}"])
    errors = _schema_errors(data, display)
    if errors:
        raise GraphError(errors)
    return data


def _node_from(name: str, raw: LocDict, key_loc: Loc) -> NodeDecl:
    decl = NodeDecl(name=name, class_ref=raw.get("class", ""), locs={"node": key_loc})
    _overlay_node(decl, raw)
    return decl


def _overlay_node(decl: NodeDecl, raw: LocDict) -> None:
    for key in ("class", "thread", "on_error", "process", "unsafe_direct_command"):
        if key in raw:
            decl.locs[key] = raw.where(key)
    if "unsafe_direct_command" in raw:
        decl.unsafe_direct_command = raw["unsafe_direct_command"]
    if "process" in raw:
        decl.process = raw["process"]
    if "class" in raw:
        decl.class_ref = raw["class"]
    if "thread" in raw:
        decl.thread = raw["thread"]
    if "on_error" in raw:
        decl.on_error = raw["on_error"]
    for section in ("params", "inputs", "outputs"):
        values = raw.get(section)
        if values is None:
            continue
        decl.locs[section] = raw.where(section)
        target = getattr(decl, section)
        for key, value in values.items():
            if value is None and section == "inputs":  # `inputs: {port: null}` disconnects an input
                target.pop(key, None)
                decl.locs.pop(f"{section}.{key}", None)
                continue
            target[key] = copy.deepcopy(value)
            decl.locs[f"{section}.{key}"] = values.where(key) if isinstance(values, LocDict) else raw.where(section)


def _load(path: Path, chain: tuple[Path, ...] = ()) -> GraphDecl:
    return _from_data(_read(path, chain), path, chain)


def _to_locdict(value: Any, display: str) -> Any:
    if isinstance(value, dict):
        out = LocDict({k: _to_locdict(v, display) for k, v in value.items()})
        out.loc, out.key_locs = Loc(display), {}
        return out
    if isinstance(value, list):
        return [_to_locdict(v, display) for v in value]
    return value


def graph_from_dict(data: dict, name: str = "inline", *, base_dir: Path | None = None) -> GraphDecl:
    """A graph from a dict shaped like a graph file; ``class`` may also be a Node subclass."""
    display = f"<{name}>"
    checked = copy.deepcopy({k: v for k, v in data.items() if k != "nodes"})
    checked["nodes"] = {
        n: None
        if d is None
        else {
            k: (f"{v.__module__}:{v.__qualname__}" if k == "class" and isinstance(v, type) else v) for k, v in d.items()
        }
        for n, d in (data.get("nodes") or {}).items()
    }
    errors = _schema_errors(_to_locdict(checked, display), display)
    if errors:
        raise GraphError(errors)
    located = _to_locdict({k: v for k, v in data.items() if k != "nodes"}, display)
    located["nodes"] = _to_locdict({}, display)
    for n, d in (data.get("nodes") or {}).items():
        located["nodes"][n] = None if d is None else _to_locdict(d, display)
    path = (base_dir or Path.cwd()) / f"{name}.yaml"
    return _from_data(located, path, ())


def _from_data(data: LocDict, path: Path, chain: tuple[Path, ...]) -> GraphDecl:
    """The graph of one file: its ``extends`` (one base graph, or a list: the base, then overlay
    files applied in order), then the file's own content on top."""
    if "extends" in data:
        refs = data["extends"]
        refs = [refs] if isinstance(refs, str) else list(refs)
        loc = data.where("extends")
        graph = _load(_resolve_extends(refs[0], path, loc), (*chain, path))
        for ref in refs[1:]:
            _apply_overlay_file(graph, _resolve_extends(ref, path, loc), (*chain, path))
    else:
        graph = GraphDecl(name=path.stem, path=path)
    graph.path = path
    _apply_file(graph, data, path)
    return graph


def _apply_overlay_file(graph: GraphDecl, path: Path, chain: tuple[Path, ...] = ()) -> None:
    """Apply an overlay file (a graph file without ``extends``) onto ``graph``."""
    data = _read(path, chain)
    if "extends" in data:
        raise GraphError(
            [
                f"{data.where('extends')}: an overlay applied after a base graph cannot extend another graph; "
                "remove its 'extends' (the base is the first entry of the list, or the graph on the command line)"
            ]
        )
    _apply_file(graph, data, path, overlay=True)


def _apply_file(graph: GraphDecl, data: LocDict, path: Path, *, overlay: bool = False) -> None:
    """One file's content onto ``graph`` (an overlay keeps the graph's name unless it sets one)."""
    display = _display(path) if path.exists() else f"<{path.stem}>"
    graph.files.append(path)
    if "name" in data or not overlay:
        graph.name = data.get("name", path.stem)
        graph.name_loc = data.where("name") if "name" in data else Loc(display)
    graph.description = data.get("description", graph.description)
    if "clock" in data:
        graph.clock, graph.clock_loc = _clock(data["clock"]), data.where("clock")
    if "robot" in data:
        graph.robot, graph.robot_loc = data["robot"], data.where("robot")
    if "tap" in data:
        graph.tap = _tap(data["tap"], data.where("tap"), path.parent)
    for pname, raw in (data.get("processes") or {}).items():
        where = data["processes"].where(pname) if isinstance(data["processes"], LocDict) else Loc(display)
        proc = graph.processes.setdefault(pname, ProcessDecl(pname, loc=where))
        if raw and "host" in raw:
            proc.host, proc.loc = raw["host"], where
    if "base_port" in data:
        graph.base_port, graph.base_port_loc = data["base_port"], data.where("base_port")
    if (data.get("security") or {}).get("curve"):
        raw = data["security"]["curve"]
        graph.curve = CurveSpec(
            *(str(path.parent / raw[k]) if raw.get(k) else "" for k in ("secret_key", "clients")),
            loc=data.where("security"),
            keys={str(p): str(path.parent / f) for p, f in (raw.get("keys") or {}).items()},
        )
    nodes = data.get("nodes") or {}
    for name, raw in nodes.items():
        key_loc = nodes.where(name) if isinstance(nodes, LocDict) else Loc(display)
        if raw is None:
            if name not in graph.nodes:
                raise GraphError([f"{key_loc}: cannot remove node {name!r}: the base graph has no such node"])
            del graph.nodes[name]
            continue
        base = graph.nodes.get(name)
        if base is None:
            if "class" not in raw:
                raise GraphError([f"{key_loc}: node {name!r} has no 'class'; add e.g. `class: fake_robot`"])
            graph.nodes[name] = _node_from(name, raw, key_loc)
        elif "class" in raw and raw["class"] != base.class_ref:
            # Replacing a node's class (sim-to-real): keep its wiring, start its params afresh.
            new = _node_from(name, raw, key_loc)
            nulled = {k for k, v in (raw.get("inputs") or {}).items() if v is None}  # `port: null` disconnects
            new.inputs = {**{k: v for k, v in base.inputs.items() if k not in nulled}, **new.inputs}
            new.outputs = {**base.outputs, **new.outputs}
            new.locs = {**{k: v for k, v in base.locs.items() if k.startswith(("inputs", "outputs"))}, **new.locs}
            new.replaced = base.replaced or base.class_ref
            if "process" not in raw and base.process:  # placement is kept like wiring
                new.process, new.locs["process"] = base.process, base.loc("process")
            graph.nodes[name] = new
        else:
            _overlay_node(base, raw)
    for name, raw in (data.get("topics") or {}).items():
        graph.topics[name] = TopicDecl(
            name, raw.get("type", ""), raw.get("external", False), data["topics"].where(name)
        )


def _resolve_extends(ref: str, path: Path, loc: Loc) -> Path:
    try:
        return resolve_graph_path(ref, relative_to=path.parent)
    except GraphError as exc:
        raise GraphError([f"{loc}: extends: {exc.errors[0]}"]) from None


def _tap(raw: Any, loc: Loc, base: Path) -> TapSpec | None:
    if raw is False or raw is None:
        return None
    if raw is True:
        return TapSpec(loc=loc)
    if isinstance(raw, str):
        return TapSpec(raw, loc=loc)

    def path(key: str) -> str:
        return str(base / raw[key]) if raw.get(key) else ""

    return TapSpec(raw.get("endpoint", DEFAULT_TAP), path("secret_key"), path("clients"), loc, raw.get("control", True))


def _clock(raw: Any) -> ClockSpec:
    if isinstance(raw, str):
        return ClockSpec(mode=raw)
    return ClockSpec(mode=raw["mode"], real_time_factor=raw.get("real_time_factor"), topic=raw.get("topic", ""))


def parse_value(text: str) -> Any:
    """A command-line value, read as YAML (``1.5`` → float, ``[1, 2]`` → list, ``abc`` → str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(graph: GraphDecl, sets: list[str], replaces: list[str]) -> None:
    """``--replace node=Class`` (like an overlay replacing a class) then ``--set node.param=value``."""
    errors = []
    for item in replaces:
        name, sep, cls = item.partition("=")
        if not sep or not name or not cls:
            errors.append(f"{CLI}: --replace {item!r}: expected NODE=CLASS, e.g. --replace hal=go2_real_hal")
        elif name not in graph.nodes:
            errors.append(f"{CLI}: --replace {item!r}: no node {name!r} (nodes: {', '.join(graph.nodes)})")
        else:
            base = graph.nodes[name]
            base.replaced = base.replaced or base.class_ref
            base.class_ref, base.params = cls, {}
            base.unsafe_direct_command = False  # like parameters, an opt-out does not pass to another class
            base.locs = {k: v for k, v in base.locs.items() if not k.startswith(("params", "unsafe"))}
            base.locs["class"] = CLI
    for item in sets:
        target, sep, value = item.partition("=")
        node, dot, param = target.partition(".")
        if not sep or not dot or not node or not param:
            errors.append(f"{CLI}: --set {item!r}: expected NODE.PARAM=VALUE, e.g. --set hal.terrain=flat")
        elif node not in graph.nodes:
            errors.append(f"{CLI}: --set {item!r}: no node {node!r} (nodes: {', '.join(graph.nodes)})")
        else:
            graph.nodes[node].params[param] = parse_value(value)
            graph.nodes[node].locs[f"params.{param}"] = CLI
    if errors:
        raise GraphError(errors)


def parse_clock(text: str) -> ClockSpec:
    """``wall``, ``sim`` (lockstep, as fast as possible), ``sim:1.0`` (paced) or ``topic:hal/clock``."""
    mode, _, arg = text.partition(":")
    if mode == "wall" and not arg:
        return ClockSpec("wall")
    if mode == "sim":
        try:
            rtf = float(arg) if arg else None
        except ValueError:
            rtf = -1.0
        if rtf is None or rtf > 0:
            return ClockSpec("sim", rtf)
    if mode == "topic" and arg:
        return ClockSpec("topic", topic=arg)
    raise GraphError([f"{CLI}: --clock {text!r}: expected wall, sim, sim:<real-time factor > 0> or topic:<topic>"])


def load_graph(
    ref: str | Path,
    *,
    sets: list[str] = (),
    replaces: list[str] = (),
    clock: str | None = None,
    tap: str | None = None,
    allow_modules: Sequence[str] | None = (),
    overlays: Sequence[str | Path] = (),
) -> GraphDecl:
    """Load a graph by name or path, with its ``extends`` chain, ``overlays`` (files applied in
    order, ``--overlay``; a name under graphs/ or a path) and command-line overrides.

    ``tap``: an endpoint to open the introspection tap on (overrides the file's ``tap:``
    endpoint, keeping its keys); ``""`` for the file's endpoint or the default.
    ``allow_modules``: modules (and their submodules) a file's ``class:`` may name besides
    krabgraph's registered nodes (``--allow-module``); ``None`` allows any module.
    """
    graph = _load(resolve_graph_path(ref))
    for overlay in overlays:
        try:
            overlay_path = resolve_graph_path(overlay)
        except GraphError as exc:
            raise GraphError([f"{CLI}: --overlay: {exc.errors[0]}"]) from None
        _apply_overlay_file(graph, overlay_path, (graph.path,))
    graph.allow_modules = None if allow_modules is None else tuple(allow_modules)
    apply_overrides(graph, list(sets), list(replaces))
    if clock is not None:
        graph.clock, graph.clock_loc = parse_clock(clock), CLI
    if tap is not None:
        graph.tap = graph.tap or TapSpec()
        if tap:
            graph.tap.endpoint, graph.tap.loc = tap, CLI
    return graph
