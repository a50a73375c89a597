"""krabgraph's runtime, in four layers that import downward only (docs/architecture.md, "Layers"):
``api/`` (the node SDK) < ``graph/`` (graph files, validation) < ``runtime/`` (executor, transport,
tap) < ``cli/`` (the ``krabgraph`` command). This module re-exports the public names; only the node
API loads eagerly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from krabgraph.launch.api.errors import GraphError, KrabgraphError, ParamError, WireError
from krabgraph.launch.api.node import Node, Timer
from krabgraph.launch.api.params import Param
from krabgraph.launch.api.ports import Input, Output

if TYPE_CHECKING:
    from krabgraph.launch.api.harness import NodeHarness
    from krabgraph.launch.graph.declaration import GraphDecl, graph_from_dict, load_graph
    from krabgraph.launch.graph.model import Graph
    from krabgraph.launch.graph.validation import build_graph, load_and_build
    from krabgraph.launch.runtime.executor import Executor

# The node API above is what a node file imports; the runtime (zmq, graph validation) loads on first use.
_LAZY = {
    "NodeHarness": "api.harness",
    "GraphDecl": "graph.declaration",
    "graph_from_dict": "graph.declaration",
    "load_graph": "graph.declaration",
    "Graph": "graph.model",
    "build_graph": "graph.validation",
    "load_and_build": "graph.validation",
    "Executor": "runtime.executor",
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
    "NodeHarness",
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
