"""Where ``FoxgloveView`` sends its channels: a live foxglove-sdk context, or an MCAP file.

Three kinds of channel, the same for both outlets:

- ``protobuf(topic, cls)``: a krabgraph topic, its payload bytes unchanged, the message's protobuf
  schema embedded and its wire type tag in the channel metadata (``mcapio.TAG_KEY``), as the
  recorder node writes them;
- ``json(topic, name, schema, source)``: JSON messages with a JSON Schema (the ``/values`` twins);
- ``typed(topic, message_type, source)``: a ``foxglove.messages`` type (FrameTransforms, SceneUpdate,
  PointCloud, RawImage): ``foxglove.channels.<Type>Channel`` live, the message's own encoding and
  schema in a file.

Derived channels (json, typed) carry ``mcapio.VIEW_KEY`` = their source in the metadata, so krabgraph's
own reader (``read_recording``, the replay node) passes over them.

``LiveOutlet`` logs into a ``foxglove.Context`` (a WebSocket server is its sink; ``wanted`` is false
until a client subscribes, so an unwatched channel costs a check). ``McapOutlet`` writes with
``mcapio.McapFile`` (crash-safe: a complete file after every flush): raw channels with wall-clock log
times from the view's ``WallClockBase`` (and its ``krabgraph.time_base`` metadata record), derived ones
at the log time the view gives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.message import Message

from krabgraph.msgs.schema import type_tag
from krabgraph.nodes.record.mcapio import TAG_KEY, VIEW_KEY, McapFile, WallClockBase

FLUSH_S = 1.0  # an MCAP outlet writes its chunk in progress out at least this often (wall time)


class Sink(Protocol):
    """One channel of an outlet."""

    topic: str
    count: int  # messages logged

    def wanted(self) -> bool: ...

    def log(self, msg: Any, log_time: int, stamp_ns: int = 0, seq: int = 0) -> None: ...


class Outlet(Protocol):
    def protobuf(self, topic: str, cls: type[Message]) -> Sink: ...

    def json(self, topic: str, name: str, schema: dict[str, Any], source: str) -> Sink: ...

    def typed(self, topic: str, message_type: type, source: str) -> Sink: ...


# -- live ---------------------------------------------------------------------------------------------
class LiveSink:
    """A foxglove-sdk channel: logs only while a sink (a subscribed client) wants it."""

    def __init__(self, topic: str, channel: Any):
        self.topic, self.channel, self.count = topic, channel, 0

    def wanted(self) -> bool:
        return self.channel.has_sinks()

    def log(self, msg: Any, log_time: int, stamp_ns: int = 0, seq: int = 0) -> None:
        if isinstance(msg, dict):
            msg = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
        self.channel.log(msg, log_time=log_time)
        self.count += 1


class LiveOutlet:
    """Channels on a ``foxglove.Context`` (created here unless given)."""

    def __init__(self, context: Any = None):
        import foxglove

        self.foxglove = foxglove
        self.context = context if context is not None else foxglove.Context()
        self.sinks: list[LiveSink] = []

    def _add(self, topic: str, channel: Any) -> LiveSink:
        sink = LiveSink(topic, channel)
        self.sinks.append(sink)
        return sink

    def protobuf(self, topic: str, cls: type[Message]) -> LiveSink:
        from mcap_protobuf.schema import build_file_descriptor_set

        schema = self.foxglove.Schema(
            name=cls.DESCRIPTOR.full_name, encoding="protobuf", data=build_file_descriptor_set(cls).SerializeToString()
        )
        meta = {TAG_KEY: type_tag(cls).decode()}
        channel = self.foxglove.Channel(
            topic, schema=schema, message_encoding="protobuf", context=self.context, metadata=meta
        )
        return self._add(topic, channel)

    def json(self, topic: str, name: str, schema: dict[str, Any], source: str) -> LiveSink:
        data = json.dumps(schema).encode()
        channel = self.foxglove.Channel(
            topic,
            schema=self.foxglove.Schema(name=name, encoding="jsonschema", data=data),
            message_encoding="json",
            context=self.context,
            metadata={VIEW_KEY: source},
        )
        return self._add(topic, channel)

    def typed(self, topic: str, message_type: type, source: str) -> LiveSink:
        import foxglove.channels

        cls = getattr(foxglove.channels, f"{message_type.__name__}Channel")
        return self._add(topic, cls(topic, context=self.context, metadata={VIEW_KEY: source}))


# -- MCAP ---------------------------------------------------------------------------------------------
class McapSink:
    """A channel of an MCAP file: raw payloads with the time base, or derived messages at a log time."""

    def __init__(self, outlet: McapOutlet, topic: str, channel_id: int, *, raw: bool):
        self.outlet, self.topic, self.channel_id, self.raw, self.count = outlet, topic, channel_id, raw, 0

    def wanted(self) -> bool:
        return True

    def log(self, msg: Any, log_time: int, stamp_ns: int = 0, seq: int = 0) -> None:
        file = self.outlet.file
        if self.raw:
            file.write(self.channel_id, msg, stamp_ns, seq, self.outlet.time_base)
        else:
            if isinstance(msg, dict):
                data = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
            else:
                data = msg.encode()
            file.write(self.channel_id, data, log_time, 0)
        self.count += 1


class McapOutlet:
    """Channels of one MCAP file written with ``mcapio.McapFile`` (see the module docstring)."""

    def __init__(self, path: str | Path, time_base: WallClockBase, *, compression: str = "zstd"):
        self.path = Path(path)
        self.time_base = time_base
        self.file = McapFile(self.path, compression=compression, library="krabgraph record")
        self.sinks: list[McapSink] = []
        self.schemas: dict[tuple[str, str], int] = {}
        self.flushed = time.monotonic()

    def _add(self, topic: str, channel_id: int, *, raw: bool) -> McapSink:
        sink = McapSink(self, topic, channel_id, raw=raw)
        self.sinks.append(sink)
        return sink

    def protobuf(self, topic: str, cls: type[Message]) -> McapSink:
        return self._add(topic, self.file.channel(topic, cls, type_tag(cls).decode()), raw=True)

    def _schema(self, name: str, encoding: str, data: bytes) -> int:
        key = (name, encoding)
        if key not in self.schemas:
            self.schemas[key] = self.file.writer.register_schema(name, encoding, data)
        return self.schemas[key]

    def _derived(self, topic: str, schema_id: int, encoding: str, source: str) -> McapSink:
        channel_id = self.file.writer.register_channel(topic, encoding, schema_id, {VIEW_KEY: source})
        return self._add(topic, channel_id, raw=False)

    def json(self, topic: str, name: str, schema: dict[str, Any], source: str) -> McapSink:
        return self._add(topic, self.file.json_channel(topic, name, schema, source), raw=False)

    def typed(self, topic: str, message_type: type, source: str) -> McapSink:
        schema = message_type.get_schema()
        return self._derived(topic, self._schema(schema.name, schema.encoding, bytes(schema.data)), "protobuf", source)

    def tick(self) -> None:
        """Write the chunk in progress out, at most every ``FLUSH_S`` (a killed recorder loses no more)."""
        now = time.monotonic()
        if now - self.flushed >= FLUSH_S:
            self.file.flush()
            self.flushed = now

    def close(self) -> None:
        self.file.close()


__all__ = ["LiveOutlet", "LiveSink", "McapOutlet", "McapSink", "Outlet", "Sink"]
