"""Message type names, schema versions and the type tags carried on the wire."""

from __future__ import annotations

import importlib
from functools import cache

from google.protobuf.message import Message

from krabgraph.msgs import common_pb2

_MODULES = ("common_pb2", "robot_pb2", "perception_pb2", "control_pb2")


def schema_version(cls: type[Message]) -> int:
    """The ``(schema_version)`` option of a message class (0 if it declares none)."""
    return cls.DESCRIPTOR.GetOptions().Extensions[common_pb2.schema_version]


@cache
def type_tag(cls: type[Message]) -> bytes:
    """Wire tag ``b"<full name>@<version>"``: what a subscriber checks before parsing."""
    return f"{cls.DESCRIPTOR.full_name}@{schema_version(cls)}".encode()


def message_class(name: str) -> type[Message]:
    """Resolve ``"RobotState"``, ``"krabgraph.msgs.RobotState"`` or ``"pkg.module:Class"``."""
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    short = name.removeprefix("krabgraph.msgs.")
    for mod in _MODULES:
        cls = getattr(importlib.import_module(f"krabgraph.msgs.{mod}"), short, None)
        if isinstance(cls, type) and issubclass(cls, Message):
            return cls
    raise KeyError(f"unknown message type {name!r}")
