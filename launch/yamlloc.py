"""YAML loading that remembers the line of every mapping key (for errors that say where)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Loc:
    """A place in a file (1-based line), or on the command line."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class LocDict(dict):
    """A dict that knows the location of itself and of each of its keys."""

    loc: Loc
    key_locs: dict[Any, Loc]

    def where(self, key: Any) -> Loc:
        return self.key_locs.get(key, self.loc)


class YamlError(Exception):
    def __init__(self, loc: Loc, message: str):
        self.loc = loc
        super().__init__(f"{loc}: {message}")


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse ``path``; mappings become ``LocDict``; duplicate keys are errors."""
    name = display or str(path)

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Loader, node: yaml.MappingNode) -> LocDict:
        loader.flatten_mapping(node)
        out = LocDict()
        out.loc = Loc(name, node.start_mark.line + 1)
        out.key_locs = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            loc = Loc(name, key_node.start_mark.line + 1)
            if key in out:
                raise YamlError(loc, f"duplicate key {key!r} (first at line {out.key_locs[key].line}); remove one")
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_locs[key] = loc
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        text = path.read_text()
    except OSError as exc:
        raise YamlError(Loc(name), f"cannot read file: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlError(Loc(name, line), f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Loc(name), f"invalid YAML: {exc}") from None
