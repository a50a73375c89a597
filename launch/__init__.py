"""krabgraph runtime: node API, graph files, validation, executor and CLI."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from krabgraph.launch.errors import GraphError, KrabgraphError, ParamError, WireError
from krabgraph.launch.node import Node, Timer
from krabgraph.launch.params import Param
from krabgraph.launch.ports import Input, Output

if TYPE_CHECKING:
    from krabgraph.launch.executor import Executor
    from krabgraph.launch.graph import GraphDecl, graph_from_dict, load_graph
    from krabgraph.launch.validate import Graph, build_graph, load_and_build

# The node API above is what a node file imports; the runtime (zmq, graph validation) loads on first use.
_LAZY = {
    "Executor": "executor",
    "GraphDecl": "graph",
    "graph_from_dict": "graph",
    "load_graph": "graph",
    "Graph": "validate",
    "build_graph": "validate",
    "load_and_build": "validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"krabgraph.launch.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Executor",
    "Graph",
    "GraphDecl",
    "GraphError",
    "Input",
    "KrabgraphError",
    "Node",
    "Output",
    "Param",
    "ParamError",
    "Timer",
    "WireError",
    "build_graph",
    "graph_from_dict",
    "load_and_build",
    "load_graph",
]
