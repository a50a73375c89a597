"""Graph files and their validation: declaration and loading, YAML with line numbers, schemas,
node classes by name, the checks behind ``krabgraph check``, the validated ``Graph``, endpoint and
key-file checks, pictures.

Second layer of ``krabgraph.launch``: imports only api/ (tests/test_layers.py).
"""
