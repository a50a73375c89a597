"""krabgraph runtime: node API, graph files, validation, executor and CLI."""

from krabgraph.launch.errors import GraphError, KrabgraphError, ParamError, WireError
from krabgraph.launch.executor import Executor
from krabgraph.launch.graph import GraphDecl, graph_from_dict, load_graph
from krabgraph.launch.node import Node, Timer
from krabgraph.launch.params import Param
from krabgraph.launch.ports import Input, Output
from krabgraph.launch.validate import Graph, build_graph, load_and_build

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
