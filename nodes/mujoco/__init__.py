"""MuJoCo simulation of legged robots for krabgraph.

``terrain`` (box-only terrains from a seed), ``scene`` (MjSpec model of robot + terrain),
``physics`` (``MujocoRobotSim``: name-keyed PD at physics rate, state snapshots),
``sensors`` (ray-cast height scan and depth image) and ``hal`` (``MujocoHal``, the graph node).
Submodules are imported on demand so that importing this package does not load MuJoCo.
"""
