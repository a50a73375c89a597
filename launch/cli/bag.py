"""Bags: ``krabgraph info RUN.mcap`` (what a recording holds) and ``krabgraph play RUN.mcap`` (its
messages published into a running graph), like ``ros2 bag info|play``.

Recordings are MCAP files: the ``recorder`` node's (protobuf channels of krabgraph messages, log
times on the wall clock, graph time in each message's header stamp) or any other MCAP writer's
(foxglove-sdk's JSON or foxglove-schema channels are listed by ``info``; ``play`` skips them).
``play`` sends through the graph's control channel (``launch/cli/control_client.py``): the graph
decides what it accepts (a topic a HAL reads is refused: robot commands come only from the safety
node); each refused topic is said once, with the graph's reason, and the rest plays on.
Needs the ``mcap`` package (the ``tools`` extra), imported when a file is read.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.cli.args import add_tap_options, non_negative, positive

MCAP_MAGIC = b"\x89MCAP0\r\n"
WALL_CLOCK_FLOOR_NS = 10**18  # log times at or above this are wall-clock time (after 2001-09-09)


class BagError(KrabgraphError):
    """A recording that cannot be read (missing, empty, not MCAP, truncated, corrupt): one line, exit 1."""


# -- reading --------------------------------------------------------------------------------------
@dataclass
class Channel:
    """One channel of a recording and what its messages span."""

    topic: str
    schema: str  # schema name, e.g. krabgraph.msgs.RobotState; "" without a schema
    schema_encoding: str  # protobuf, jsonschema, ...
    encoding: str  # message encoding: protobuf, json, ...
    tag: str  # the krabgraph wire tag (type@version) when its messages are krabgraph messages, else ""
    cls: type | None = None  # their krabgraph message class (None: not krabgraph messages)
    count: int = 0
    first_log_ns: int | None = None
    last_log_ns: int | None = None
    view: str = ""  # a viewer channel's source topic (``/values`` twins, ``/tf``, ...): derived, never played


@dataclass
class Message:
    """A recorded krabgraph message: its channel, log time, graph time (header stamp) and bytes."""

    channel: Channel
    log_ns: int
    stamp_ns: int | None  # None: a type without a header
    payload: bytes


@dataclass
class Scan:
    """What one pass over a recording found."""

    path: Path
    size: int
    library: str = ""
    profile: str = ""
    channels: dict[int, Channel] = field(default_factory=dict)
    compression: set[str] = field(default_factory=set)  # of its chunks; "" for uncompressed chunks
    chunks: int = 0
    messages: int = 0
    first: Message | None = None  # by log time
    last: Message | None = None
    first_stamped: Message | None = None  # the first and last krabgraph message with a header stamp
    last_stamped: Message | None = None
    recovered: str = ""  # a recorder's file it did not finish: read up to its last flushed chunk


def _channel(record: Any, schema: Any) -> Channel:
    """A channel record as a ``Channel``; a protobuf channel of a krabgraph message type gets its wire
    tag (the recorder's channel metadata, else from the schema name) and class."""
    from krabgraph.msgs.schema import message_class, type_tag
    from krabgraph.nodes.record.mcapio import TAG_KEY, VIEW_KEY  # the recorder's channel metadata

    channel = Channel(
        record.topic,
        schema.name if schema is not None else "",
        schema.encoding if schema is not None else "",
        record.message_encoding,
        "",
        view=record.metadata.get(VIEW_KEY, ""),
    )
    if schema is None or schema.encoding != "protobuf" or record.message_encoding != "protobuf":
        return channel
    if not schema.name.startswith("krabgraph.msgs."):
        return channel
    try:
        cls = message_class(schema.name)
    except (KeyError, ImportError, AttributeError):
        return channel
    channel.cls = cls
    channel.tag = record.metadata.get(TAG_KEY) or type_tag(cls).decode()
    return channel


def _stamp(cls: type, payload: bytes) -> int | None:
    """The header stamp (graph time, ns; a publisher stamps what it leaves unset, so 0 is graph time 0 of a
    lockstep run) of a krabgraph message; None for a type without a header or a payload that does not parse."""
    from google.protobuf.message import DecodeError

    from krabgraph.launch.api.ports import RawMessage

    if "header" not in cls.DESCRIPTOR.fields_by_name:
        return None
    try:
        return RawMessage("", cls, payload, 0).header.stamp_ns
    except (DecodeError, RecursionError, ValueError):
        return None


def scan(path: str | Path, on_message: Callable[[Message], None] | None = None) -> Scan:
    """Read a whole recording (CRCs checked), calling ``on_message`` for every krabgraph message.

    Raises ``BagError`` (one line saying what and how to fix) for a missing, empty, non-MCAP,
    truncated or corrupt file. A recorder's file that its recorder did not finish (a footer without
    a summary, written at each flush) is read up to its last flushed chunk and said in ``recovered``.
    """
    from krabgraph.nodes.record.mcapio import explain_read_error as explain
    from krabgraph.nodes.record.mcapio import open_for_reading

    path = Path(path)
    stream = open_for_reading(path, BagError)
    with stream:
        size = path.stat().st_size
        if size == 0:
            raise BagError(f"{path}: empty file (0 bytes), not a recording (was its writer stopped before it started?)")
        if stream.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise BagError(f"{path}: not an MCAP file (no MCAP magic bytes); krabgraph recordings are .mcap files")
        stream.seek(0)
        found = Scan(path, size)
        try:
            _read_records(stream, found, on_message)
        except BagError:
            raise
        except Exception as exc:  # the mcap reader raises assorted errors (McapError, struct, EOF) on bad data
            raise BagError(
                f"{path}: not a readable MCAP file ({explain(exc)}; {found.messages} messages before the break)"
            ) from None
    return found


def _read_records(stream: Any, found: Scan, on_message: Callable[[Message], None] | None) -> None:
    from mcap.records import Channel as McapChannel
    from mcap.records import Chunk, Footer, Header, Schema
    from mcap.records import Message as McapMessage
    from mcap.stream_reader import StreamReader, breakup_chunk

    schemas: dict[int, Any] = {}
    reader = StreamReader(stream, validate_crcs=True, emit_chunks=True, record_size_limit=1 << 30)
    for outer in reader.records:
        if isinstance(outer, Chunk):
            found.chunks += 1
            found.compression.add(outer.compression)
            inner = breakup_chunk(outer, validate_crc=True)
        else:
            inner = [outer]
        for record in inner:
            if isinstance(record, McapMessage):
                _message(found, record, on_message)
            elif isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, McapChannel):
                if record.id not in found.channels:
                    found.channels[record.id] = _channel(record, schemas.get(record.schema_id))
            elif isinstance(record, Header):
                found.library, found.profile = record.library, record.profile
            elif isinstance(record, Footer) and record.summary_start == 0 and found.library.startswith("krabgraph"):
                found.recovered = (
                    "its recorder did not finish it (killed?): read up to its last flushed chunk; "
                    "whatever came after is lost"
                )


def _message(found: Scan, record: Any, on_message: Callable[[Message], None] | None) -> None:
    channel = found.channels.get(record.channel_id)
    if channel is None:
        raise BagError(f"{found.path}: a message on channel {record.channel_id}, which the file never declares")
    found.messages += 1
    channel.count += 1
    t = record.log_time
    channel.first_log_ns = t if channel.first_log_ns is None else min(channel.first_log_ns, t)
    channel.last_log_ns = t if channel.last_log_ns is None else max(channel.last_log_ns, t)
    stamp = _stamp(channel.cls, record.data) if channel.cls is not None else None
    msg = Message(channel, t, stamp, record.data if on_message is not None and channel.cls is not None else b"")
    if found.first is None or t < found.first.log_ns:
        found.first = msg
    if found.last is None or t >= found.last.log_ns:
        found.last = msg
    if stamp is not None:
        if found.first_stamped is None or t < found.first_stamped.log_ns:
            found.first_stamped = msg
        if found.last_stamped is None or t >= found.last_stamped.log_ns:
            found.last_stamped = msg
    if on_message is not None and channel.cls is not None:
        on_message(msg)


# -- info -----------------------------------------------------------------------------------------
def _iso(log_ns: int | None) -> str | None:
    """A wall-clock log time as ISO 8601 UTC; None for log times that are not wall-clock time."""
    if log_ns is None or log_ns < WALL_CLOCK_FLOOR_NS:
        return None
    return datetime.fromtimestamp(log_ns // 1_000_000_000, tz=timezone.utc).replace(
        microsecond=(log_ns // 1000) % 1_000_000
    ).isoformat().replace("+00:00", "Z")  # fmt: skip


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def _graph_s(msg: Message | None) -> float | None:
    return None if msg is None or msg.stamp_ns is None else round(msg.stamp_ns * 1e-9, 6)


def info(path: str | Path) -> dict[str, Any]:
    """``krabgraph info``: size, duration, start and end (wall clock and graph time), messages,
    compression and each topic's type, encoding, count and mean rate (messages per second of log time
    between its first and last message)."""
    found = scan(path)
    first, last = found.first, found.last
    duration = (last.log_ns - first.log_ns) * 1e-9 if first and last else 0.0
    compression = sorted(c or "none" for c in found.compression) or ["none (no chunks)"]
    out: dict[str, Any] = {
        "path": str(found.path),
        "size": _human_size(found.size),
        "size_bytes": found.size,
        "library": found.library,
        "duration_s": round(duration, 6),
        "start": {"wall_clock": _iso(first.log_ns if first else None), "graph_time_s": _graph_s(found.first_stamped)},
        "end": {"wall_clock": _iso(last.log_ns if last else None), "graph_time_s": _graph_s(found.last_stamped)},
        "messages": found.messages,
        "compression": ", ".join(compression),
        "chunks": found.chunks,
        "topics": [_topic_info(c) for c in sorted(found.channels.values(), key=lambda c: c.topic)],
    }
    if found.recovered:
        out["recovered"] = found.recovered
    return out


def _topic_info(channel: Channel) -> dict[str, Any]:
    span = (
        (channel.last_log_ns - channel.first_log_ns) * 1e-9
        if channel.first_log_ns is not None and channel.last_log_ns is not None
        else 0.0
    )
    return {
        "topic": channel.topic,
        "type": channel.schema or "(no schema)",
        "encoding": channel.encoding,
        "count": channel.count,
        "rate_hz": round((channel.count - 1) / span, 3) if channel.count > 1 and span > 0 else None,
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``krabgraph info RUN.mcap [--json]``: exit 0, or 1 with one error line."""
    try:
        data = info(args.recording)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        from krabgraph.launch.cli.echo import to_yaml

        print(to_yaml(data), end="")
    return 0


# -- play -----------------------------------------------------------------------------------------
NO_ANSWER = "no graph answered"  # how the control client says the graph is gone (not a refusal)
PROGRESS_S = 0.2  # a terminal's progress line is redrawn at most this often (wall time)
LOG_PROGRESS_S = 10.0  # ...and a line is printed this often when the output is not a terminal
REASON_CHARS = 72  # a refusal's reason in the summary table is cut to this length


@dataclass
class TopicTally:
    """One topic's fate during a play."""

    type_name: str
    sent: int = 0
    refused: int = 0
    reason: str = ""  # why the graph refused it (said once)


@dataclass
class Playlist:
    """The messages to play, in graph-time order, and what was left out and why."""

    messages: list[Message]
    skipped: dict[str, str]  # topic -> why it is not played (not a krabgraph message, no graph time)
    span_ns: int  # graph time from the first to the last message played
    unmatched: list[str] = field(default_factory=list)  # --topics patterns that match no topic of the file


def playlist(path: str | Path, patterns: list[str] | None, start_s: float, duration_s: float | None) -> Playlist:
    """The recording's krabgraph messages on topics matching ``patterns`` (globs; all without), ordered
    by header stamp (file order among equal stamps), from ``start_s`` after the first stamp for
    ``duration_s``. Raises ``BagError`` when that leaves nothing to play."""

    def wanted(topic: str) -> bool:
        return not patterns or any(fnmatch.fnmatchcase(topic, p) for p in patterns)

    kept: list[Message] = []
    found = scan(path, lambda m: kept.append(m) if wanted(m.channel.topic) else None)
    skipped = {
        c.topic: f"{c.schema or c.encoding or 'unknown'} messages are not krabgraph messages"
        for c in found.channels.values()
        if wanted(c.topic) and not c.tag and not c.view
    }
    unstamped = {m.channel.topic for m in kept if m.stamp_ns is None}
    skipped.update({t: "its type has no header stamp (graph time) to time it by" for t in unstamped})
    messages = [m for m in kept if m.channel.topic not in skipped]
    messages.sort(key=lambda m: m.stamp_ns)  # stable: file order among equal stamps
    if not messages:
        playable = sorted((c for c in found.channels.values() if not c.view), key=lambda c: c.topic)
        have = ", ".join(f"{c.topic} ({c.count})" for c in playable)
        asked = f" on {' '.join(patterns)}" if patterns else ""
        raise BagError(f"{found.path}: no krabgraph messages to play{asked}; the recording has: {have or 'nothing'}")
    t0 = messages[0].stamp_ns + round(start_s * 1e9)
    t1 = None if duration_s is None else t0 + round(duration_s * 1e9)
    window = [m for m in messages if m.stamp_ns >= t0 and (t1 is None or m.stamp_ns <= t1)]
    if not window:
        span = (messages[-1].stamp_ns - messages[0].stamp_ns) * 1e-9
        raise BagError(f"{found.path}: nothing to play after --start {start_s:g} s: the messages span {span:.3f} s")
    topics = [c.topic for c in found.channels.values()]
    unmatched = [p for p in patterns or [] if not any(fnmatch.fnmatchcase(t, p) for t in topics)]
    return Playlist(window, skipped, window[-1].stamp_ns - window[0].stamp_ns, unmatched)


class Player:
    """Publishes a playlist through a control client, timed by graph stamps over ``rate``."""

    def __init__(self, client: Any, rate: float, out: TextIO | None = None, err: TextIO | None = None):
        self.client = client
        self.rate = rate
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.tally: dict[str, TopicTally] = {}
        self.max_lag_s = 0.0
        self.passes = 0
        self.interactive = self.out.isatty()
        self._next_progress = 0.0

    def play(self, plan: Playlist, loop: bool = False) -> None:
        """One pass (or passes until Ctrl-C with ``loop``); ``KeyboardInterrupt`` passes through."""
        for m in plan.messages:
            self.tally.setdefault(m.channel.topic, TopicTally(m.channel.schema))
        while True:
            self._one_pass(plan)
            self.passes += 1
            if not loop or not any(t.sent for t in self.tally.values()):
                return

    def _one_pass(self, plan: Playlist) -> None:
        from krabgraph.launch.cli.control_client import ControlError

        t0, w0 = plan.messages[0].stamp_ns, time.monotonic()
        for m in plan.messages:
            tally = self.tally[m.channel.topic]
            if tally.reason:
                tally.refused += 1
                continue
            due = w0 + (m.stamp_ns - t0) * 1e-9 / self.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                self.max_lag_s = max(self.max_lag_s, -wait)
            try:
                self.client.publish(m.channel.topic, m.payload, m.channel.tag)
            except ControlError as exc:
                if str(exc).startswith(NO_ANSWER):
                    raise
                tally.reason, tally.refused = str(exc), tally.refused + 1
                print(f"refused: {m.channel.topic}: {exc}; skipping it", file=self.err, flush=True)
                continue
            tally.sent += 1
            self._progress((m.stamp_ns - t0) * 1e-9, plan.span_ns * 1e-9)

    def _progress(self, at_s: float, span_s: float) -> None:
        now = time.monotonic()
        if now < self._next_progress:
            return
        sent = sum(t.sent for t in self.tally.values())
        text = f"[{at_s:8.2f} / {span_s:.2f} s of recording]  {sent} sent"
        if self.passes:
            text += f"  (pass {self.passes + 1})"
        if self.interactive:
            print(f"\r{text}", end="", file=self.out, flush=True)
            self._next_progress = now + PROGRESS_S
        else:
            if self._next_progress:
                print(text, file=self.out, flush=True)
            self._next_progress = now + LOG_PROGRESS_S

    def summary(self) -> list[str]:
        """Per topic: sent and refused (with the reason), then the timing."""
        from krabgraph.launch.cli.introspect import table

        rows = [
            [topic, t.type_name.removeprefix("krabgraph.msgs."), t.sent, t.refused, _shorten(t.reason) or "-"]
            for topic, t in sorted(self.tally.items())
        ]
        lines = table(rows, ["topic", "type", "sent", "refused", "reason"]).splitlines()
        if self.max_lag_s > 0.05:
            lines.append(f"at most {self.max_lag_s:.3f} s behind schedule (the graph answers each message in turn)")
        return lines


def _shorten(text: str, width: int = REASON_CHARS) -> str:
    """The start of a reason for the summary table (the whole of it was said when it happened)."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def cmd_play(args: argparse.Namespace) -> int:
    """``krabgraph play RUN.mcap``: exit 0 (played, stopped with Ctrl-C, or some topics refused), 1 with
    one error line (bad file, no graph, every topic refused, the graph gone mid-play)."""
    from krabgraph.launch.cli.control_client import ControlClient, ControlError

    try:
        plan = playlist(args.recording, args.topics, args.start or 0.0, args.duration)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for pattern in plan.unmatched:
        print(f"warning: --topics {pattern}: no topic of the recording matches it", file=sys.stderr)
    for topic, why in sorted(plan.skipped.items()):
        print(f"not played: {topic}: {why}", file=sys.stderr)
    topics = sorted({m.channel.topic for m in plan.messages})
    with ControlClient(args.tap, server_key=args.server_key, key=args.key, timeout_s=args.timeout) as client:
        try:
            graph = client.graph_info()["graph"]
        except ControlError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"playing {len(plan.messages)} messages on {len(topics)} topic{'s' * (len(topics) != 1)} "
            f"({plan.span_ns * 1e-9:.2f} s of "
            f"recording) into graph {graph!r} on {args.tap} at rate {args.rate:g}" + (", looping" if args.loop else ""),
            flush=True,
        )
        player, code = Player(client, args.rate), 0
        newline = "\n" if player.interactive else ""  # after the progress line
        try:
            player.play(plan, loop=args.loop)
        except KeyboardInterrupt:
            print(f"{newline}stopped (Ctrl-C)", file=sys.stderr)
        except ControlError as exc:
            print(f"{newline}error: {exc}; stopped", file=sys.stderr)
            code = 1
    if player.interactive:
        print()
    for line in player.summary():
        print(line)
    if code == 0 and player.tally and not any(t.sent for t in player.tally.values()):
        print("error: nothing was played: the graph refused every topic", file=sys.stderr)
        code = 1
    return code


# -- record (krabgraph record) ----------------------------------------------------------------------
def cmd_record(args: argparse.Namespace) -> int:
    """``krabgraph record [TOPIC_GLOBS...] -o RUN.mcap``: a running graph's topics, read through its tap,
    into an MCAP file that Foxglove and krabgraph both read: the raw protobuf channels as the recorder
    node writes them (``mcapio``: ``plot``, ``replay``, ``play`` read them) plus the live server's
    ``/values``, ``/tf`` and ``/scene/*`` channels (``FoxgloveView``, one code path). Ctrl-C, SIGTERM
    or ``--duration`` (wall seconds) ends it; the file is closed properly and a summary printed."""
    from krabgraph.launch.cli.echo import to_data
    from krabgraph.launch.cli.foxglove import Pump, select_topics, sigterm_as_interrupt, tap_client
    from krabgraph.nodes.record.foxglove import FoxgloveView
    from krabgraph.nodes.record.mcapio import WallClockBase
    from krabgraph.nodes.record.outlets import McapOutlet

    output = Path(args.output or time.strftime("rec_%Y%m%d-%H%M%S.mcap"))
    with tap_client(args) as client:
        info = client.graph_info()
        topics = select_topics(info, args.topics)
        time_base = WallClockBase()
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            outlet = McapOutlet(output, time_base)
        except OSError as exc:
            raise BagError(f"cannot write {output}: {exc.strerror or exc}") from None
        try:
            view = FoxgloveView(outlet, info, to_data=to_data, scene=not args.no_scene, time_base=time_base)
            until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
            print(f"recording {len(topics)} topics of graph {info['graph']!r} to {output} {until}", flush=True)
            pump = Pump(client, topics, view.handle)
            with sigterm_as_interrupt():
                pump.run(duration_s=args.duration, each_pass=outlet.tick)
        finally:
            outlet.close()
    return _record_summary(output, view.counts(), pump)


def _record_summary(output: Path, counts: dict[str, int], pump: Any) -> int:
    total = sum(pump.counts.values())
    channels = f"{sum(counts.values())} on {len(counts)} channels"
    print(f"wrote {output}: {total} messages of {len(pump.counts)} topics, {channels}")
    width = max((len(t) for t in counts), default=5)
    for topic, n in sorted(counts.items(), key=lambda kv: (kv[0].startswith("/"), kv[0])):
        print(f"  {topic:<{width}}  {n}")
    if not total:
        topics = ", ".join(sorted(pump.names.values()))
        print(f"error: no message arrived on {topics}: is the graph running?", file=sys.stderr)
        return 1
    return 0


def add_record_parser(sub: Any) -> None:
    """Register ``record`` on the ``krabgraph`` sub-command parser."""

    sp = sub.add_parser("record", help="record a running graph (launch --tap) to MCAP, with Foxglove's /tf, /scene/*")
    sp.add_argument("topics", nargs="*", metavar="TOPIC_GLOB", help="topics to record (names or globs; default: all)")
    sp.add_argument("-o", "--output", metavar="RUN.mcap", help="file to write (default rec_YYYYmmdd-HHMMSS.mcap)")
    sp.add_argument("--duration", type=positive, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    sp.add_argument("--no-scene", action="store_true", help="no robot model, terrain or height scan (/tf, /scene/*)")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_record)


# -- command line ---------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    """Register the bag verbs (``info``, ``play``) on the ``krabgraph`` sub-command parser."""
    sp = sub.add_parser("info", help="what a recording (MCAP) holds: duration, start/end, topics with counts and rates")
    sp.add_argument("recording", metavar="RUN.mcap", help="a recording (the recorder node's, or any MCAP file)")
    sp.add_argument("--json", action="store_true", help="JSON instead of YAML")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("play", help="publish a recording's messages into a running graph (needs launch --tap)")
    sp.add_argument("recording", metavar="RUN.mcap", help="a recording made by the recorder node")
    sp.add_argument("--rate", type=positive, default=1.0, metavar="R", help="speed relative to the recording (1.0)")
    sp.add_argument("--topics", nargs="+", metavar="GLOB", help="play only these topics (names or globs: 'command/*')")
    sp.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    sp.add_argument("--start", type=non_negative, metavar="S", help="skip the first S seconds of the recording")
    sp.add_argument("--duration", type=positive, metavar="S", help="play S seconds of the recording")
    add_tap_options(sp)
    sp.set_defaults(func=cmd_play)
    add_record_parser(sub)


__all__ = ["BagError", "Player", "Playlist", "add_parser", "cmd_info", "cmd_play", "info", "playlist", "scan"]
