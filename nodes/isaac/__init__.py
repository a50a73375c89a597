"""Isaac Sim / Isaac Lab hardware abstraction layer for krabgraph.

``adapter`` (``IsaacAdapter``: every Isaac Sim and Isaac Lab call krabgraph makes), ``hal``
(``IsaacHal``, the graph node; no Isaac calls of its own), ``standin`` (``StandInIsaacEnv``: an
object shaped like an Isaac Lab environment, for tests without Isaac Sim; not a simulator) and
``parkour_terms`` (observation terms for the Extreme-Parkour layout). Importing this package does
not import Isaac Sim, Isaac Lab or torch.
"""
