"""Node classes by short name: the ``krabgraph.nodes`` entry-point group (krabgraph's own nodes are
registered there by its pyproject.toml, like any plug-in's), or any ``module.path:ClassName``.

Importing a module runs its code, so a graph file may only name *registered* node modules
(krabgraph's ``krabgraph.nodes`` package, the modules of registered names and entry points),
modules the user allows explicitly (``--allow-module``), modules the running program has
already imported (nothing runs again): ``resolve_class(ref, allow=...)``, and Python files in
the graph file's own folder (``class: lowpass.py:JointLowPass``: the project's own code, found
without ``PYTHONPATH``).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Collection
from importlib.metadata import entry_points
from pathlib import Path

from krabgraph.launch.api.node import Node

OWN_PACKAGE = "krabgraph.nodes"


def node_registry() -> dict[str, str]:
    """Short name → ``module:Class`` reference, from the ``krabgraph.nodes`` entry points (krabgraph's
    own first: a plug-in cannot take one of its names)."""
    names: dict[str, str] = {}
    for ep in sorted(entry_points(group="krabgraph.nodes"), key=lambda e: not e.value.startswith(OWN_PACKAGE)):
        names.setdefault(ep.name, ep.value)
    if not names:
        raise LookupError(
            "no node classes are registered (the krabgraph.nodes entry points are missing): install krabgraph "
            "with `make setup` (pip install -e .), not by putting the source tree on PYTHONPATH"
        )
    return names


def _module_of(target: str) -> str:
    module, sep, _ = target.partition(":")
    return module if sep else target.rpartition(".")[0]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_allowed(module: str, allow: Collection[str], registry: dict[str, str] | None = None) -> bool:
    """True if ``module`` is krabgraph's, a registered node's, under a prefix in ``allow``, or
    already imported (a program's own module, e.g. a test's: importing it again runs no code)."""
    if module in sys.modules:
        return True
    registered = {_module_of(t) for t in (registry if registry is not None else node_registry()).values()}
    return module in registered or any(_under(module, p) for p in (OWN_PACKAGE, *allow))


def _module_missing(name: str) -> bool:
    """True if ``name`` surely cannot be imported; found without running any module's code."""
    try:
        parts = name.split(".")
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return True
            full = ".".join(parts[: i + 1])
            if full in sys.modules:
                spec = sys.modules[full].__spec__
                continue
            spec = importlib.machinery.PathFinder.find_spec(full, list(spec.submodule_search_locations))
        return spec is None
    except (ImportError, ValueError):
        return False


FILE_CLASS = re.compile(r"(?P<file>[^:]+\.py):(?P<attr>[A-Za-z_]\w*)")
LOCAL_PACKAGE = "krabgraph_graph_nodes"  # sys.modules prefix of node files loaded from graph folders


def resolve_class(ref: str | type, *, allow: Collection[str] | None = None, base_dir: Path | None = None) -> type[Node]:
    """The Node subclass for a short name, ``module:Class`` or ``file.py:Class``; ``LookupError``
    says what to do.

    ``allow``: when given, a module that is neither krabgraph's nor a registered node's must be
    under one of these prefixes, else it is refused *without being imported*; ``None``: any.
    ``base_dir``: the folder of the graph file naming the class; ``file.py:Class`` is a file in it
    (or below it).
    """
    if isinstance(ref, type):
        return _node_class(ref, ref.__name__)
    match = FILE_CLASS.fullmatch(ref)
    if match:
        return _file_class(ref, match["file"], match["attr"], base_dir)
    registry = node_registry()
    target = registry.get(ref, ref)
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        close = difflib.get_close_matches(ref, registry, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise LookupError(
            f"unknown node class {ref!r}; {hint}use a registered name (run `krabgraph nodes`) or module.path:ClassName"
        )
    if allow is not None and ref not in registry and not module_allowed(module_name, allow, registry):
        if _module_missing(module_name):
            raise LookupError(f"unknown node class {ref!r}: no module {module_name!r}")
        raise LookupError(
            f"node class {ref!r}: module {module_name!r} is not a registered krabgraph node module, so it was not "
            f"imported (importing runs its code); if you trust it, pass --allow-module {module_name}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LookupError(f"unknown node class {ref!r}: no module {module_name!r}") from None
        raise LookupError(
            f"node class {ref!r} ({target}) cannot be imported: {exc}; run `make setup` to install dependencies"
        ) from None
    except ImportError as exc:
        raise LookupError(f"node class {ref!r} ({target}) cannot be imported: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise LookupError(f"unknown node class {ref!r}: module {module_name!r} has no {attr!r}")
    return _node_class(cls, f"{ref!r} ({target})")


def _node_class(cls: object, what: str) -> type[Node]:
    """``cls`` if it is a krabgraph Node subclass; else a ``LookupError`` that names the cause."""
    if isinstance(cls, type) and issubclass(cls, Node):
        return cls
    if isinstance(cls, type):
        shadow = next((b for b in cls.__mro__ if b.__name__ == "Node" and b.__module__ == "launch.api.node"), None)
        if shadow is not None:
            raise LookupError(
                f"{what} subclasses launch.api.node.Node, a second copy of krabgraph's module imported from the "
                "repository root; write `from krabgraph.launch import Node` (and krabgraph.msgs, krabgraph.nodes)"
            )
    raise LookupError(f"{what} is not a krabgraph Node subclass")


def _file_class(ref: str, file: str, attr: str, base_dir: Path | None) -> type[Node]:
    """The class ``attr`` of the Python file ``file``, relative to the graph file's folder."""
    if base_dir is None:
        raise LookupError(f"node class {ref!r}: a node file is named relative to a graph file; this graph has none")
    root = base_dir.resolve()
    path = (root / file).resolve()
    if root not in path.parents:
        raise LookupError(
            f"node class {ref!r}: {file} is outside the graph file's folder {root}; "
            "put the node file beside the graph file (or in a folder under it)"
        )
    if not path.is_file():
        raise LookupError(f"node class {ref!r}: no file {path}")
    name = f"{LOCAL_PACKAGE}.{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise LookupError(f"node class {ref!r}: {path} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise LookupError(f"node class {ref!r}: {path} failed to import: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise LookupError(f"unknown node class {ref!r}: {path} has no {attr!r}")
    return _node_class(cls, f"{ref!r} ({path})")
