"""Protobuf messages of krabgraph (package ``krabgraph.msgs``) and NumPy helpers.

Generated from ``msgs/*.proto``; regenerate with ``make msgs``. Names load on first use, so a
module that needs one message (``krabgraph.msgs.common_pb2``) does not pay for NumPy or the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from krabgraph.msgs.arrays import ArrayError, array_message, set_array, to_numpy
    from krabgraph.msgs.common_pb2 import (
        Array,
        ArrayStamped,
        Clock,
        Diagnostics,
        DType,
        Header,
        Heartbeat,
        Quaternion,
        Vector3,
    )
    from krabgraph.msgs.control_pb2 import CommandSource, EStop, JointCommand, SafetyStatus, VelocityCommand
    from krabgraph.msgs.perception_pb2 import DepthImage, HeightScan
    from krabgraph.msgs.robot_pb2 import BaseState, FootContacts, Imu, JointState, RobotState
    from krabgraph.msgs.schema import message_class, schema_version, type_tag

_MODULE_OF = {
    **dict.fromkeys(("ArrayError", "array_message", "set_array", "to_numpy"), "arrays"),
    **dict.fromkeys(
        ("Array", "ArrayStamped", "Clock", "Diagnostics", "DType", "Header", "Heartbeat", "Quaternion", "Vector3"),
        "common_pb2",
    ),
    **dict.fromkeys(("CommandSource", "EStop", "JointCommand", "SafetyStatus", "VelocityCommand"), "control_pb2"),
    **dict.fromkeys(("DepthImage", "HeightScan"), "perception_pb2"),
    **dict.fromkeys(("BaseState", "FootContacts", "Imu", "JointState", "RobotState"), "robot_pb2"),
    **dict.fromkeys(("message_class", "schema_version", "type_tag"), "schema"),
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = [
    "Array",
    "ArrayError",
    "ArrayStamped",
    "BaseState",
    "Clock",
    "CommandSource",
    "DType",
    "DepthImage",
    "Diagnostics",
    "EStop",
    "FootContacts",
    "Header",
    "Heartbeat",
    "HeightScan",
    "Imu",
    "JointCommand",
    "JointState",
    "Quaternion",
    "RobotState",
    "SafetyStatus",
    "Vector3",
    "VelocityCommand",
    "array_message",
    "message_class",
    "schema_version",
    "set_array",
    "to_numpy",
    "type_tag",
]
