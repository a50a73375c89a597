"""The recorder node: chosen topics to MCAP, written by a thread of its own."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from pathlib import Path

from google.protobuf.message import DecodeError, Message

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.msgs import Diagnostics
from krabgraph.nodes.record.mcapio import COMPRESSION, McapFile, WallClockBase
from krabgraph.nodes.record.values import has_arrays, json_schema, schema_name, to_data, to_json, values_topic

IDLE_S = 0.005  # the writer's sleep when its queue is empty
DISK_CHECK_S = 1.0  # how often the writer looks at the free space


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (patched in tests)."""
    return shutil.disk_usage(path).free


class Recorder(Node):
    """Writes the topics wired to ``topics`` to MCAP files, with their protobuf schemas.

    ``inputs: {topics: [hal/state, policy/joint_command]}`` (names or glob patterns such as
    ``hal/*``). Frames are not parsed on the graph's thread: the callback appends the received
    bytes to a bounded queue (``queue`` messages) and a writer thread parses each header (log and
    publish time = the header stamp, graph time in ns; sequence = header seq) and writes. A file
    is closed and the next one opened when it holds ``max_mb`` of messages (before compression, so
    the file is no larger plus its index) or spans ``max_duration_s`` of
    graph time (files ``<stem>_000.mcap``, ``_001``, ...; without rotation exactly ``path``).
    Below ``min_free_mb`` of free disk the recorder closes its file, logs one error and writes no
    more. Every message not written (queue full, disk floor, write error) is counted, logged
    each ``status_period_s`` and reported on ``diagnostics`` (Diagnostics: written, dropped, files).

    Crash safety: the chunk in progress is written out (with a provisional footer, so the file
    is a complete MCAP file at every flush) once it spans ``flush_s`` of graph time, each
    ``flush_s`` of graph time by a timer, and after ``flush_s`` of wall time with nothing to
    write, whatever ``chunk_kb``. A recorder killed with SIGKILL loses at most that much.
    A frame whose payload does not parse as its tagged type (or whose type is unknown) is not
    written: it is counted (``malformed``, ``unknown_type``) and logged once per topic and kind.

    With ``values`` (the default), each message of a type with float arrays also goes, with the same
    log time and sequence, to ``/<topic>/values``: the message as JSON with its arrays as numbers
    (``values.py``: ``to_data``, a JSON Schema from the descriptor), so Foxglove's Plot panel can plot
    ``/hal/state/values.joints.position[0]``. Converted on the writer thread and registered in each
    file; these viewer channels are marked ``VIEW_KEY`` (krabgraph's reader passes over them), are
    not counted in ``written`` (``values_written``), and their bytes count towards ``max_mb``.
    """

    kind = "recorder"
    path = Param(str, "build/recording.mcap", "output file (with rotation: <stem>_NNN.mcap)")
    max_mb = Param(float, 0.0, "rotate when a file holds this many message bytes; 0 = never", unit="MB", ge=0)
    max_duration_s = Param(float, 0.0, "rotate when a file spans this much graph time; 0 = never", unit="s", ge=0)
    min_free_mb = Param(float, 200.0, "stop writing when free disk space falls below this", unit="MB", ge=0)
    queue = Param(int, 20_000, "messages waiting for the writer; beyond that they are dropped (counted)", ge=1)
    compression = Param(str, "zstd", "chunk compression", choices=tuple(COMPRESSION))
    chunk_kb = Param(int, 1024, "MCAP chunk size", unit="KB", ge=1)
    status_period_s = Param(float, 1.0, "publish diagnostics (and log new drops) this often", unit="s", gt=0)
    flush_s = Param(float, 1.0, "write out the chunk in progress at least this often (graph time)", unit="s", gt=0)
    values = Param(bool, True, "also write /<topic>/values (arrays as JSON numbers) for Foxglove's Plot panel")

    topics = Input(AnyMessage, queue=100_000, triggers=False, doc="the topics to record (a list, globs allowed)")
    diagnostics = Output(Diagnostics, doc="written, dropped (by reason), files; WARN once anything was dropped")

    def on_configure(self) -> None:
        self._files: list[Path] = []
        self.written = 0
        self.values_written = 0  # /values twins written (not in ``written``)
        self.values_skipped = 0  # twins not written: a message its conversion refused (logged once per topic)
        self._plottable: dict[type[Message], bool] = {}  # message class -> has float arrays
        # queue_full and after_stop are counted by the graph's thread, the others by the writer's.
        self.dropped: dict[str, int] = {
            "queue_full": 0,
            "after_stop": 0,
            "disk_floor": 0,
            "write_error": 0,
            "malformed": 0,
            "unknown_type": 0,
        }
        self._flush_due = False
        self._reported_drops = 0
        self._stopped_reason = ""
        self._thread: threading.Thread | None = None
        self._file: McapFile | None = None
        self._time_base = WallClockBase()  # log times on the wall clock, for every file of this run

    # -- graph thread --------------------------------------------------------------------------
    def on_activate(self) -> None:
        self._queue: deque[RawMessage] = deque()
        self._closing = False
        self._thread = threading.Thread(target=self._writer, name=f"krabgraph-{self.name}-writer", daemon=True)
        self._thread.start()
        self.create_timer(self.status_period_s, self._status)
        self.create_timer(self.flush_s, self._request_flush)

    def _request_flush(self) -> None:
        self._flush_due = True

    def on_topics(self, msg: RawMessage) -> None:
        if len(self._queue) >= self.queue:
            self.dropped["queue_full"] += 1
        elif self._stopped_reason:
            self.dropped["after_stop"] += 1
        else:
            self._queue.append(msg)

    def on_deactivate(self) -> None:
        self._closing = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._status()
        files = ", ".join(str(f) for f in self._files) or "none"
        twins = f" (and {self.values_written} on /values channels)" if self.values_written else ""
        self.log.info("recorded %d messages%s to %s; %d not recorded", self.written, twins, files, self.total_dropped)

    def _status(self) -> None:
        dropped = self.total_dropped
        if dropped > self._reported_drops:
            reasons = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v)
            self.log.warning("%d messages not recorded so far (%s)", dropped, reasons)
            self._reported_drops = dropped
        msg = Diagnostics(node=self.name, message=self._stopped_reason and f"stopped: {self._stopped_reason}")
        msg.level = Diagnostics.ERROR if self._stopped_reason else Diagnostics.WARN if dropped else Diagnostics.OK
        msg.values["written"] = str(self.written)
        msg.values["values_written"] = str(self.values_written)
        msg.values["values_skipped"] = str(self.values_skipped)
        msg.values["dropped"] = str(dropped)
        for key, value in self.dropped.items():
            msg.values[f"dropped_{key}"] = str(value)
        msg.values["queued"] = str(len(self._queue))
        msg.values["files"] = ",".join(str(f) for f in self._files)
        self.diagnostics.publish(msg)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values()) + self.topics.dropped

    @property
    def files(self) -> list[Path]:
        return list(self._files)

    # -- writer thread -------------------------------------------------------------------------
    def _writer(self) -> None:
        queue = self._queue
        next_disk_check = 0.0
        last_flush = time.monotonic()
        try:
            while True:
                f = self._file
                if f is not None and f.unflushed and not self._stopped_reason:
                    now = time.monotonic()
                    if self._flush_due or (not queue and now - last_flush >= self.flush_s):
                        self._flush_due, last_flush = False, now
                        self._flush(f)
                if not queue:
                    if self._closing:
                        break
                    time.sleep(IDLE_S)
                    continue
                msg = queue.popleft()
                if self._stopped_reason:
                    self.dropped["disk_floor" if self._stopped_reason == "disk" else "write_error"] += 1
                    continue
                now = time.monotonic()
                if now >= next_disk_check:
                    next_disk_check = now + DISK_CHECK_S
                    if not self._disk_ok():
                        self._halt("disk")
                        self.dropped["disk_floor"] += 1
                        continue
                try:
                    self._write(msg)
                except Exception as exc:
                    self.dropped["write_error"] += 1
                    self.log.error("cannot write to %s: %s; recording stopped", self._current_path(), exc)
                    self._halt("write error")
        finally:
            self._close_file()

    def _write(self, msg: RawMessage) -> None:
        parsed = self._parse(msg)
        if parsed is None:
            return
        twin = self._twin(msg.topic, parsed) if self.values else None
        header = msg.header
        stamp = header.stamp_ns
        f = self._file
        if f is not None and self._should_rotate(f, stamp):
            self._close_file()
            f = None
        if f is None:
            f = self._open()
        channel = f.channels.get(msg.topic)
        if channel is None:
            channel = f.channel(msg.topic, msg.resolve(), msg.type_name + "@" + _version(msg))
        f.write(channel, msg.payload, stamp, header.seq, self._time_base)
        if twin is not None:
            self._write_twin(f, msg.topic, parsed, twin, stamp, header.seq)
        self.written += 1
        if f.chunk_first_ns is not None and stamp - f.chunk_first_ns >= self.flush_s * 1e9:
            self._flush(f)

    def _parse(self, msg: RawMessage) -> Message | None:
        """The whole payload parsed (off the graph's thread); None, counted and logged once, if it does not parse."""
        try:
            cls = msg.resolve()
        except (KeyError, ImportError, AttributeError):
            self._bad(
                msg,
                "unknown_type",
                f"type {msg.type_name!r} is not a krabgraph message; "
                "fix: publish a type from krabgraph.msgs (or import the module defining it)",
            )
            return None
        try:
            parsed = cls.FromString(msg.payload)
            msg.header  # noqa: B018 (parsed and cached here, before anything reads it)
        except DecodeError as exc:
            self._bad(
                msg,
                "malformed",
                f"{len(msg.payload)} payload bytes do not parse as {cls.DESCRIPTOR.full_name} ({exc}); "
                "fix: the publisher must send SerializeToString() of that type, built from the same msgs/",
            )
            return None
        return parsed

    def _twin(self, topic: str, parsed: Message) -> bytes | None:
        """The ``/values`` JSON of a message with float arrays; None for other types, or (counted and
        logged once per topic) for one the conversion refuses: the raw message is recorded anyway."""
        cls = type(parsed)
        plottable = self._plottable.get(cls)
        if plottable is None:
            plottable = self._plottable[cls] = has_arrays(cls.DESCRIPTOR)
        if not plottable:
            return None
        try:
            return to_json(to_data(parsed)).encode()
        except Exception as exc:  # a twin is optional: no value it cannot hold may stop the recording
            self.values_skipped += 1
            self.log_once(
                logging.WARNING,
                "not writing %s for a message on topic %s (%s: %s); the message itself is recorded, "
                "further ones are counted in values_skipped (values: false writes no /values channels)",
                values_topic(topic),
                topic,
                type(exc).__name__,
                exc,
                key=(topic, "values"),
            )
            return None

    def _write_twin(self, f: McapFile, topic: str, parsed: Message, data: bytes, stamp: int, seq: int) -> None:
        """One ``/values`` message, its channel and schema registered in ``f`` at its first."""
        name = values_topic(topic)
        channel = f.channels.get(name)
        if channel is None:
            channel = f.json_channel(name, schema_name(parsed.DESCRIPTOR), json_schema(parsed), topic)
        f.write(channel, data, stamp, seq, self._time_base)
        self.values_written += 1

    def _bad(self, msg: RawMessage, kind: str, why: str) -> None:
        self.dropped[kind] += 1
        self.log_once(
            logging.ERROR,
            "not recording a message on topic %s: %s; recording goes on (further ones are counted as %s)",
            msg.topic,
            why,
            kind,
            key=(msg.topic, kind),
        )

    def _flush(self, f: McapFile) -> None:
        try:
            f.flush()
        except Exception as exc:
            self.log.error("cannot write to %s: %s; recording stopped", f.path, exc)
            self._halt("write error")

    def _should_rotate(self, f: McapFile, stamp: int) -> bool:
        if self.max_mb and f.payload_bytes >= self.max_mb * 1e6:
            return True
        return bool(self.max_duration_s and f.first_ns is not None and stamp - f.first_ns >= self.max_duration_s * 1e9)

    def _open(self) -> McapFile:
        base = Path(self.path)
        rotating = bool(self.max_mb or self.max_duration_s)
        path = base.with_name(f"{base.stem}_{len(self._files):03d}{base.suffix}") if rotating else base
        path.parent.mkdir(parents=True, exist_ok=True)
        f = McapFile(path, compression=self.compression, chunk_size=self.chunk_kb * 1024, library="krabgraph recorder")
        self._file = f
        self._files.append(path)
        return f

    def _close_file(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except Exception as exc:
                self.log.error("cannot finish %s: %s", f.path, exc)

    def _current_path(self) -> str:
        return str(self._file.path) if self._file is not None else self.path

    def _disk_ok(self) -> bool:
        folder = Path(self.path).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = disk_free(folder)
        if free >= self.min_free_mb * 1e6:
            return True
        self.log.error(
            "free disk space at %s is %.0f MB, below min_free_mb %.0f MB: recording stopped, %s closed; "
            "further messages are counted as dropped",
            folder,
            free / 1e6,
            self.min_free_mb,
            self._current_path(),
        )
        return False

    def _halt(self, reason: str) -> None:
        """Stop for good; what is still queued is popped and counted by the writer loop."""
        self._stopped_reason = reason
        self._close_file()


def _version(msg: RawMessage) -> str:
    return bytes(msg.frame[: msg.offset - 1]).decode().partition("@")[2]


__all__ = ["Recorder"]
