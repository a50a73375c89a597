"""A validated graph: what ``build_graph`` returns and the executor, transport and pictures read.

``NodeSpec`` (a node with its class resolved, parameters validated and every port on a topic),
``TopicInfo`` (a topic's type, publishers and subscribers) and ``Graph`` (all of them, with the
declaration they come from). Checks (``checks.py``) and validation (``validation.py``) both use
these, so they live apart from either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from krabgraph.launch.api.node import Node
from krabgraph.launch.graph.declaration import DEFAULT_PROCESS, ClockSpec, GraphDecl, NodeDecl, ProcessDecl


@dataclass
class NodeSpec:
    """A checked node: class resolved, parameters validated, every port on a topic."""

    name: str
    cls: type[Node]
    params: dict[str, Any]
    inputs: dict[str, str]
    outputs: dict[str, str]
    thread: bool
    on_error: str
    decl: NodeDecl
    raw_inputs: dict[str, list[str]] = field(default_factory=dict)  # Input(AnyMessage) port -> topics
    raw_outputs: dict[str, list[str]] = field(default_factory=dict)  # Output(AnyMessage) port -> topics
    process: str = DEFAULT_PROCESS  # the process it runs in (multi-process graphs)


@dataclass
class TopicInfo:
    name: str
    msg_type: type[Message] | None
    publishers: list[tuple[str, str]] = field(default_factory=list)  # (node, port)
    subscribers: list[tuple[str, str]] = field(default_factory=list)
    external: bool = False


@dataclass
class Graph:
    """A validated graph, ready for the executor (immutable by convention)."""

    name: str
    description: str
    clock: ClockSpec
    nodes: dict[str, NodeSpec]
    topics: dict[str, TopicInfo]
    decl: GraphDecl
    processes: dict[str, ProcessDecl] = field(default_factory=dict)  # used ones, in declaration order
    robot: str = ""  # the robot every HAL, safety node and policy bundle is for ("" if none names one)
    warnings: list[str] = field(default_factory=list)  # e.g. a HAL that opted out of the safety node


def default_topic(node: str, port: str) -> str:
    return f"{node}/{port}"
