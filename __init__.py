"""krabgraph: a ROS 2-style node graph on ZeroMQ for learned legged-robot controllers.

The repository root is the ``krabgraph`` package: ``krabgraph.msgs`` (msgs/),
``krabgraph.launch`` (launch/: node API, graph files, executor, CLI) and
``krabgraph.nodes`` (nodes/).
"""

__version__ = "0.1.0"
