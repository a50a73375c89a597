"""krabgraph's policy trainer: MuJoCo MJX physics on the GPU, rsl_rl PPO, bundles with contracts.

``config`` (the task as tables), ``model`` (the MJX training model from the runtime's robot
description), ``terrain`` (height lookups, scan, curriculum), ``observations`` and ``rewards``
(terms by name), ``env`` (the batched environment), ``vecenv`` (rsl_rl's interface, DLPack),
``symmetry`` (mirrored samples), ``runner`` (budgeted, resumable training), ``export`` (the
bundle), ``acceptance`` (sim-to-sim checks through the graph in the CPU simulator). See
train/README.md.
"""
