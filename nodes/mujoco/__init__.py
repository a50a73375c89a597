"""MuJoCo simulation of legged robots for krabgraph.

``terrain`` (box-only terrains from a seed), ``scene`` (MjSpec model of robot + terrain),
``physics`` (``MujocoRobotSim``: name-keyed PD at physics rate, state snapshots),
``sensors`` (ray-cast height scan and depth image) and ``hal`` (``MujocoHal``, the graph node).
Submodules are imported on demand so that importing this package does not load MuJoCo.
"""

import os

# MuJoCo picks its OpenGL backend when it is first imported: without a display, offscreen EGL
# (video, depth rendering), unless the user chose one. Set here, before any submodule imports it.
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("MUJOCO_GL", "egl")
