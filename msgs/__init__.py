"""Protobuf messages of krabgraph (package ``krabgraph.msgs``) and NumPy helpers.

Generated from ``msgs/*.proto``; regenerate with ``make msgs``.
"""

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
from krabgraph.msgs.control_pb2 import (
    CommandSource,
    EStop,
    JointCommand,
    SafetyStatus,
    VelocityCommand,
)
from krabgraph.msgs.perception_pb2 import DepthImage, HeightScan
from krabgraph.msgs.robot_pb2 import BaseState, FootContacts, Imu, JointState, RobotState
from krabgraph.msgs.schema import message_class, schema_version, type_tag

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
