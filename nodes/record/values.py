"""Plottable twins of krabgraph messages: ``<topic>/values`` channels in JSON with a JSON Schema.

Float arrays travel as ``Array`` (bytes + dtype + shape), which Foxglove's Plot panel cannot read.
A twin channel carries the same message as JSON (``to_data``: protobuf's JSON mapping with proto
field names, arrays as numbers nested by shape), so Plot paths such as
``/hal/state/values.joints.position[0]`` work. The JSON Schema comes from the protobuf descriptor;
an ``Array`` field's nesting depth is taken from the first message seen (the shape is not in the
descriptor).

``to_data`` is the one message-to-data conversion of krabgraph: the recorder node and
``FoxgloveView`` write it into twins, ``krabgraph topic echo`` prints it. It is protobuf's own JSON
mapping (``json_format.MessageToDict``, zero-valued fields included) with three changes: an ``Array``
field becomes its numbers, nested by shape (or a summary such as ``<float64[12]>`` with
``arrays=False``); 64-bit integers stay numbers (the JSON mapping writes them as strings); non-finite
floats inside arrays are written as the mapping writes them elsewhere (``"NaN"``, ``"Infinity"``,
``"-Infinity"``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from krabgraph.msgs import Array, to_numpy

ARRAY = Array.DESCRIPTOR.full_name
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}  # fmt: skip
_NUMBER = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
_STRINGS = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_ENUM}
MAX_DEPTH = 16  # nested messages followed; deeper ones are described as any object


def values_topic(topic: str) -> str:
    """The twin channel of ``topic``: ``hal/state`` -> ``/hal/state/values``."""
    return f"/{topic.lstrip('/')}/values"


def schema_name(desc: Descriptor) -> str:
    """The twin's JSON Schema name: ``krabgraph.values.RobotState``."""
    return f"krabgraph.values.{desc.name}"


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
    repeated = is_repeated(field)
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


# -- messages as data ---------------------------------------------------------------------------------
def to_data(msg: Message, *, arrays: bool = True) -> dict[str, Any]:
    """``msg`` as plain data (see the module docstring); ``arrays=False``: arrays as summaries."""
    try:
        data = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)  # fmt: skip
    except TypeError:  # protobuf < 5
        data = json_format.MessageToDict(msg, including_default_value_fields=True, preserving_proto_field_name=True)
    _fix(msg.DESCRIPTOR, msg, data, arrays)
    return data


def to_json(data: Any) -> str:
    """``to_data`` output as one line of JSON (a non-finite float outside an array: ``ValueError``)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def _fix(desc: Descriptor, msg: Message, data: dict[str, Any], arrays: bool) -> None:
    for field in desc.fields:
        name = field.name
        if name not in data:
            continue
        value = getattr(msg, name)
        repeated = is_repeated(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            if inner.message_type is not None:
                for key in value:
                    data[name][str(key)] = _message(value[key], data[name][str(key)], arrays)
            elif inner.type in _INT64:
                data[name] = {k: int(v) for k, v in data[name].items()}
        elif field.message_type is not None:
            if repeated:
                data[name] = [_message(m, d, arrays) for m, d in zip(value, data[name], strict=True)]
            else:
                data[name] = _message(value, data[name], arrays)
        elif field.type in _INT64:
            data[name] = [int(v) for v in data[name]] if repeated else int(data[name])
    order = {f.name: f.number for f in desc.fields}  # the mapping lists set fields before defaults
    items = sorted(data.items(), key=lambda kv: order.get(kv[0], 1 << 30))
    data.clear()
    data.update(items)


def _message(msg: Message, data: Any, arrays: bool) -> Any:
    if msg.DESCRIPTOR.full_name == ARRAY:
        return array_data(msg) if arrays else array_summary(msg)
    _fix(msg.DESCRIPTOR, msg, data, arrays)
    return data


def _numbers(arr: Array) -> np.ndarray | str:
    """The array's values, or ``<bad array: why>`` for a malformed one."""
    try:
        return to_numpy(arr)
    except ValueError as exc:
        return f"<bad array: {exc}>"


def array_data(arr: Array) -> Any:
    """An ``Array`` as (nested) lists of numbers; a malformed one as ``<bad array: why>``."""
    values = _numbers(arr)
    if isinstance(values, str):
        return values
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return _nonfinite(values.tolist())
    return values.tolist()


def _nonfinite(value: Any) -> Any:
    if isinstance(value, list):
        return [_nonfinite(v) for v in value]
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def array_summary(arr: Array) -> str:
    """``<float64[12]>``, ``<float32[4,3]>``: an ``Array`` without its numbers."""
    values = _numbers(arr)
    if isinstance(values, str):
        return values
    return f"<{values.dtype.name}[{','.join(map(str, values.shape))}]>"


def is_repeated(field: FieldDescriptor) -> bool:
    """Whether a field is a list (or a map), across protobuf versions."""
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


__all__ = [
    "array_data",
    "array_summary",
    "has_arrays",
    "is_repeated",
    "json_schema",
    "schema_name",
    "to_data",
    "to_json",
    "values_topic",
]
