"""MCAP files of krabgraph topics: one channel per topic, protobuf schemas embedded.

Each channel's metadata keeps the wire type tag (``krabgraph.msgs.RobotState@1``), so a replay
can refuse a recording made with another schema version. Log and publish times are the
message's header stamp (graph time, ns).

Crash safety: a file being written always ends in a valid ``DataEnd``, ``Footer`` (no summary)
and magic, which each flush overwrites with the next chunk and a fresh tail. A writer killed
between flushes (SIGKILL, power kept) thus leaves a complete MCAP file holding every flushed
chunk, which any MCAP reader opens (without a summary, readers scan it linearly); ``close``
replaces the tail with the full summary. ``read_recording`` reports such a file as recovered.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf.message import Message
from mcap.data_stream import RecordBuilder
from mcap.exceptions import EndOfFile, InvalidMagic
from mcap.records import Channel, DataEnd, Footer, Header, Schema
from mcap.records import Message as McapMessage
from mcap.stream_reader import StreamReader
from mcap.writer import MCAP0_MAGIC, CompressionType, Writer
from mcap_protobuf.schema import build_file_descriptor_set

from krabgraph.launch.api.errors import KrabgraphError

TAG_KEY = "krabgraph.type_tag"
VIEW_KEY = "krabgraph.view"  # a channel for viewers only (`krabgraph record`'s /tf, /scene/*, /values): not read
COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
log = logging.getLogger("krabgraph.record")
SYNC_S = 1.0  # fsync a file being written at most this often (wall time)


def _provisional_tail() -> bytes:
    """``DataEnd`` (no CRC) + ``Footer`` (no summary) + magic: what ends a file still being written."""
    builder = RecordBuilder()
    DataEnd(0).write(builder)
    Footer(0, 0, 0).write(builder)
    return bytes(builder.end()) + MCAP0_MAGIC


TAIL = _provisional_tail()


class RecordingError(KrabgraphError):
    """A recording that cannot be read, or does not hold what was asked for."""


EPOCH_FLOOR_NS = 10**18  # a stamp at or above this is already wall-clock time (ns since 1970, after 2001-09-09)
TIME_BASE_METADATA = "krabgraph.time_base"


class WallClockBase:
    """Log times on the wall clock for graph stamps: the offset between the wall clock and the graph
    clock at the first message, kept for the whole run, so viewers show the real date and time while
    messages keep their graph-time spacing (a lockstep run faster than real time stays one timeline).
    Stamps already on the wall clock are kept; graph time stays in each message's header."""

    def __init__(self) -> None:
        self.offset_ns: int | None = None

    def log_time(self, stamp_ns: int) -> int:
        if self.offset_ns is None:
            self.offset_ns = 0 if stamp_ns >= EPOCH_FLOOR_NS else time.time_ns() - stamp_ns
        return stamp_ns + self.offset_ns


class _TailedStream:
    """The stream a ``Writer`` writes to: bytes are held until ``commit``, which writes them over
    the previous provisional tail and appends a new one, in one system call."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.committed = 0  # bytes of the file before the tail
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        return len(data)

    def tell(self) -> int:
        return self.committed + len(self.pending)

    def flush(self) -> None:
        """The writer's own flush: nothing (``commit`` decides when bytes reach the file)."""

    def commit(self, tail: bytes = TAIL) -> None:
        data = bytes(self.pending) + tail
        view, offset = memoryview(data), self.committed
        while view:  # pwrite may write less than asked (a signal, a full disk)
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        self.committed += len(self.pending)
        self.pending.clear()
        if not tail:
            os.ftruncate(self.fd, offset)

    def close(self) -> None:
        os.close(self.fd)


class McapFile:
    """One MCAP file being written; schemas and channels are registered on first use.

    Always a readable file: each chunk is written out with a provisional tail (see the module
    docstring) when it fills (``chunk_size``) or on ``flush``.
    """

    def __init__(self, path: Path, *, compression: str = "zstd", chunk_size: int = 1 << 20, library: str = ""):
        self.path = path
        self.stream = _TailedStream(path)
        self.writer = Writer(self.stream, chunk_size=chunk_size, compression=COMPRESSION[compression])
        self.writer.start(profile="", library=library or "krabgraph")
        self.stream.commit()  # a valid empty MCAP file from the start
        self.channels: dict[str, int] = {}
        self.schemas: dict[str, int] = {}
        self.messages = 0
        self.payload_bytes = 0  # message bytes written, before compression
        self.first_ns: int | None = None
        self.unflushed = 0  # messages not yet in the file
        self.chunk_first_ns: int | None = None  # stamp of the oldest message not yet in the file
        self.flushes = 0
        self.synced = time.monotonic()
        self.time_base_written = False

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

    def json_channel(self, topic: str, name: str, schema: dict[str, Any], source: str) -> int:
        """A viewer channel of JSON messages with a JSON Schema (a ``/values`` twin of ``source``):
        its metadata ``VIEW_KEY`` makes krabgraph's reader pass over it. Schemas equal in name and
        text are registered once."""
        cid = self.channels.get(topic)
        if cid is None:
            text = json.dumps(schema)
            key = f"jsonschema:{name}:{text}"
            sid = self.schemas.get(key)
            if sid is None:
                sid = self.schemas[key] = self.writer.register_schema(name, "jsonschema", text.encode())
            cid = self.channels[topic] = self.writer.register_channel(topic, "json", sid, {VIEW_KEY: source})
        return cid

    def write(
        self, channel: int, payload: bytes, stamp_ns: int, seq: int, time_base: WallClockBase | None = None
    ) -> None:
        """One message; with ``time_base`` its log and publish times are wall-clock (see ``WallClockBase``,
        described once per file in a ``krabgraph.time_base`` metadata record), else the graph stamp."""
        log_ns = stamp_ns
        if time_base is not None:
            log_ns = time_base.log_time(stamp_ns)
            if not self.time_base_written:
                self.writer.add_metadata(
                    TIME_BASE_METADATA,
                    {
                        "log_time": "wall clock, ns since 1970-01-01 UTC: graph time + offset_ns",
                        "graph_time": "each message's header.stamp_ns",
                        "offset_ns": str(time_base.offset_ns),
                    },
                )
                self.time_base_written = True
        self.writer.add_message(channel, log_ns, payload, log_ns, seq & 0xFFFFFFFF)
        self.messages += 1
        self.payload_bytes += len(payload)
        if self.first_ns is None:
            self.first_ns = stamp_ns
        self.unflushed += 1
        if self.chunk_first_ns is None:
            self.chunk_first_ns = stamp_ns
        if self.stream.pending:  # the writer closed a full chunk, this message included
            self.stream.commit()
            self.flushes += 1
            self.unflushed, self.chunk_first_ns = 0, None

    def flush(self) -> None:
        """Write the chunk in progress (and a provisional tail) to the file: it survives the process
        being killed. At most once per ``SYNC_S`` of wall time, also fsync (survives a power cut)."""
        if not self.unflushed:
            return
        self.writer.flush()
        self.stream.commit()
        now = time.monotonic()
        if now - self.synced >= SYNC_S:
            os.fsync(self.stream.fd)
            self.synced = now
        self.flushes += 1
        self.unflushed, self.chunk_first_ns = 0, None

    @property
    def size(self) -> int:
        return self.stream.tell() + len(TAIL)

    def close(self) -> None:
        try:
            self.writer.finish()
            self.stream.commit(b"")
        finally:
            self.stream.close()


@dataclass
class Recording:
    """What a replay needs from a file: per message (topic, log time, wire frame), in file order."""

    path: Path
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # topic -> wire type tag
    counts: dict[str, int] = field(default_factory=dict)
    recovered: str = ""  # why the file is incomplete but readable (a recorder that did not finish it)


def read_recording(path: str | os.PathLike, topics: list[str] | None = None) -> Recording:
    """Read and check a whole file (CRCs, structure, every record up to the footer).

    A file its recorder did not finish (killed: a footer without a summary) is read up to its
    last flushed chunk; ``recovered`` says so and one warning is logged. Anything else wrong
    raises ``RecordingError`` with one line saying what; nothing partial is returned.
    """
    path = Path(path)
    rec = Recording(path)
    wanted = set(topics) if topics else None
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    footer: Footer | None = None
    library = ""
    try:
        with open(path, "rb") as stream:
            reader = StreamReader(stream, validate_crcs=True, record_size_limit=1 << 30)
            for record in reader.records:
                if isinstance(record, McapMessage):
                    channel = channels.get(record.channel_id)
                    if channel is None:
                        raise RecordingError(f"{path}: message on unknown channel {record.channel_id}")
                    topic = channel.topic
                    if (wanted is not None and topic not in wanted) or VIEW_KEY in channel.metadata:
                        continue
                    tag = rec.tags.get(topic)
                    if tag is None:
                        tag = channel.metadata.get(TAG_KEY) or _tag_from_schema(schemas.get(channel.schema_id), topic)
                        rec.tags[topic] = tag
                    rec.messages.append((topic, record.log_time, tag.encode() + b"\0" + record.data))
                    rec.counts[topic] = rec.counts.get(topic, 0) + 1
                elif isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Header):
                    library = record.library
                elif isinstance(record, Footer):
                    footer = record
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except RecordingError:
        raise
    except Exception as exc:  # the mcap reader raises assorted errors (McapError, struct, EOF) on bad data
        raise RecordingError(f"{path}: not a readable MCAP file ({explain_read_error(exc)})") from None
    if footer is not None and footer.summary_start == 0 and library.startswith("krabgraph"):
        times = [t for _, t, _ in rec.messages]
        span = (max(times) - min(times)) * 1e-9 if times else 0.0
        rec.recovered = (
            f"{path}: recovered: its recorder did not finish it (killed?); read {len(rec.messages)} messages "
            f"up to its last flushed chunk ({span:.3f} s after the first message); whatever came after is lost"
        )
        log.warning("%s", rec.recovered)
    stamps = [t for _, t, _ in rec.messages]
    if any(b < a for a, b in itertools.pairwise(stamps)):  # keep file order among equal stamps
        rec.messages.sort(key=lambda m: m[1])
    return rec


def open_for_reading(path: Path, error: type[Exception]) -> BinaryIO:
    """``path`` opened for reading, or ``error`` with one line (no such file, or why it cannot be read)."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror})") from None


def explain_read_error(exc: Exception) -> str:
    """Why the ``mcap`` reader stopped, in words a user can act on."""
    if isinstance(exc, InvalidMagic):
        return "no MCAP magic bytes: not an MCAP file"
    if isinstance(exc, EndOfFile):
        return "truncated: it ends before its footer"
    if isinstance(exc, struct.error):
        return f"truncated or corrupt record: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _tag_from_schema(schema, topic: str) -> str:
    if schema is None or schema.encoding != "protobuf":
        raise RecordingError(f"topic {topic!r} has no protobuf schema")
    from krabgraph.msgs.schema import message_class, type_tag

    try:
        return type_tag(message_class(schema.name)).decode()
    except (KeyError, ImportError, AttributeError):
        raise RecordingError(f"topic {topic!r} carries {schema.name}, which krabgraph does not know") from None
