"""YAML loading that remembers the line of every mapping key (for errors that say where).

Loading is bounded, for files from anywhere: at most ``MAX_FILE_BYTES`` are read, text must be
UTF-8, and the document may hold at most ``MAX_NODES`` YAML nodes once its aliases are expanded
(an "alias bomb", a few hundred bytes that expand to billions of values, is refused before any
value is built), nested at most ``MAX_DEPTH`` deep. Each refusal is one line: file, line, what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 512 * 1024  # a graph file; the shipped ones are a few KB
MAX_NODES = 100_000  # YAML nodes (scalars, lists, mappings), aliases expanded
MAX_DEPTH = 100  # nesting of lists and mappings


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


class _TooBig(Exception):
    """Raised inside the loader; becomes a ``YamlError``."""

    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(message)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark else 0


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose alias-expanded size or depth is over the limits, or that holds
    itself (a recursive alias). Linear in the distinct nodes: sizes are memoised per node."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise _TooBig(_line(node), "a YAML alias refers to a node that contains it; write the value out")
        if depth > MAX_DEPTH:
            raise _TooBig(_line(node), f"nested deeper than {MAX_DEPTH} levels; a graph file needs far fewer")
        total = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            open_.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _TooBig(
                        _line(node),
                        f"YAML aliases expand to more than {MAX_NODES} values (an alias bomb?); a graph file "
                        "needs far fewer: write the values out or use `extends:`",
                    )
            open_.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _loader(name: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        composed = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> yaml.Node:
            self.composed += 1
            self.depth += 1
            try:
                if self.composed > MAX_NODES or self.depth > MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1
                    if self.depth > MAX_DEPTH:
                        raise _TooBig(line, f"nested deeper than {MAX_DEPTH} levels; a graph file needs far fewer")
                    raise _TooBig(line, f"more than {MAX_NODES} YAML values; a graph file needs far fewer")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def get_single_node(self) -> yaml.Node | None:
            node = super().get_single_node()
            if node is not None:
                _check_expansion(node)
            return node

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
    return Loader


def read_text(path: Path, name: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path``; at most ``limit`` bytes are read (a larger file is refused)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise YamlError(Loc(name), f"cannot read file: {exc.strerror}") from None
    if len(data) > limit:
        raise YamlError(
            Loc(name),
            f"file is larger than {limit // 1024} KiB (the limit for a graph file); "
            "is it the right file? split it with `extends:`",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(
            Loc(name, line),
            f"not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start}; save the file as UTF-8",
        ) from None


def load_yaml_text(text: str, name: str) -> Any:
    """Parse ``text`` (from ``name``, for errors) within the limits; mappings become ``LocDict``."""
    try:
        return yaml.load(text, Loader=_loader(name))
    except _TooBig as exc:
        raise YamlError(Loc(name, exc.line), str(exc)) from None
    except RecursionError:
        raise YamlError(Loc(name), f"nested deeper than {MAX_DEPTH} levels; a graph file needs far fewer") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        offset = len(text[: exc.position].encode())
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "character"
        raise YamlError(
            Loc(name, line), f"invalid YAML: {what} at byte offset {offset} is not allowed; remove it"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(str(exc.problem or exc).split())
        raise YamlError(Loc(name, line), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Loc(name), f"invalid YAML: {' '.join(str(exc).split())}") from None


def load_yaml(path: Path, display: str | None = None) -> Any:
    """Parse ``path`` within the limits; mappings become ``LocDict``; duplicate keys are errors."""
    name = display or str(path)
    return load_yaml_text(read_text(path, name), name)
