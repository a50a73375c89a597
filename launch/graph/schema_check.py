"""JSON Schema checks of YAML documents, with errors that say file:line and what to do.

``schema_problems(data, schema, display)`` validates ``data`` (as loaded by ``yamlloc.load_yaml``:
mappings are ``LocDict`` objects that know the line of each key) against a JSON Schema 2020-12 and
returns one ``Problem`` per fault, located at the line of the offending key and described in words.
``schema_errors`` formats them as graph files report errors: ``file:line: key/path: what to do``;
other file kinds (policy contracts, robot descriptions) format ``Problem`` objects in their own key style.

A subschema may carry ``errorMessage`` (the ajv-errors convention; validators ignore it): a string
used for any failure of that subschema, or a mapping from keyword (``type``, ``minimum``, ...) to
the string for that keyword. ``$duplicate`` in it stands for the repeated item (``uniqueItems``).
The value found (``, got 0``) is appended to every message except those about keys or duplicates.

jsonschema is imported on first use: importing this module costs nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from krabgraph.launch.graph.yamlloc import Loc, LocDict

KEY_VALIDATORS = ("required", "additionalProperties")  # faults of a mapping's keys, not of a value
_NOT_SPECIFIC = ("type", "const", "enum")  # a failing oneOf branch that says only "not this form"
_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "null": "null",
}
_MAX_GOT = 80  # longest value repr quoted back in a message


@dataclass(frozen=True)
class Problem:
    """One schema fault: where it is and what to do about it."""

    loc: Loc  # the line of the offending key (or of the nearest enclosing key that has one)
    path: tuple[Any, ...]  # keys and list indices to the faulty value (for a key fault: to its mapping)
    key: Any  # the missing (``required``) or unknown (``additionalProperties``) key; else None
    validator: str  # the JSON Schema keyword that failed
    what: str  # what is wrong and what to do, e.g. "must be > 0, got 0"
    expected: tuple[str, ...] = ()  # for an unknown key: the keys allowed there

    @property
    def full_path(self) -> tuple[Any, ...]:
        """``path``, plus ``key`` for a key fault."""
        return self.path if self.key is None else (*self.path, self.key)


@cache
def load_schema(path: str | Path) -> dict:
    """The JSON Schema in file ``path`` (read once per process; do not modify the returned dict)."""
    return json.loads(Path(path).read_text())


def schema_errors(data: Any, schema: dict, display: str) -> list[str]:
    """``file:line: key/path: what to do`` for each fault of ``data`` against ``schema``."""
    return [
        f"{p.loc}: {'/'.join(map(str, p.full_path)) or 'top level'}: {p.what}"
        for p in schema_problems(data, schema, display)
    ]


def schema_problems(data: Any, schema: dict, display: str) -> list[Problem]:
    """Every fault of ``data`` against ``schema``, in file order; ``display`` names the file."""
    problems: dict[tuple, Problem] = {}
    for error in _validator_class()(schema).iter_errors(data):
        err = _closest(error)
        path = tuple(err.absolute_path)
        loc, node = _locate(data, path, display)
        for problem in _problems(err, path, loc, node):
            problems.setdefault((problem.full_path, problem.validator), problem)
    return sorted(problems.values(), key=lambda p: p.loc.line)  # stable: schema order within a line


@cache
def _validator_class() -> type:
    """Draft 2020-12, with tuples as arrays (data built in Python, not only loaded from YAML)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("array", lambda _, instance: isinstance(instance, list | tuple))
    return jsonschema.validators.extend(base, type_checker=checker)


def _closest(err: Any) -> Any:
    """For a failed ``oneOf``/``anyOf``, the failure of the form that came closest.

    A form failing deeper inside the value (a nested key, a missing key) came closer than one
    failing at the value itself; a form failing at the value on a bound (``minimum``) came closer
    than one of another type. When every form failed only on type/const/enum at the value, the
    ``oneOf`` itself is reported (its ``errorMessage`` lists the allowed forms).
    """
    while err.validator in ("oneOf", "anyOf") and err.context:
        depth = len(err.absolute_path)

        def rank(e: Any) -> tuple[int, bool]:
            return len(e.absolute_path) + (e.validator in KEY_VALIDATORS), e.validator not in _NOT_SPECIFIC

        best = max(err.context, key=rank)
        if rank(best) == (depth, False):
            break
        err = best
    return err


def _locate(data: Any, path: tuple[Any, ...], display: str) -> tuple[Loc, Any]:
    """The line of the deepest key on ``path`` that knows one, and the value at the end of ``path``."""
    loc = data.loc if isinstance(data, LocDict) else Loc(display)
    node = data
    for key in path:
        if isinstance(node, LocDict) and key in node:
            loc, node = node.where(key), node[key]
        elif isinstance(node, list | tuple) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
            if isinstance(node, LocDict):  # a mapping in a list: its own first line
                loc = node.loc
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            break
    return loc, node


def _problems(err: Any, path: tuple[Any, ...], loc: Loc, node: Any) -> list[Problem]:
    if err.validator == "required" and isinstance(node, dict):
        missing = [k for k in err.validator_value if k not in node]
        return [Problem(loc, path, k, "required", "missing required key; add it") for k in missing]
    if err.validator == "additionalProperties" and isinstance(node, dict):
        allowed = tuple(err.schema.get("properties", {}))
        patterns = tuple(err.schema.get("patternProperties", {}))
        extra = [k for k in node if k not in allowed and not any(re.search(p, str(k)) for p in patterns)]
        what = f"unknown key; expected one of {', '.join(allowed)}" if allowed else "unknown key; remove it"
        return [
            Problem(node.where(k) if isinstance(node, LocDict) else loc, path, k, err.validator, what, allowed)
            for k in extra
        ]
    return [Problem(loc, path, None, err.validator, _what(err))]


def _what(err: Any) -> str:
    """The fault in words: the schema's ``errorMessage`` if it has one, else a plain rewording."""
    keyword, value, instance = err.validator, err.validator_value, err.instance
    custom = err.schema.get("errorMessage") if isinstance(err.schema, dict) else None
    if isinstance(custom, dict):
        custom = custom.get(keyword)
    if isinstance(custom, str):
        text = custom
    elif keyword == "type":
        types = value if isinstance(value, list) else [value]
        text = "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    elif keyword == "enum":
        text = f"must be one of {', '.join(map(str, value))}"
    elif keyword == "const":
        text = f"must be {value!r}"
    elif keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[keyword]
        text = f"must be {op} {value}"
    elif keyword in ("minItems", "minLength", "minProperties") and value == 1:
        text = "must not be empty"
    elif keyword == "minItems":
        text = f"needs at least {value} items"
    elif keyword == "maxItems":
        text = f"takes at most {value} items"
    elif keyword == "uniqueItems":
        text = "lists $duplicate more than once; list each once"
    elif keyword == "pattern":
        text = f"must match the regular expression {value}"
    elif keyword in ("oneOf", "anyOf"):
        text = "is none of the allowed forms; see the schema's description of this key"
    else:
        text = err.message
    if keyword == "uniqueItems":
        return Template(text).safe_substitute(duplicate=repr(_duplicate(instance)))
    got = repr(instance)
    return f"{text}, got {got}" if len(got) <= _MAX_GOT else text


def _duplicate(items: Any) -> Any:
    """The first item of ``items`` that equals an earlier one."""
    for i, item in enumerate(items):
        if any(item == other for other in items[:i]):
            return item
    return None
