"""Messages as data for ``krabgraph topic echo``, and message types for ``krabgraph interface show``.

A message becomes plain data with ``to_data`` (``nodes/record/values.py``: the one conversion, which
the recorder's and Foxglove's ``/values`` twins use too): protobuf's own JSON mapping (proto field
names, zero-valued fields included) with an ``Array`` field as its numbers, nested by shape (or a
summary such as ``<float64[12]>`` with ``arrays=False``), 64-bit integers as numbers and non-finite
floats inside arrays as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

``from_data`` is the reverse, for ``krabgraph topic pub``: plain data in that form (arrays as lists of
numbers, float64) becomes a message; an unknown field, a wrong value or an array summary is an
``EchoError`` naming the field.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.msgs import set_array
from krabgraph.msgs.schema import _MODULES, message_class
from krabgraph.nodes.record.values import ARRAY, is_repeated, to_data, to_json

_PROTO_DIR = Path(__file__).resolve().parents[2] / "msgs"


class EchoError(KrabgraphError):
    """A field path or message type that does not exist."""


def from_data(cls: type[Message], data: Any) -> Message:
    """A ``cls`` message from plain data in ``to_data``'s form (``None``: an empty message); raises
    ``EchoError`` naming the field at fault and how it should look."""
    msg = cls()
    if data is not None:
        _fill(msg, data, cls.DESCRIPTOR.name)
    return msg


def _fill(msg: Message, data: Any, where: str) -> None:
    desc = msg.DESCRIPTOR
    if not isinstance(data, dict):
        raise EchoError(f"{where}: expected a mapping of {desc.name} fields, got {_kind(data)}")
    plain = {}
    for key, value in data.items():
        field = desc.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            fields = ", ".join(f.name for f in desc.fields)
            raise EchoError(f"{where}: {desc.name} has no field {key!r}; its fields: {fields}")
        path = f"{where}.{key}"
        if _plain(field):
            plain[key] = value
        elif _is_map(field):
            _fill_map(getattr(msg, key), value, path)
        elif is_repeated(field):
            if not isinstance(value, list):
                raise EchoError(f"{path}: expected a list of {field.message_type.name}, got {_kind(value)}")
            for i, item in enumerate(value):
                _fill_item(getattr(msg, key).add(), item, f"{path}[{i}]")
        else:
            _fill_item(getattr(msg, key), value, path)
    try:
        json_format.ParseDict(plain, msg)
    except json_format.ParseError as exc:
        raise EchoError(f"{where}: {exc}") from None


def _plain(field: FieldDescriptor) -> bool:
    """A field protobuf's JSON mapping reads as it is: scalars, enums, lists and maps of them."""
    if field.message_type is None:
        return True
    return _is_map(field) and field.message_type.fields_by_name["value"].message_type is None


def _fill_map(container: Any, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise EchoError(f"{path}: expected a mapping, got {_kind(value)}")
    for k, item in value.items():
        _fill_item(container[k], item, f"{path}[{k!r}]")


def _fill_item(msg: Message, value: Any, path: str) -> None:
    """One message-typed value: an ``Array`` from numbers, any other message from its fields."""
    if msg.DESCRIPTOR.full_name != ARRAY:
        _fill(msg, value, path)
        return
    if isinstance(value, str):
        raise EchoError(f"{path}: {value!r} is not an array's numbers; give a list such as [0.0, 0.8, -1.5]")
    try:
        values = np.asarray(_finite_back(value), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EchoError(f"{path}: expected (nested) lists of numbers, got {_kind(value)} ({exc})") from None
    set_array(msg, values)


def _finite_back(value: Any) -> Any:
    """``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as ``to_data`` writes them) back to floats."""
    if isinstance(value, list):
        return [_finite_back(v) for v in value]
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return value


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {str(value)[:40]!r}" if value is not None else "nothing"


def check_path(cls: type[Message], path: str) -> list[str]:
    """Split ``a.b.3`` and check each name against ``cls``'s fields; raises naming the fields there."""
    parts = path.split(".")
    desc: Descriptor | None = cls.DESCRIPTOR
    indexable = False  # the last step was a repeated field or an Array: numbers may follow
    done: list[str] = []
    for part in parts:
        if indexable and part.lstrip("-").isdigit():
            done.append(part)
            continue
        if desc is None or part not in desc.fields_by_name:
            where = f"{cls.__name__}.{'.'.join(done)}" if done else cls.__name__
            fields = ", ".join(f.name for f in desc.fields) if desc is not None else "none (not a message)"
            raise EchoError(f"--field {path}: {where} has no field {part!r}; its fields: {fields}")
        field = desc.fields_by_name[part]
        done.append(part)
        is_array = field.message_type is not None and field.message_type.full_name == ARRAY
        indexable = is_repeated(field) or is_array
        desc = None if is_array else field.message_type
    return parts


def pick(data: Any, parts: list[str]) -> Any:
    """The value at ``parts`` (checked by ``check_path``) in ``to_data`` output; ``None`` past a list's end."""
    for part in parts:
        if isinstance(data, list):
            try:
                data = data[int(part)]
            except IndexError:
                return None
        elif isinstance(data, dict):
            data = data[part]
        else:  # an array summary string: no numbers to index
            return data
    return data


class _Dumper(yaml.SafeDumper):
    """Lists of scalars in flow style (``[0.0, 0.8, -1.5]``); everything else in block style."""


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flow = all(not isinstance(v, dict | list) for v in value) and len(value) > 0
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(data: Any) -> str:
    """YAML text of ``to_data`` output (a scalar alone on its line), ending in a newline."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


def message_types() -> dict[str, type[Message]]:
    """Every message class of ``krabgraph.msgs`` by short name."""
    out: dict[str, type[Message]] = {}
    for mod in _MODULES:
        module = importlib.import_module(f"krabgraph.msgs.{mod}")
        for name, desc in module.DESCRIPTOR.message_types_by_name.items():
            out[name] = getattr(module, name)
            for nested in desc.nested_types:
                if nested.GetOptions().map_entry:
                    continue
                out[f"{name}.{nested.name}"] = getattr(out[name], nested.name)
    return out


def find_type(name: str) -> type[Message]:
    """A message class by short, full or ``module:Class`` name; raises listing close matches."""
    types = message_types()
    short = name.removeprefix("krabgraph.msgs.")
    if short in types:
        return types[short]
    if ":" in name:
        try:
            return message_class(name)
        except (ImportError, AttributeError) as exc:
            raise EchoError(f"unknown message type {name!r}: {exc}") from None
    lower = {k.lower(): k for k in types}
    if short.lower() in lower:
        return types[lower[short.lower()]]
    close = difflib.get_close_matches(short.lower(), list(lower), n=5, cutoff=0.6)
    close += [k.lower() for k in types if short.lower() and short.lower() in k.lower() and k.lower() not in close]
    hint = f"did you mean {', '.join(lower[c] for c in close)}? " if close else ""
    raise EchoError(f"unknown message type {name!r}; {hint}known types: {', '.join(sorted(types))}")


def interface_text(cls: type[Message]) -> str:
    """The ``.proto`` definition of ``cls`` (with its comments) when the source is at hand, else a field listing."""
    desc = cls.DESCRIPTOR
    source = _PROTO_DIR / Path(desc.file.name).name
    if desc.file.package == "krabgraph.msgs" and source.is_file():
        text = _proto_block(source.read_text(), desc)
        if text:
            return f"# {desc.full_name}  ({desc.file.name})\n{text}"
    return field_listing(desc)


def _proto_block(text: str, desc: Descriptor) -> str:
    """The ``message NAME { ... }`` block (and the comment lines just above it) of a top-level message."""
    lines = text.splitlines()
    head = f"message {desc.name} "
    for i, line in enumerate(lines):
        if line.startswith(head) or line.strip() == f"message {desc.name}{{":
            start = i
            while start > 0 and lines[start - 1].lstrip().startswith("//"):
                start -= 1
            depth = 0
            for j in range(i, len(lines)):
                depth += lines[j].count("{") - lines[j].count("}")
                if depth == 0:
                    return "\n".join(lines[start : j + 1])
    return ""


def field_listing(desc: Descriptor, indent: str = "") -> str:
    """One line per field: ``name: type`` (``repeated`` and enum values shown), nested messages expanded."""
    lines = [f"# {desc.full_name}"] if not indent else []
    for field in desc.fields:
        kind = _type_name(field)
        rep = "repeated " if is_repeated(field) and not _is_map(field) else ""
        lines.append(f"{indent}{field.name}: {rep}{kind}")
        if field.message_type is not None and not _is_map(field) and field.message_type.full_name != ARRAY:
            sub = field_listing(field.message_type, indent + "  ")
            if sub:
                lines.append(sub)
    return "\n".join(lines)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _type_name(field: FieldDescriptor) -> str:
    if _is_map(field):
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return f"map<{_type_name(key)}, {_type_name(value)}>"
    if field.message_type is not None:
        return field.message_type.full_name.removeprefix("krabgraph.msgs.")
    if field.enum_type is not None:
        names = "|".join(v.name for v in field.enum_type.values)
        return f"{field.enum_type.name} ({names})"
    return _SCALARS.get(field.type, str(field.type))


_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def echo(client: Any, topic: str, type_name: str, args: Any, out: Any) -> int:
    """Print each message on ``topic`` as YAML (``---`` after each) or one JSON line (``args.json``).

    ``args``: ``field`` (a path or None), ``no_arr``, ``count`` (0: no limit), ``once``, ``duration``.
    The field path is checked against ``type_name`` before anything is printed (a topic whose type
    is not fixed is checked at its first message). Returns the exit code.
    """
    from krabgraph.launch.cli.introspect import decode

    count = 1 if args.once else args.count
    parts: list[str] | None = None
    if args.field and type_name:
        try:
            cls = find_type(type_name)
        except EchoError:  # not a krabgraph.msgs type: checked at the first message
            pass
        else:
            parts = check_path(cls, args.field)
    from krabgraph.launch.cli.introspect import TapClientError

    skipped: dict[str, int] = {}
    n = 0
    try:
        for _, frame in client.frames(topic, args.duration):
            try:
                msg = decode(frame)
            except TapClientError as exc:  # a frame no krabgraph graph sends: say so once, count the rest
                kind = str(exc).partition(" (")[0]
                if kind not in skipped:
                    print(f"warning: skipped {exc} on {topic} (further ones are counted)", file=sys.stderr)
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            n += 1
            if args.field and parts is None:
                parts = check_path(type(msg), args.field)
            data = to_data(msg, arrays=not args.no_arr)
            if parts is not None:
                data = pick(data, parts)
            out.write(to_json(data) + "\n" if args.json else to_yaml(data).removesuffix("...\n") + "---\n")
            out.flush()
            if count and n >= count:
                break
    except BrokenPipeError:  # `| head`: the reader has gone; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if sum(skipped.values()) > len(skipped):
        print(f"warning: skipped {sum(skipped.values())} frames on {topic} that did not decode", file=sys.stderr)
    return 0
