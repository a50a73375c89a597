"""MCAP files of krabgraph topics: one channel per topic, protobuf schemas embedded.

Each channel's metadata keeps the wire type tag (``krabgraph.msgs.RobotState@1``), so a replay
can refuse a recording made with another schema version. Log and publish times are the
message's header stamp (graph time, ns).
"""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from google.protobuf.message import Message
from mcap.exceptions import EndOfFile, InvalidMagic
from mcap.reader import NonSeekingReader
from mcap.writer import CompressionType, Writer
from mcap_protobuf.schema import build_file_descriptor_set

from krabgraph.launch.errors import KrabgraphError

TAG_KEY = "krabgraph.type_tag"
COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


class RecordingError(KrabgraphError):
    """A recording that cannot be read, or does not hold what was asked for."""


class McapFile:
    """One MCAP file being written; schemas and channels are registered on first use."""

    def __init__(self, path: Path, *, compression: str = "zstd", chunk_size: int = 1 << 20, library: str = ""):
        self.path = path
        self.stream: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.writer = Writer(self.stream, chunk_size=chunk_size, compression=COMPRESSION[compression])
        self.writer.start(profile="", library=library or "krabgraph")
        self.channels: dict[str, int] = {}
        self.schemas: dict[str, int] = {}
        self.messages = 0
        self.payload_bytes = 0  # message bytes written, before compression
        self.first_ns: int | None = None

    def channel(self, topic: str, cls: type[Message], tag: str) -> int:
        cid = self.channels.get(topic)
        if cid is None:
            name = cls.DESCRIPTOR.full_name
            sid = self.schemas.get(name)
            if sid is None:
                data = build_file_descriptor_set(cls).SerializeToString()
                sid = self.schemas[name] = self.writer.register_schema(name, "protobuf", data)
            cid = self.channels[topic] = self.writer.register_channel(topic, "protobuf", sid, {TAG_KEY: tag})
        return cid

    def write(self, channel: int, payload: bytes, stamp_ns: int, seq: int) -> None:
        self.writer.add_message(channel, stamp_ns, payload, stamp_ns, seq & 0xFFFFFFFF)
        self.messages += 1
        self.payload_bytes += len(payload)
        if self.first_ns is None:
            self.first_ns = stamp_ns

    @property
    def size(self) -> int:
        return self.stream.tell()

    def close(self) -> None:
        try:
            self.writer.finish()
        finally:
            self.stream.close()


@dataclass
class Recording:
    """What a replay needs from a file: per message (topic, log time, wire frame), in file order."""

    path: Path
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # topic -> wire type tag
    counts: dict[str, int] = field(default_factory=dict)


def read_recording(path: str | os.PathLike, topics: list[str] | None = None) -> Recording:
    """Read and check a whole file (CRCs, structure, every record up to the footer).

    Raises ``RecordingError`` with one line saying what is wrong; nothing partial is returned.
    """
    path = Path(path)
    rec = Recording(path)
    wanted = set(topics) if topics else None
    try:
        with open(path, "rb") as stream:
            reader = NonSeekingReader(stream, validate_crcs=True, record_size_limit=1 << 30)
            for schema, channel, message in reader.iter_messages(log_time_order=False):
                topic = channel.topic
                if wanted is not None and topic not in wanted:
                    continue
                tag = rec.tags.get(topic)
                if tag is None:
                    tag = channel.metadata.get(TAG_KEY) or _tag_from_schema(schema, topic)
                    rec.tags[topic] = tag
                rec.messages.append((topic, message.log_time, tag.encode() + b"\0" + message.data))
                rec.counts[topic] = rec.counts.get(topic, 0) + 1
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except RecordingError:
        raise
    except Exception as exc:  # the mcap reader raises assorted errors (McapError, struct, EOF) on bad data
        raise RecordingError(f"{path}: not a readable MCAP file ({_explain(exc)})") from None
    stamps = [t for _, t, _ in rec.messages]
    if any(b < a for a, b in itertools.pairwise(stamps)):  # keep file order among equal stamps
        rec.messages.sort(key=lambda m: m[1])
    return rec


def _explain(exc: Exception) -> str:
    if isinstance(exc, InvalidMagic):
        return "no MCAP magic bytes: not an MCAP file"
    if isinstance(exc, EndOfFile):
        return "truncated: it ends before its footer"
    if isinstance(exc, struct.error):
        return f"truncated or corrupt record: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _tag_from_schema(schema, topic: str) -> str:
    if schema is None or schema.encoding != "protobuf":
        raise RecordingError(f"topic {topic!r} has no protobuf schema")
    from krabgraph.msgs.schema import message_class, type_tag

    try:
        return type_tag(message_class(schema.name)).decode()
    except (KeyError, ImportError, AttributeError):
        raise RecordingError(f"topic {topic!r} carries {schema.name}, which krabgraph does not know") from None
