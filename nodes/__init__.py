"""krabgraph's node classes.

Each is registered under a short name in the ``krabgraph.nodes`` entry-point group of
``pyproject.toml``, exactly as an outside package registers its nodes; entries are
``module:Class`` strings, so listing or validating a graph imports only the nodes it uses (a graph
without MuJoCo never imports mujoco).
"""
