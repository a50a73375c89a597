"""Plottable twins of krabgraph messages: ``<topic>/values`` channels in JSON with a JSON Schema.

Float arrays travel as ``Array`` (bytes + dtype + shape), which Foxglove's Plot panel cannot read.
A twin channel carries the same message as JSON (protobuf's JSON mapping with proto field names,
arrays as numbers nested by shape: ``launch/cli/echo.py``'s ``to_data``), so Plot paths such as
``/hal/state/values.joints.position[0]`` work. The JSON Schema comes from the protobuf descriptor;
an ``Array`` field's nesting depth is taken from the first message seen (the shape is not in the
descriptor).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from krabgraph.msgs import Array

ARRAY = Array.DESCRIPTOR.full_name
_NUMBER = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
_STRINGS = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_ENUM}
MAX_DEPTH = 16  # nested messages followed; deeper ones are described as any object


def has_arrays(desc: Descriptor, depth: int = 0) -> bool:
    """Whether a message type holds an ``Array`` field anywhere (and so needs a twin to be plotted)."""
    if depth > MAX_DEPTH:
        return False
    for field in desc.fields:
        sub = field.message_type
        if sub is None or sub.GetOptions().map_entry:
            continue
        if sub.full_name == ARRAY or has_arrays(sub, depth + 1):
            return True
    return False


def json_schema(msg: Message) -> dict[str, Any]:
    """The JSON Schema of ``to_data(msg)`` for messages of ``msg``'s type (see the module docstring)."""
    schema = _message_schema(msg.DESCRIPTOR, msg, 0)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = msg.DESCRIPTOR.full_name
    return schema


def _message_schema(desc: Descriptor, sample: Message | None, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {"type": "object"}
    props = {field.name: _field_schema(field, sample, depth) for field in desc.fields}
    return {"type": "object", "properties": props}


def _field_schema(field: FieldDescriptor, sample: Message | None, depth: int) -> dict[str, Any]:
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    sub = field.message_type
    if sub is not None and sub.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _field_schema(sub.fields_by_name["value"], None, depth + 1)}
    value = getattr(sample, field.name) if sample is not None else None
    if repeated:
        first = value[0] if value is not None and len(value) and sub is not None else None
        return {"type": "array", "items": _single(field, first, depth)}
    return _single(field, value, depth)


def _single(field: FieldDescriptor, value: Any, depth: int) -> dict[str, Any]:
    sub = field.message_type
    if sub is not None and sub.full_name == ARRAY:
        return _array_schema(len(value.shape) if value is not None else 1)
    if sub is not None:
        return _message_schema(sub, value, depth + 1)
    if field.type in _NUMBER:
        return {"type": "number"}
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type in _STRINGS:
        return {"type": "string"}
    return {"type": "integer"}


def _array_schema(ndim: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    for _ in range(max(ndim, 1)):
        schema = {"type": "array", "items": schema}
    return schema


__all__ = ["has_arrays", "json_schema"]
