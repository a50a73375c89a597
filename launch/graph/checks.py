"""What ``krabgraph check`` proves beyond types and wiring, before anything starts.

- Each node class's own static checks (``Node.check_params``): a policy bundle that exists and
  loads, a well-formed schedule, a robot description and a MuJoCo model that are there; a HAL
  whose backend ignores command gains (a warning).
- One robot per graph: the top-level ``robot:`` (or, without it, the robot of the HAL), which every
  HAL, safety node and policy bundle agrees with (same robot; the bundle's joints on the robot;
  the bundle's control period equal to the robot's). See ``Node.robot_use``.
- Every joint command a HAL executes comes from a safety node; ``unsafe_direct_command: true`` on
  the HAL opts out (benchmarks only) and is reported as a warning.
- No node reads its own output, and no topic cycle publishes without delay: a cycle in which every
  input on the way may publish on receipt (``Input(triggers=True)``, the default) circles forever.
- Numbers: a clock's real-time factor.

Robot descriptions and policy bundles are looked up through the robot catalog that the
``krabgraph.robots`` entry point names (krabgraph's own: ``krabgraph.nodes.catalog``), never by
importing ``krabgraph.nodes``: the graph layer knows node classes only through their hooks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from krabgraph.launch.api.checks import RobotUse
    from krabgraph.launch.graph.declaration import GraphDecl
    from krabgraph.launch.graph.model import NodeSpec, TopicInfo
    from krabgraph.launch.graph.yamlloc import Loc

MAX_CYCLES_REPORTED = 5
DT_TOLERANCE = 1e-6  # relative: control periods closer than this are equal
CATALOG_GROUP = "krabgraph.robots"  # entry point group naming the robot catalog
OWN_CATALOG = "krabgraph.nodes"  # krabgraph's own catalog wins over a plug-in's


class RobotFacts(Protocol):
    """What the robot checks read from a robot description."""

    name: str
    joint_names: tuple[str, ...]
    control_dt: float


class RobotCatalog(Protocol):
    """Robot descriptions and policy bundles, as the ``krabgraph.robots`` entry point provides them."""

    def describe(self, name: str) -> RobotFacts:
        """The description ``name`` (a name or a path); raises ``ValueError`` saying why it cannot be used."""
        ...

    def bundles_for(self, robot: str) -> list[str]:
        """Known policy bundles made for ``robot`` (suggested when a bundle is for another robot)."""
        ...


@functools.cache
def robot_catalog() -> RobotCatalog:
    """The registered robot catalog (krabgraph's own first); ``LookupError`` if none is registered."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=CATALOG_GROUP), key=lambda e: not e.value.startswith(OWN_CATALOG))
    if not found:
        raise LookupError(
            f"no robot catalog is registered (the {CATALOG_GROUP} entry point is missing): install krabgraph "
            "with `make setup` (pip install -e .), not by putting the source tree on PYTHONPATH"
        )
    return found[0].load()


@dataclass
class _Facts:
    """A robot use resolved: a description loaded, with where it comes from for messages."""

    node: str
    kind: str
    loc: Loc
    subject: str  # "its `robot` parameter 'go2'", "policy bundle 'go2_walk'"
    param: str
    name: str | None
    joints: tuple[str, ...] | None
    exact: bool
    dt: float | None
    origin: str = ""  # as the graph's reference: "`robot:` at g.yaml:1"


def call_hook(spec: NodeSpec, hook: str, errors: list[str]) -> Any:
    """Run a class's static hook on the node's parameters; a hook that raises is reported, not propagated."""
    params = {k: p.default for k, p in spec.cls.params().items() if not p.required} | spec.params
    try:
        return getattr(spec.cls, hook)(params)
    except Exception as exc:  # a plug-in's bug must not turn `check` into a traceback
        errors.append(
            f"{spec.decl.loc('node')}: node {spec.name!r}: {spec.cls.__name__}.{hook} failed: "
            f"{type(exc).__name__}: {exc}; fix the node class"
        )
        return None


def check_node_params(spec: NodeSpec, errors: list[str], warnings: list[str]) -> None:
    """``Node.check_params`` of one node, each finding at the line of the parameter it names."""
    for problem in call_hook(spec, "check_params", errors) or ():
        loc = spec.decl.loc(f"params.{problem.param}") if problem.param else spec.decl.loc("node")
        (warnings if problem.warning else errors).append(f"{loc}: node {spec.name!r}: {problem.message}")


# -- one robot -----------------------------------------------------------------------------------


def _resolve(name: str, spec: NodeSpec, use: RobotUse, decl: GraphDecl, errors: list[str]) -> _Facts | None:
    explicit = use.param in spec.decl.params
    inherited = not explicit and use.param == "robot" and bool(decl.robot)
    where = f"params.{use.param}" if explicit else "node"
    loc = decl.robot_loc if inherited else spec.decl.loc(where)
    subject = use.what or f"its `{use.param}` parameter{'' if explicit or inherited else ' (default)'}"
    facts = _Facts(name, spec.cls.kind, loc, subject, use.param, None, use.joints, use.exact, use.control_dt)
    if use.robot is not None:
        try:
            robot = robot_catalog().describe(use.robot)
        except ValueError as exc:
            if inherited:
                return None  # the graph's `robot:` is reported once
            if use.param == "robot":  # the node's own description: it cannot start without it
                errors.append(f"{loc}: node {name!r}: {use.param}: {exc}")
                return None
            facts.name = use.robot  # e.g. a bundle for a robot krabgraph has no description of
            return facts
        facts.name, facts.dt = robot.name, facts.dt if facts.dt is not None else robot.control_dt
        if facts.joints is None:
            facts.joints, facts.exact = robot.joint_names, True
    return facts


def _reference(decl: GraphDecl, uses: list[_Facts], errors: list[str]) -> _Facts | None:
    """The graph's robot: ``robot:``, else a HAL's, else any node's that names one, else a HAL's joints."""
    if decl.robot:
        try:
            robot = robot_catalog().describe(decl.robot)
        except ValueError as exc:
            errors.append(f"{decl.robot_loc}: robot: {exc}")
            return None
        return _Facts(
            "", "", decl.robot_loc, "", "robot", robot.name, robot.joint_names, True, robot.control_dt,
            origin=f"`robot:` at {decl.robot_loc}",
        )  # fmt: skip
    hals = [u for u in uses if u.kind == "hal"]
    ref = next((u for u in hals if u.name), None) or next((u for u in uses if u.name), None)
    ref = ref or (hals[0] if hals else None)
    if ref is not None:
        role = "HAL node" if ref.kind == "hal" else "node"
        what = "the robot" if ref.param == "robot" else ref.subject
        ref.origin = f"{what} of {role} {ref.node!r} at {ref.loc}"
    return ref


def _label(ref: _Facts) -> str:
    return f"robot {ref.name!r}" if ref.name else f"HAL node {ref.node!r}"


def _hz(dt: float) -> str:
    return f"{dt:g} s ({1.0 / dt:g} Hz)"


def _fix(u: _Facts, ref: _Facts, decl: GraphDecl, *, rate: bool = False) -> str:
    if u.param == "bundle":
        if rate and ref.dt:
            return f"use a bundle trained at {1.0 / ref.dt:g} Hz"
        known = robot_catalog().bundles_for(ref.name) if ref.name else []
        shipped = f" (shipped: {', '.join(known)})" if known else ""
        return f"use a bundle made for {_label(ref)}{shipped}"
    if rate or u.param != "robot":
        return f"change its `{u.param}` parameter to match"
    if decl.robot:
        return f"remove the node's `robot` parameter (it then takes the graph's `robot:`) or set it to {ref.name!r}"
    return (
        f"declare the robot once at the top of the graph file (`robot: {ref.name or 'NAME'}`) and remove the "
        f"nodes' `robot` parameters, or set this one to {ref.name!r}"
    )


def check_robot(decl: GraphDecl, specs: dict[str, NodeSpec], errors: list[str]) -> str:
    """Every HAL, safety node and policy bundle agrees with the graph's robot; returns its name ("" if none)."""
    try:
        if decl.robot or specs:
            robot_catalog()
    except LookupError as exc:
        errors.append(f"{decl.robot_loc if decl.robot else decl.name_loc}: {exc}")
        return ""
    uses: list[_Facts] = []
    for name, spec in specs.items():
        use = call_hook(spec, "robot_use", errors)
        if use is not None:
            facts = _resolve(name, spec, use, decl, errors)
            if facts is not None:
                uses.append(facts)
    ref = _reference(decl, uses, errors)
    if ref is None:
        return ""
    for u in uses:
        if u is ref:
            continue
        head = f"{u.loc}: node {u.node!r}: {u.subject}"
        if u.name and ref.name and u.name != ref.name:
            errors.append(
                f"{head} is for robot {u.name!r}, not the graph's robot {ref.name!r} ({ref.origin}); "
                f"{_fix(u, ref, decl)}"
            )
            continue
        if u.joints is not None and ref.joints is not None:
            label = _label(ref)
            if ref.exact:  # the robot's joints: the node's must be on it (and be all of them, for a HAL's)
                absent = [j for j in u.joints if j not in ref.joints]
                lacking = [j for j in ref.joints if j not in u.joints] if u.exact else []
            else:  # the reference only needs its joints (a policy): the node, if it has joints, must have them
                absent, lacking = [], [j for j in ref.joints if j not in u.joints] if u.exact else []
            parts = [f"joints not on {label}: {', '.join(absent)}"] if absent else []
            parts += [f"joints of {label} it lacks: {', '.join(lacking)}"] if lacking else []
            if parts:
                errors.append(
                    f"{head} does not fit {label} ({ref.origin}): {'; '.join(parts)}; joints are matched by name: "
                    f"{_fix(u, ref, decl)}"
                )
                continue
        if u.dt is not None and ref.dt is not None and abs(u.dt - ref.dt) > DT_TOLERANCE * ref.dt:
            errors.append(
                f"{head} runs at a control period of {_hz(u.dt)}, but {_label(ref)} ({ref.origin}) runs at "
                f"{_hz(ref.dt)}; the nodes of one control loop must run at the robot's control period: "
                f"{_fix(u, ref, decl, rate=True)}"
            )
    return ref.name or ""


# -- commands through safety ---------------------------------------------------------------------


def _who(topic: TopicInfo, specs: dict[str, NodeSpec]) -> str:
    if not topic.publishers:
        return "outside the graph (an external topic)"
    return ", ".join(f"node {n!r} ({specs[n].cls.__name__}, kind {specs[n].cls.kind})" for n, _ in topic.publishers)


def check_commands(
    specs: dict[str, NodeSpec], topics: dict[str, TopicInfo], errors: list[str], warnings: list[str]
) -> None:
    """Every JointCommand input of a HAL is fed by safety nodes only, unless the HAL opts out."""
    from krabgraph.msgs import JointCommand

    safety_outputs = []  # topics a safety node sends joint commands on
    for spec in specs.values():
        if spec.cls.kind == "safety":
            ports = spec.cls.outputs()
            safety_outputs += [t for p, t in spec.outputs.items() if ports[p].msg_type is JointCommand]
    for name, spec in specs.items():
        unsafe = spec.decl.unsafe_direct_command
        if spec.cls.kind != "hal":
            if unsafe:
                errors.append(
                    f"{spec.decl.loc('unsafe_direct_command')}: node {name!r}: `unsafe_direct_command` applies to "
                    f"HAL nodes only ({spec.cls.__name__} is kind {spec.cls.kind!r}); remove it"
                )
            continue
        bypassed = []
        for port, topic in spec.inputs.items():
            info = topics.get(topic)
            if spec.cls.inputs()[port].msg_type is not JointCommand or info is None:
                continue
            if not info.publishers and not info.external:
                continue  # "nothing publishes" is reported already
            if info.publishers and all(specs[n].cls.kind == "safety" for n, _ in info.publishers):
                continue
            bypassed.append(port)
            loc = spec.decl.loc(f"inputs.{port}")
            if unsafe:
                warnings.append(
                    f"{spec.decl.loc('unsafe_direct_command')}: node {name!r}: unsafe_direct_command: HAL input "
                    f"{port!r} takes topic {topic!r} from {_who(info, specs)}, with no safety node in between "
                    "(benchmarks only)"
                )
                continue
            if safety_outputs:
                fix = f"wire it to a safety node's output (e.g. `inputs: {{{port}: {safety_outputs[0]}}}`)"
            else:
                fix = (
                    f"add a safety node (`class: safety`, inputs state: <the HAL's state>, command: {topic}) and "
                    f"wire this input to its joint_command"
                )
            errors.append(
                f"{loc}: node {name!r}: HAL input {port!r} takes topic {topic!r} from {_who(info, specs)}, not "
                f"from a safety node; every command a HAL executes must pass a safety node: {fix} (a benchmark "
                f"may set `unsafe_direct_command: true` on node {name!r})"
            )
        if unsafe and not bypassed:
            warnings.append(
                f"{spec.decl.loc('unsafe_direct_command')}: node {name!r}: `unsafe_direct_command: true` but its "
                "commands come from safety nodes anyway; remove it"
            )


# -- loops ---------------------------------------------------------------------------------------


def _same_type_topics(topics: dict[str, TopicInfo], info: TopicInfo, node: str) -> list[str]:
    return sorted(
        t for t, i in topics.items() if i.msg_type is info.msg_type and t != info.name and any(
            n != node for n, _ in i.publishers)
    )  # fmt: skip


def check_loops(specs: dict[str, NodeSpec], topics: dict[str, TopicInfo], errors: list[str]) -> None:
    """No node reads its own output; no topic cycle in which every node publishes on receipt."""
    import networkx as nx  # here: node classes import this module, and most never validate a graph

    flow = nx.MultiDiGraph()  # node -> node, one edge per (topic, output, input)
    flow.add_nodes_from(specs)
    for tname, info in topics.items():
        for pub, out_port in info.publishers:
            for sub, in_port in info.subscribers:
                triggers = specs[sub].cls.inputs()[in_port].triggers
                flow.add_edge(pub, sub, topic=tname, output=out_port, input=in_port, triggers=triggers)
    for node, _, data in nx.selfloop_edges(flow, data=True):
        spec = specs[node]
        others = _same_type_topics(topics, topics[data["topic"]], node)
        hint = f" (e.g. {others[0]})" if others else ""
        errors.append(
            f"{spec.decl.loc('inputs.' + data['input'])}: node {node!r}: input {data['input']!r} is wired to "
            f"topic {data['topic']!r}, which it publishes itself (output {data['output']!r}); a node must not "
            f"read its own output (it would take its own echo for new input): wire it to the topic of the node "
            f"before it{hint}"
        )
    eager = nx.DiGraph()  # edges along which a message may be republished at once
    eager.add_nodes_from(specs)
    for a, b, data in flow.edges(data=True):
        if a != b and data["triggers"] and not eager.has_edge(a, b):
            eager.add_edge(a, b, **data)
    order = {n: i for i, n in enumerate(specs)}
    components = [c for c in nx.strongly_connected_components(eager) if len(c) > 1]
    components.sort(key=lambda c: min(order[n] for n in c))
    for component in components[:MAX_CYCLES_REPORTED]:
        start = min(component, key=order.__getitem__)
        cycle = nx.find_cycle(eager.subgraph(component), source=start)
        path = " ".join(f"{a} --{eager.edges[a, b]['topic']}-->" for a, b in cycle) + f" {cycle[0][0]}"
        last_a, last_b = cycle[-1]
        loc = specs[last_b].decl.loc("inputs." + eager.edges[last_a, last_b]["input"])
        errors.append(
            f"{loc}: zero-delay publish cycle {path}: each node publishes on receipt, so messages circle "
            "forever (a lockstep graph's clock stops, --duration never ends); break the loop: publish from a "
            "timer in one of these nodes, or declare the input that only stores `Input(..., triggers=False)`"
        )
    if len(components) > MAX_CYCLES_REPORTED:
        errors.append(f"... and {len(components) - MAX_CYCLES_REPORTED} more zero-delay publish cycles")


# -- numbers -------------------------------------------------------------------------------------


def check_clock(decl: GraphDecl, errors: list[str]) -> None:
    """A real-time factor, if given, is a finite number > 0."""
    rtf = decl.clock.real_time_factor
    if rtf is not None and not (isinstance(rtf, (int, float)) and math.isfinite(rtf) and rtf > 0):
        errors.append(
            f"{decl.clock_loc}: clock: real_time_factor must be a finite number > 0 (1.0 = real time), got "
            f"{rtf!r}; leave it out (or null) to run as fast as possible"
        )
