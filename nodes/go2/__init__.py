"""The real Unitree Go2 over its low-level DDS interface (``rt/lowcmd``, ``rt/lowstate``).

- ``hal``: ``Go2Hal`` (short name ``go2_hal``), the HAL node that replaces ``mujoco_hal`` on the robot.
- ``emulator``: the MuJoCo Go2 behind the same DDS interface (``python -m krabgraph.nodes.go2.emulator``).
- ``idl``: Unitree's ``unitree_go::msg::dds_`` types; ``crc``: their C layout and the LowCmd CRC;
  ``motors``: joint name <-> motor slot mapping; ``dds``: Cyclone DDS configuration; ``cdr``: fast packing.

Nothing here imports ``cyclonedds`` at package import; the nodes fail with one clear error without it.
See docs/sim-to-real.md.
"""
