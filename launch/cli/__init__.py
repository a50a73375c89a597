"""The ``krabgraph`` command (``main.py``) and its tools: topic echo/hz/info and node info through
a graph's tap (``introspect.py``, ``echo.py``) and plots of recordings (``plot.py``).

Top layer of ``krabgraph.launch``: may import every layer below (tests/test_layers.py).
"""
