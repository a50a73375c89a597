"""What a topic carries: two ZeroMQ frames, ``[type tag, protobuf payload]``.

The tag (``b"krabgraph.msgs.RobotState@1"``) lets a subscriber refuse a wrong type or an
incompatible schema version before parsing, with an error that says which.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from krabgraph.launch.errors import WireError
from krabgraph.msgs.schema import type_tag


def encode(msg: Message) -> list[bytes]:
    return [type_tag(type(msg)), msg.SerializeToString()]


class Decoder:
    """Turns frames into a message of one expected type, or raises ``WireError``."""

    __slots__ = ("cls", "expected", "name")

    def __init__(self, cls: type[Message]):
        self.cls = cls
        self.expected = type_tag(cls)
        self.name = cls.DESCRIPTOR.full_name

    def decode(self, frames: list[bytes]) -> Message:
        if len(frames) != 2:
            raise WireError(f"malformed message: {len(frames)} frames, expected 2 ([type tag, payload])")
        tag, payload = frames
        if tag != self.expected:
            name, _, version = bytes(tag).decode(errors="replace").partition("@")
            if name == self.name:
                raise WireError(
                    f"schema version mismatch for {name}: got v{version}, this node reads "
                    f"v{self.expected.decode().partition('@')[2]}; rebuild the publisher against the same msgs/"
                )
            got = name or repr(bytes(tag))
            raise WireError(f"type mismatch: expected {self.name}, got {got}")
        try:
            return self.cls.FromString(payload)
        except DecodeError as exc:
            raise WireError(f"malformed {self.name} payload ({len(payload)} bytes): {exc}") from None
