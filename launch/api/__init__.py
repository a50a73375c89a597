"""The node SDK: what a node file imports (``Node``, ports, parameters, errors, its runtime context,
the static-check answers) and ``NodeHarness`` to test a node without a graph.

Lowest layer of ``krabgraph.launch``: imports nothing from graph/, runtime/ or cli/ (tests/test_layers.py).
"""
