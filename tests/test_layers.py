"""The runtime's layers import downward only, and nothing in the package imports in a circle.

Read from the source with ``ast`` (nothing is imported), counting every import: at module level,
inside functions and under ``if TYPE_CHECKING:`` (a type-only import across layers still ties the
lower layer to the higher one). docs/architecture.md, "Layers":

    launch/api < launch/graph < launch/runtime < launch/cli

- (a) a module of one layer imports only its own layer and those below it; none imports the
  ``krabgraph.launch`` facade (it re-exports the runtime);
- (b) api/, graph/ and runtime/ never import ``krabgraph.nodes`` or ``krabgraph.train`` (graph checks
  reach node code through node classes' hooks and the ``krabgraph.robots`` entry point);
- (c) no cycle among the modules of launch/, and none among packages (msgs, nodes, train, the
  launch layers, the facade, the top-level package);
- (d) the package never imports the benchmarks or anything else under tests/ (``tests.bench`` runs from
  the repository root and is not installed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository root is the `krabgraph` package
SCANNED = ("launch", "msgs", "nodes", "train")
LAYERS = ("api", "graph", "runtime", "cli")  # lowest first
NO_NODES = ("api", "graph", "runtime")  # layers that must not import krabgraph.nodes / krabgraph.train


def module_name(path: Path) -> str:
    parts = ["krabgraph", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    found = {"krabgraph": ROOT / "__init__.py", "krabgraph.__main__": ROOT / "__main__.py"}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module, line) for every krabgraph module ``name`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in known else base, node.lineno))
    return [(m, line) for m, line in out if m == "krabgraph" or m.startswith("krabgraph.")]


def import_graph(modules: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(importer, imported, "file:line") for every import between krabgraph modules."""
    known = set(modules)
    edges = []
    for name, path in modules.items():
        for target, line in imports_of(name, path, known):
            while target not in known and "." in target:  # `import krabgraph.x.y.attr` -> its module
                target = target.rpartition(".")[0]
            edges.append((name, target, f"{path.relative_to(ROOT)}:{line}"))
    return edges


def layer_of(module: str) -> str | None:
    """``api``/``graph``/``runtime``/``cli`` for a module of a layer; ``facade`` or None otherwise."""
    parts = module.split(".")
    if parts[:2] != ["krabgraph", "launch"]:
        return None
    if len(parts) == 2:
        return "facade"
    return parts[2] if parts[2] in LAYERS else None


def unit_of(module: str) -> str:
    """The package a module counts for in the package-level cycle check."""
    parts = module.split(".")
    if parts[:2] == ["krabgraph", "launch"]:
        return ".".join(parts[:3]) if len(parts) > 2 and parts[2] in LAYERS else "krabgraph.launch"
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in SCANNED else "krabgraph"


def layer_violations(edges: list[tuple[str, str, str]]) -> list[str]:
    found = []
    for src, dst, where in edges:
        layer = layer_of(src)
        if layer not in LAYERS:
            continue
        rank, target = LAYERS.index(layer), layer_of(dst)
        if target == "facade":
            found.append(f"{where}: {src} imports {dst} (above every layer)")
        elif target in LAYERS and LAYERS.index(target) > rank:
            found.append(f"{where}: {src} ({layer}) imports {dst} ({target}), a higher layer")
        elif layer in NO_NODES and unit_of(dst) in ("krabgraph.nodes", "krabgraph.train"):
            found.append(f"{where}: {src} ({layer}) imports {dst}; only node classes' hooks may reach node code")
    return found


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    g = nx.DiGraph()
    g.add_edges_from((a, b) for a, b in edges if a != b)
    return [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]


@pytest.fixture(scope="module")
def edges() -> list[tuple[str, str, str]]:
    return import_graph(sources())


def test_layers_import_downward_only(edges):
    assert layer_violations(edges) == []


def test_every_launch_module_is_in_a_layer():
    """A new module lands in a layer, not loose in launch/ (benchmarks live in tests/bench/)."""
    loose = [p.name for p in (ROOT / "launch").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {p.name for p in (ROOT / "launch").iterdir() if (p / "__init__.py").exists()} == set(LAYERS)


def test_package_never_imports_tests():
    """Benchmarks and test helpers (tests/bench/, e.g. the bare MuJoCo loop) stay out of the package."""
    found = []
    for name, path in sources().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name} imports {m}"
                for m in names
                if m.split(".")[0] == "tests"
            ]
    assert found == []
    assert not (ROOT / "nodes" / "mujoco" / "bare_loop.py").exists()


def test_no_import_cycle_among_launch_modules(edges):
    launch = [(a, b) for a, b, _ in edges if layer_of(a) and layer_of(b)]
    assert cycles(launch) == []


def test_no_import_cycle_among_packages(edges):
    assert cycles([(unit_of(a), unit_of(b)) for a, b, _ in edges]) == []
    msgs = sorted({b for a, b, _ in edges if unit_of(a) == "krabgraph.msgs" and unit_of(b) != "krabgraph.msgs"})
    assert msgs == [], "krabgraph.msgs is the bottom: it imports no other krabgraph package"


def test_the_checks_catch_violations(tmp_path):
    """The checks above fail on a violation: a lower layer importing a higher one (even type-only, even
    inside a function), a graph module importing nodes, and a cycle."""
    edges = [
        ("krabgraph.launch.api.node", "krabgraph.launch.runtime.executor", "api/node.py:1"),
        ("krabgraph.launch.graph.checks", "krabgraph.nodes.robots", "graph/checks.py:2"),
        ("krabgraph.launch.runtime.tap", "krabgraph.launch", "runtime/tap.py:3"),
        ("krabgraph.launch.cli.main", "krabgraph.launch.runtime.executor", "cli/main.py:4"),  # fine: downward
    ]
    assert len(layer_violations(edges)) == 3
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    source = tmp_path / "launch" / "api" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from krabgraph.launch.graph.model import Graph\n"
        "def f():\n    from krabgraph.launch.cli import main\n"
    )
    found = [m for m, _ in imports_of("krabgraph.launch.api.x", source, {"krabgraph.launch.cli.main"})]
    assert found == ["krabgraph.launch.graph.model", "krabgraph.launch.cli.main"]
