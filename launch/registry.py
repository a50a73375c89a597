"""Node classes by short name: krabgraph's own (``krabgraph.nodes.REGISTRY``) and plug-ins
(the ``krabgraph.nodes`` entry-point group), or any ``module.path:ClassName``."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from krabgraph.launch.node import Node


def node_registry() -> dict[str, str]:
    """Short name → ``module:Class`` reference."""
    from krabgraph.nodes import REGISTRY

    names = dict(REGISTRY)
    for ep in entry_points(group="krabgraph.nodes"):
        names.setdefault(ep.name, ep.value)
    return names


def resolve_class(ref: str | type) -> type[Node]:
    """The Node subclass for a short name or ``module:Class``; ``LookupError`` says what to do."""
    if isinstance(ref, type):
        if not issubclass(ref, Node):
            raise LookupError(f"{ref.__name__} is not a krabgraph Node subclass")
        return ref
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
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise LookupError(f"{ref!r} ({target}) is not a krabgraph Node subclass")
    return cls
