"""The replay node: a recording published back into a graph, on the graph clock."""

from __future__ import annotations

import itertools
import math
from functools import reduce

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.msgs import JointCommand, SafetyStatus
from krabgraph.msgs.schema import type_tag
from krabgraph.nodes.record.mcapio import RecordingError, read_recording

MIN_PERIOD_NS = 1_000_000  # a recording with irregular stamps is replayed on a 1 ms grid


class Replay(Node):
    """Publishes recorded topics from an MCAP file as they were, at their recorded graph times.

    Wire ``outputs: {frames: [hal/state, hal/height_scan]}``: each topic is published from the
    recording's messages of the same name, bytes unchanged (header stamp and seq included). The
    message recorded at stamp ``s`` goes out at graph time ``t0 + (s - s0) / speed`` (``t0`` the
    activation, ``s0`` the first stamp): real time under a wall clock, lockstep under a sim
    clock, faster or slower with ``speed``. Messages with equal stamps keep their recorded order.
    The whole file is read and checked (CRCs, structure, schema versions, the wired topics
    present) in ``on_configure``; a malformed or truncated file fails there with one error and
    nothing is published. A file whose recorder was killed (it ends in a provisional footer with no
    summary) is replayed up to its last flushed chunk, with one warning that it was recovered.
    ``command`` and ``safety_status`` are accepted (and counted) so a replay can stand in for a HAL in an overlay. With
    ``stop_at_end`` the graph stops one tick after the last message.
    """

    kind = "source"
    path = Param(str, doc="the MCAP file")
    speed = Param(float, 1.0, "replay speed relative to the recording", gt=0)
    stop_at_end = Param(bool, True, "stop the graph when the recording is exhausted")

    frames = Output(AnyMessage, doc="the recorded messages, each on its own topic")
    command = Input(JointCommand, required=False, triggers=False, doc="ignored: lets a replay replace a HAL")
    safety_status = Input(SafetyStatus, required=False, triggers=False, doc="ignored, like a HAL's status-line input")

    def on_configure(self) -> None:
        wired = dict(self.frames.topics)
        if not wired:
            raise RecordingError(f"{self.name}: no topics to replay; wire outputs: {{frames: [hal/state, ...]}}")
        rec = read_recording(self.path)
        missing = [t for t in wired if t not in rec.tags]
        if missing:
            have = ", ".join(f"{t} ({rec.counts[t]})" for t in sorted(rec.tags)) or "none"
            raise RecordingError(f"{self.path}: no messages on {', '.join(missing)}; the recording has: {have}")
        for topic, cls in wired.items():
            if cls is not None and rec.tags[topic] != type_tag(cls).decode():
                raise RecordingError(
                    f"{self.path}: topic {topic} was recorded as {rec.tags[topic]}, "
                    f"the graph expects {type_tag(cls).decode()}"
                )
        self._messages = [m for m in rec.messages if m[0] in wired]
        self._types = wired
        offsets = [round((t - self._messages[0][1]) / self.speed) for _, t, _ in self._messages]
        step = reduce(math.gcd, (b - a for a, b in itertools.pairwise(offsets) if b > a), 0)
        self._period_ns = max(step, MIN_PERIOD_NS)
        self._offsets = offsets
        self.log.info(
            "replaying %d messages on %d topics from %s (%.2f s of recording, tick %.1f ms)",
            len(self._messages),
            len(wired),
            self.path,
            offsets[-1] * 1e-9,
            self._period_ns * 1e-6,
        )

    def on_activate(self) -> None:
        self._next = 0
        self._t0 = self.now_ns()
        self._done = False
        self._publish_due()
        self.create_timer(self._period_ns * 1e-9, self.tick)

    def tick(self) -> None:
        if self._done:
            if self.stop_at_end:
                self.log.info("recording exhausted (%d messages published): stopping the graph", self._next)
                self.request_stop()
            return
        self._publish_due()

    def _publish_due(self) -> None:
        elapsed = self.now_ns() - self._t0
        msgs, offsets, n = self._messages, self._offsets, len(self._messages)
        i = self._next
        while i < n and offsets[i] <= elapsed:
            topic, _, frame = msgs[i]
            tag_len = frame.index(b"\0") + 1
            self.frames.publish(RawMessage(topic, self._types[topic], frame, tag_len))
            i += 1
        self._next = i
        self._done = i >= n

    @property
    def published(self) -> int:
        return self._next


__all__ = ["Replay"]
