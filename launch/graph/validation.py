"""Check a declared graph against its node classes, before anything starts.

Rejected, each with file:line and a fix: unknown node class; unknown, mistyped or invalid
parameter; unknown port; port type mismatch; required input unconnected; a topic nobody publishes;
several publishers on a topic that allows one; a bad clock or error policy; and what
``krabgraph.launch.graph.checks`` proves (node classes' static checks, one robot, commands through a
safety node, no self-wiring or zero-delay cycle).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krabgraph.launch.api.errors import GraphError, ParamError
from krabgraph.launch.api.ports import AnyMessage
from krabgraph.launch.graph import checks
from krabgraph.launch.graph.declaration import (
    CLI,
    DEFAULT_PROCESS,
    ON_ERROR,
    GraphDecl,
    ProcessDecl,
    name_problem,
)
from krabgraph.launch.graph.model import Graph, NodeSpec, TopicInfo, default_topic
from krabgraph.launch.graph.registry import resolve_class
from krabgraph.msgs.schema import message_class

if TYPE_CHECKING:
    from krabgraph.launch.api.node import Node
    from krabgraph.launch.graph.declaration import NodeDecl
    from krabgraph.launch.graph.yamlloc import Loc


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


@dataclasses.dataclass
class _Build:
    """What the passes of ``build_graph`` share: the declaration, the problems found and what is built."""

    decl: GraphDecl
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    specs: dict[str, NodeSpec] = dataclasses.field(default_factory=dict)
    checkable: set[str] = dataclasses.field(default_factory=set)  # valid parameters: static checks can run
    unresolved: set[str] = dataclasses.field(default_factory=set)  # an unresolvable node's topics: no follow-ons
    raw_patterns: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=dict)  # node -> port -> globs
    topics: dict[str, TopicInfo] = dataclasses.field(default_factory=dict)


def build_graph(decl: GraphDecl) -> Graph:
    """Validate ``decl``; raise ``GraphError`` listing every problem, or return the ``Graph``."""
    st = _Build(decl)
    _check_header(st)
    for name, nd in decl.nodes.items():
        _resolve_node(st, name, nd)
    _collect_topics(st)
    _check_topics(st)
    _check_clock_use(st)
    processes = _check_processes(decl, st.specs, st.errors)
    robot = _check_graph(st)
    if st.errors:
        raise GraphError(st.errors)
    graph = Graph(decl.name, decl.description, decl.clock, st.specs, st.topics, decl, processes, robot, st.warnings)
    st.errors += _check_ipc_paths(graph)
    st.errors += _check_crossings(graph)
    if st.errors:
        raise GraphError(st.errors)
    _secure_tap(decl)
    return graph


def _check_header(st: _Build) -> None:
    """The graph's name, and a topic clock names its topic."""
    decl = st.decl
    problem = name_problem(decl.name)
    if problem:
        st.errors.append(f"{decl.name_loc}: {problem}")
    if decl.clock.mode == "topic" and not decl.clock.topic:
        st.errors.append(f"{decl.clock_loc}: clock mode 'topic' needs `topic:` naming the Clock topic, e.g. hal/clock")


def _resolve_node(st: _Build, name: str, nd: NodeDecl) -> None:
    """One node: class, parameters, error policy and ports, into ``st.specs``; then its static checks."""
    cls = _resolve_class(st, name, nd)
    if cls is None:
        return
    before = len(st.errors)
    params = _check_params(st, name, nd, cls)
    params_ok = len(st.errors) == before
    if nd.on_error not in ON_ERROR:
        st.errors.append(f"{nd.loc('on_error')}: node {name!r}: on_error must be one of {list(ON_ERROR)}")
    _check_port_names(st, name, nd, cls)
    inputs, outputs, raw_outputs = _resolve_ports(st, name, nd, cls)
    spec = NodeSpec(name, cls, params, inputs, outputs, nd.thread, nd.on_error, nd)
    spec.raw_outputs = raw_outputs
    st.specs[name] = spec
    if params_ok:
        st.checkable.add(name)
        checks.check_node_params(spec, st.errors, st.warnings)


def _resolve_class(st: _Build, name: str, nd: NodeDecl) -> type[Node] | None:
    """The node's class, or None (reported; an unresolvable node's topics get no follow-on errors)."""
    if not nd.class_ref:
        st.errors.append(f"{nd.loc('class')}: node {name!r} has no class; add `class: <name>` (see `krabgraph nodes`)")
        return None
    try:
        # A class named on the command line (--replace) is the user's explicit choice.
        where = nd.loc("class")
        return resolve_class(
            nd.class_ref,
            allow=None if where == CLI else st.decl.allow_modules,
            base_dir=_folder_of(where, st.decl),
        )
    except LookupError as exc:
        st.errors.append(f"{nd.loc('class')}: node {name!r}: {exc}")
        st.unresolved.update(nd.outputs.values())
        st.unresolved.add(f"{name}/")
        return None


def _check_params(st: _Build, name: str, nd: NodeDecl, cls: type[Node]) -> dict[str, Any]:
    """The node's validated parameters (a `robot` parameter defaults to the graph's robot)."""
    params = {}
    param_specs = cls.params()
    values = dict(nd.params)
    if st.decl.robot and "robot" in param_specs and "robot" not in values:
        values["robot"] = st.decl.robot  # the robot is declared once: a `robot` parameter defaults to it
    for key, value in values.items():
        spec = param_specs.get(key)
        if spec is None:
            hint = _suggest(key, list(param_specs))
            known = ", ".join(param_specs) or "none"
            st.errors.append(
                f"{nd.loc('params.' + key)}: node {name!r}: unknown parameter {key!r} for "
                f"{cls.__name__}; {hint}known: {known}"
            )
            continue
        try:
            params[key] = spec.validate(value)
        except ParamError as exc:
            st.errors.append(f"{nd.loc('params.' + key)}: node {name!r}: {exc}")
    for key, spec in param_specs.items():
        if key not in values and spec.required:
            st.errors.append(
                f"{nd.loc('node')}: node {name!r}: missing required parameter {key!r} "
                f"({spec.describe()}); add it under params:"
            )
    return params


def _check_port_names(st: _Build, name: str, nd: NodeDecl, cls: type[Node]) -> None:
    """Every port the node wires exists on its class."""
    for section, ports in (("inputs", cls.inputs()), ("outputs", cls.outputs())):
        for port in getattr(nd, section):
            if port not in ports:
                hint = _suggest(port, list(ports))
                known = ", ".join(ports) or "none"
                st.errors.append(
                    f"{nd.loc(f'{section}.{port}')}: node {name!r}: {cls.__name__} has no "
                    f"{section[:-1]} port {port!r}; {hint}{section[:-1]} ports: {known}"
                )


def _resolve_ports(
    st: _Build, name: str, nd: NodeDecl, cls: type[Node]
) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """The node's typed inputs and outputs (one topic each) and raw outputs; raw input patterns into
    ``st.raw_patterns``; required inputs are connected."""
    inputs, outputs = cls.inputs(), cls.outputs()
    resolved_outputs = {p: nd.outputs.get(p, default_topic(name, p)) for p in outputs if not outputs[p].raw}
    raw_outputs = {
        p: [t] if isinstance(t, str) else list(t) for p, t in nd.outputs.items() if p in outputs and outputs[p].raw
    }
    resolved_inputs = {p: t for p, t in nd.inputs.items() if p in inputs and not inputs[p].raw}
    for port, value in [*resolved_inputs.items(), *resolved_outputs.items()]:
        if not isinstance(value, str):
            section = "inputs" if port in resolved_inputs else "outputs"
            spec = inputs[port] if section == "inputs" else outputs[port]
            st.errors.append(
                f"{nd.loc(f'{section}.{port}')}: node {name!r}: {section[:-1]} {port!r} "
                f"({spec.msg_type.__name__}) takes one topic, got a list; only AnyMessage ports "
                "(recorder, replay, foxglove) take several"
            )
    resolved_outputs = {p: t for p, t in resolved_outputs.items() if isinstance(t, str)}
    resolved_inputs = {p: t for p, t in resolved_inputs.items() if isinstance(t, str)}
    st.raw_patterns[name] = {
        p: [t] if isinstance(t, str) else list(t) for p, t in nd.inputs.items() if p in inputs and inputs[p].raw
    }
    for port, spec in inputs.items():
        if port not in nd.inputs and spec.required:
            st.errors.append(
                f"{nd.loc('node')}: node {name!r}: required input {port!r} "
                f"({spec.msg_type.__name__}) is not connected; add `inputs: {{{port}: <topic>}}`"
            )
    return resolved_inputs, resolved_outputs, raw_outputs


def _collect_topics(st: _Build) -> None:
    """``st.topics``: the declared topics (their types checked), then every publisher and subscriber."""
    topics = st.topics
    for tname, td in st.decl.topics.items():
        msg_type = None
        if td.type:
            try:
                msg_type = message_class(td.type)
            except (KeyError, ImportError, AttributeError):
                st.errors.append(f"{td.loc}: topic {tname!r}: unknown message type {td.type!r}")
        topics[tname] = TopicInfo(tname, msg_type, external=td.external)
    for name, spec in st.specs.items():
        for port, topic in spec.outputs.items():
            topics.setdefault(topic, TopicInfo(topic, None)).publishers.append((name, port))
        for port, names in spec.raw_outputs.items():
            for topic in names:
                topics.setdefault(topic, TopicInfo(topic, None)).publishers.append((name, port))
    for name, spec in st.specs.items():
        for port, topic in spec.inputs.items():
            topics.setdefault(topic, TopicInfo(topic, None)).subscribers.append((name, port))
    st.errors += _expand_raw_inputs(st.specs, st.raw_patterns, topics)
    for name, spec in st.specs.items():
        for port, names in spec.raw_inputs.items():
            for topic in names:
                topics.setdefault(topic, TopicInfo(topic, None)).subscribers.append((name, port))


def _check_topics(st: _Build) -> None:
    """Each topic's type settled and its publishers and subscribers checked."""
    for tname, info in st.topics.items():
        publishers = [(n, p, st.specs[n].cls.outputs()[p]) for n, p in info.publishers]
        _check_publishers(st, tname, info, publishers)
        _check_subscribers(st, tname, info, bool(publishers))


def _check_publishers(st: _Build, tname: str, info: TopicInfo, publishers: list[tuple[str, str, Any]]) -> None:
    """One type per topic (set on ``info`` when undeclared); one publisher unless all are shared."""
    specs = st.specs
    types = {o.msg_type for _, _, o in publishers if not o.raw}
    if info.msg_type is not None:
        types.add(info.msg_type)
    if len(types) > 1:
        where = ", ".join(f"{n}.{p} ({o.msg_type.__name__})" for n, p, o in publishers)
        st.errors.append(
            f"{specs[publishers[0][0]].decl.loc('outputs.' + publishers[0][1])}: topic {tname!r} "
            f"has publishers of different types: {where}; give each its own topic"
        )
    if info.msg_type is None and types:
        info.msg_type = next(iter(types))
    if info.msg_type is None:  # only raw publishers: the typed subscribers say what it carries
        wanted = [specs[n].cls.inputs()[p].msg_type for n, p in info.subscribers]
        wanted = [t for t in wanted if t is not AnyMessage]
        if wanted:
            info.msg_type = wanted[0]
    if len(publishers) > 1 and not all(o.shared for _, _, o in publishers):
        where = ", ".join(f"{n}.{p} ({specs[n].decl.loc('outputs.' + p)})" for n, p, _ in publishers)
        st.errors.append(
            f"{specs[publishers[1][0]].decl.loc('outputs.' + publishers[1][1])}: topic {tname!r} "
            f"has {len(publishers)} publishers ({where}) but allows one; remap one output to "
            f"another topic, or declare the outputs shared=True"
        )


def _check_subscribers(st: _Build, tname: str, info: TopicInfo, published: bool) -> None:
    """Each subscriber's topic has a publisher (or is external) and the type its input expects."""
    for n, p in info.subscribers:
        spec_in = st.specs[n].cls.inputs()[p]
        loc = st.specs[n].decl.loc(f"inputs.{p}")
        follow_on = tname in st.unresolved or tname.split("/")[0] + "/" in st.unresolved
        if not published and not info.external and follow_on:
            pass
        elif not published and not info.external:
            candidates = [t for t, i in st.topics.items() if i.publishers]
            hint = _suggest(tname, candidates)
            st.errors.append(
                f"{loc}: node {n!r}: input {p!r} is wired to topic {tname!r}, which nothing "
                f"publishes; {hint}published topics: {', '.join(sorted(candidates)) or 'none'}"
            )
        elif info.msg_type is not None and not spec_in.raw and spec_in.msg_type is not info.msg_type:
            st.errors.append(
                f"{loc}: node {n!r}: input {p!r} expects {spec_in.msg_type.__name__} but topic "
                f"{tname!r} carries {info.msg_type.__name__}; wire it to a "
                f"{spec_in.msg_type.__name__} topic"
            )


def _check_clock_use(st: _Build) -> None:
    """A clock topic carries Clock; a sim clock has no threaded nodes."""
    decl, clock = st.decl, st.decl.clock
    if clock.mode == "topic" and clock.topic and clock.topic in st.topics:
        t = st.topics[clock.topic].msg_type
        if t is not None and t.DESCRIPTOR.full_name != "krabgraph.msgs.Clock":
            st.errors.append(f"{decl.clock_loc}: clock topic {clock.topic!r} carries {t.__name__}, not Clock")
    if clock.mode == "sim":
        for name, spec in st.specs.items():
            if spec.thread:
                st.errors.append(
                    f"{spec.decl.loc('thread')}: node {name!r}: `thread: true` is not allowed with "
                    f"clock 'sim' (lockstep runs single-threaded); remove it or use clock 'wall'"
                )


def _check_graph(st: _Build) -> str:
    """The graph-level checks (``checks``), the tap, and at least one node; returns the robot."""
    decl = st.decl
    checks.check_clock(decl, st.errors)
    robot = checks.check_robot(decl, {n: s for n, s in st.specs.items() if n in st.checkable}, st.errors)
    checks.check_commands(st.specs, st.topics, st.errors, st.warnings)
    checks.check_loops(st.specs, st.topics, st.errors)
    if decl.tap is not None:
        from krabgraph.launch.graph.endpoints import check_tap

        st.errors += check_tap(decl.tap)
    if not st.specs and not st.errors:
        st.errors.append(f"{decl.files[-1] if decl.files else decl.name}: the graph has no nodes")
    return robot


SECURITY_HINT = (
    "add `security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}` (make the keys with "
    "`krabgraph keys keys graph`)"
)


def _check_crossings(graph: Graph) -> list[str]:
    """No topic crosses a process boundary over tcp unauthenticated, loopback included.

    Without CURVE, whoever binds a publisher's port first (say after its process died) publishes
    on the topic, and a foreign local account can bind 127.0.0.1 as well as any other address.
    """
    from krabgraph.launch.graph.endpoints import plan

    if graph.decl.curve is not None or len(graph.processes) < 2:
        return []
    tcp = [e for e in plan(graph).values() if e.tcp]
    if not tcp:
        return []

    def commands_first(e: Any) -> tuple[bool, bool, str]:  # commands to a HAL or safety node first
        info = graph.topics[e.topic]
        robot_side = bool({graph.nodes[n].cls.kind for n, _ in info.subscribers} & {"hal", "safety"})
        command = robot_side and info.msg_type is not None and "Command" in info.msg_type.__name__
        return (not command, not robot_side, e.topic)

    tcp.sort(key=commands_first)
    first = tcp[0]
    readers = sorted({graph.nodes[n].process for n, _ in graph.topics[first.topic].subscribers} - {first.process})
    what = f"topic {first.topic!r}" + (f" and {len(tcp) - 1} more" if len(tcp) > 1 else "")
    proc = graph.processes[first.process]
    return [
        f"{proc.loc}: {what} cross from process {first.process!r} ({proc.host}) to {', '.join(map(repr, readers))} "
        f"over tcp ({first.tcp}) without authentication: whoever binds that port first (e.g. after "
        f"{first.process!r} dies; a foreign local account can bind loopback too) publishes on it; {SECURITY_HINT}, "
        "or put the processes on one host (ipc, in a private directory)"
    ]


def _check_process_keys(decl: GraphDecl, processes: dict[str, ProcessDecl]) -> list[str]:
    """Per-process keys (``security.curve.keys``): one per process, private, each authorized in ``clients``."""
    from krabgraph.launch.graph.keyfiles import clients_dir_problems, public_half, secret_key_problem

    curve = decl.curve
    if curve is None or not curve.keys:
        return []
    where = f"{curve.loc}: security.curve.keys"
    errors = []
    for proc in curve.keys:
        if proc not in decl.processes and proc not in processes:
            hint = _suggest(proc, list(processes))
            errors.append(f"{where}: unknown process {proc!r}; {hint}processes: {', '.join(processes)}")
    missing = [p for p in processes if p not in curve.keys]
    if missing:
        errors.append(
            f"{where}: process(es) {', '.join(map(repr, missing))} have no key; give every process its own "
            "(`krabgraph keys keys NAME`)"
        )
    seen: dict[str, str] = {}
    for proc, path in curve.keys.items():
        if not Path(path).exists() and public_half(path) != Path(path):
            seen[path] = proc  # another host's process: this host holds its public half only
            continue
        problem = secret_key_problem(path, f"{where}.{proc}")
        if problem:
            errors.append(problem)
            continue
        if path in seen:
            errors.append(f"{where}.{proc}: shares {path} with process {seen[path]!r}; each process needs its own key")
        seen[path] = proc
    if errors or clients_dir_problems(curve.clients, where):
        return errors  # the clients folder's own problems are reported by check_curve
    import zmq.auth

    try:
        allowed = zmq.auth.load_certificates(curve.clients)
        for proc, path in curve.keys.items():
            public, secret = zmq.auth.load_certificate(public_half(path) if not Path(path).exists() else path)
            if secret is None and Path(path).exists():
                errors.append(f"{where}.{proc}: {path} holds no secret key")
            elif public not in allowed:
                errors.append(
                    f"{where}.{proc}: the public half of {path} is not in clients ({curve.clients}): the other "
                    f"processes would refuse {proc!r}; copy {Path(path).with_suffix('.key').name} there"
                )
    except (OSError, ValueError) as exc:
        errors.append(f"{where}: cannot read a key: {exc}")
    return errors


def _secure_tap(decl: GraphDecl) -> None:
    """A graph with ``security:`` authenticates its tap too: without keys of its own, the tap serves
    with the key of the process it opens in (the first) and lets in only the graph's ``clients``."""
    tap, curve = decl.tap, decl.curve
    if tap is None or curve is None or tap.secret_key:
        return
    from krabgraph.launch.graph.keyfiles import process_secret

    first = next(iter(decl.processes), "")
    decl.tap = dataclasses.replace(tap, secret_key=process_secret(curve, first), clients=curve.clients)


def _check_ipc_paths(graph: Graph) -> list[str]:
    """Every ipc endpoint fits a unix socket path (``sun_path``: 107 bytes and a NUL on Linux)."""
    from krabgraph.launch.graph.endpoints import SUN_PATH_MAX, ipc_dir, plan
    from krabgraph.launch.graph.keyfiles import private_dir_problem

    errors = []
    tap = graph.decl.tap
    if tap is not None and tap.endpoint.startswith("ipc://"):
        path = tap.endpoint.removeprefix("ipc://")
        if len(path.encode()) > SUN_PATH_MAX:
            errors.append(
                f"{tap.loc}: tap endpoint {tap.endpoint!r}: the socket path is {len(path.encode())} bytes, over the "
                f"{SUN_PATH_MAX}-byte limit of a unix socket path; use a shorter path"
            )
    if tap is not None and tap.endpoint.startswith("ipc://"):
        problem = private_dir_problem(Path(tap.endpoint.removeprefix("ipc://")).parent, "the tap's ipc socket")
        if problem:
            errors.append(f"{tap.loc}: tap endpoint {tap.endpoint!r}: {problem}")
    if len(graph.processes) < 2 or name_problem(graph.name):
        return errors
    paths = [e.ipc.removeprefix("ipc://") for e in plan(graph).values() if e.ipc]
    problem = private_dir_problem(ipc_dir()) if paths else ""
    if problem:
        errors.append(f"{graph.decl.name_loc}: {problem}")
    longest = max(paths, key=lambda p: len(p.encode()), default="")
    if len(longest.encode()) > SUN_PATH_MAX:
        errors.append(
            f"{graph.decl.name_loc}: ipc socket path {longest!r} is {len(longest.encode())} bytes, over the "
            f"{SUN_PATH_MAX}-byte limit of a unix socket path; shorten the graph name ({len(graph.name)} "
            "characters) or set TMPDIR to a shorter directory"
        )
    return errors


def _check_processes(decl: GraphDecl, specs: dict[str, NodeSpec], errors: list[str]) -> dict[str, ProcessDecl]:
    """Place every node on a process; check clock, hosts and CURVE keys. Returns the processes used."""
    from krabgraph.launch.graph.keyfiles import check_curve

    declared = decl.processes or {DEFAULT_PROCESS: ProcessDecl(DEFAULT_PROCESS)}
    names = ", ".join(declared)
    for name, nd in decl.nodes.items():
        proc = nd.process or DEFAULT_PROCESS
        if proc in declared:
            if name in specs:
                specs[name].process = proc
                nd.host = declared[proc].host if decl.processes else ""
        elif nd.process:
            hint = _suggest(proc, list(declared))
            errors.append(
                f"{nd.loc('process')}: node {name!r}: unknown process {proc!r}; {hint}processes: {names}"
                + ("" if decl.processes else " (declare more under `processes:`)")
            )
        else:
            errors.append(f"{nd.loc('node')}: node {name!r} has no process; add `process: NAME` (processes: {names})")
    used = {nd.process or DEFAULT_PROCESS for nd in decl.nodes.values()}
    processes = {n: p for n, p in declared.items() if n in used}
    if len(processes) > 1 and decl.clock.mode == "sim":
        errors.append(
            f"{decl.clock_loc}: clock 'sim' with {len(processes)} processes ({', '.join(processes)}): "
            "lockstep runs in one process; use clock wall"
        )
    if decl.curve is not None:
        errors += check_curve(decl.curve.secret_key, decl.curve.clients, f"{decl.curve.loc}: security")
        errors += _check_process_keys(decl, processes)
    if not 0 < decl.base_port < 65536:
        errors.append(f"{decl.base_port_loc}: base_port {decl.base_port} is not a tcp port")
    return processes


def _expand_raw_inputs(
    specs: dict[str, NodeSpec], patterns: dict[str, dict[str, list[str]]], topics: dict[str, TopicInfo]
) -> list[str]:
    """Resolve the topic lists of ``Input(AnyMessage)`` ports into ``NodeSpec.raw_inputs``.

    A name is taken as is (a missing publisher is reported like any input's); a glob (``hal/*``)
    matches the topics something publishes or the graph declares, except the node's own outputs,
    and must match at least one.
    """
    errors = []
    known = sorted(t for t, i in topics.items() if i.publishers or i.external)
    for name, ports in patterns.items():
        spec = specs.get(name)
        if spec is None:
            continue
        own = {*spec.outputs.values(), *(t for ts in spec.raw_outputs.values() for t in ts)}
        for port, entries in ports.items():
            names: list[str] = []
            for entry in entries:
                if any(c in entry for c in "*?["):
                    matched = [t for t in fnmatch.filter(known, entry) if t not in own]
                    if not matched:
                        errors.append(
                            f"{spec.decl.loc(f'inputs.{port}')}: node {name!r}: input {port!r}: pattern "
                            f"{entry!r} matches no topic; topics: {', '.join(known) or 'none'}"
                        )
                    names += matched
                else:
                    names.append(entry)
            spec.raw_inputs[port] = list(dict.fromkeys(names))
    return errors


def _folder_of(loc: Loc, decl: GraphDecl) -> Path | None:
    """The folder of the file ``loc`` points into (a node file's base); the graph's, from the command line."""
    path = Path(loc.file)
    if path.is_file():
        return path.resolve().parent
    return decl.path.parent if decl.path is not None else None


def load_and_build(
    ref: Any,
    *,
    sets: list[str] = (),
    replaces: list[str] = (),
    clock: str | None = None,
    tap: str | None = None,
    allow_modules: Sequence[str] | None = (),
    overlays: Sequence[str] = (),
) -> Graph:
    """Load a graph file (with overlays and overrides) and validate it; see ``load_graph``."""
    from krabgraph.launch.graph.declaration import load_graph

    decl = load_graph(
        ref, sets=sets, replaces=replaces, clock=clock, tap=tap, allow_modules=allow_modules, overlays=overlays
    )
    return build_graph(decl)
