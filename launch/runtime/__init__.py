"""Running a validated graph: the executor, wire format, clocks, multi-process transport and
supervisor, CURVE/ZAP security, the introspection tap and the run monitor.

Third layer of ``krabgraph.launch``: imports api/ and graph/ only (tests/test_layers.py).
"""
