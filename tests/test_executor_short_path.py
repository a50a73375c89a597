"""The executor's short path (a same-thread, latest-only input) parses frames itself: bad frames on it
are dropped, counted and logged once per kind with the decoder's wording, and the graph runs on.

A raw output (``Output(AnyMessage)``) on the same thread is the one way bad bytes reach that path, so
the source here publishes one frame per tick (one pending message: the short path), cycling through
good, wrong-version, wrong-type, untagged and corrupt frames, small and large (memoryview parse).
"""

from __future__ import annotations

import numpy as np

from krabgraph.launch import Executor, Input, Node, build_graph, graph_from_dict
from krabgraph.launch.api.ports import RawMessage
from krabgraph.launch.runtime.wire import VIEW_BYTES, encode, prefix
from krabgraph.msgs import ArrayStamped, JointCommand, VelocityCommand, set_array, to_numpy
from tests.faults.recording_nodes import RawTicker

VC = prefix(VelocityCommand)
BIG = 3 * VIEW_BYTES // 4 // 4 * 4  # floats: a frame of about 3 * VIEW_BYTES bytes


def _kinds(k: int) -> list[tuple[str, bytes]]:
    """The frames of tick ``k`` (one is published per tick), each with the topic it goes to."""
    good = VelocityCommand(vx=float(k))
    big = ArrayStamped()
    set_array(big.data, np.full(BIG, float(k), dtype=np.float32))
    return [
        ("t/cmd", encode(good)),
        ("t/cmd", b"krabgraph.msgs.VelocityCommand@2\0" + good.SerializeToString()),
        ("t/cmd", encode(JointCommand())),
        ("t/cmd", b"no tag at all"),
        ("t/cmd", VC + b"\xff\xff\xff garbage"),
        ("t/big", encode(big)),
        ("t/big", encode(big)[:-100]),  # large and truncated: the array's length runs past the end
    ]


class Replayer(RawTicker):
    """Publishes one frame per 10 ms tick, cycling through ``_kinds``."""

    def emit(self, k: int) -> None:
        topic, frame = _kinds(k // 7 + 1)[k % 7]
        self.out.publish(RawMessage(topic, None, frame, frame.find(b"\0") + 1))


class Reader(Node):
    cmd = Input(VelocityCommand)
    big = Input(ArrayStamped)

    def on_configure(self) -> None:
        self.got_cmd: list[float] = []
        self.got_big: list[float] = []

    def on_cmd(self, msg: VelocityCommand) -> None:
        self.got_cmd.append(msg.vx)

    def on_big(self, msg: ArrayStamped) -> None:
        values = to_numpy(msg.data)
        assert values.size == BIG
        self.got_big.append(float(values[0]))


def test_bad_frames_on_the_short_path_are_dropped_counted_and_logged_once(caplog):
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "src": {"class": Replayer, "outputs": {"out": ["t/cmd", "t/big"]}},
                    "rd": {"class": Reader, "inputs": {"cmd": "t/cmd", "big": "t/big"}},
                },
            }
        )
    )
    ex = Executor(graph)
    assert all(s.fast and s.pending == 0 for s in ex.subscriptions)  # what this test is about
    assert ex.run(duration_s=1.405, handle_signals=False) == 0
    rd = ex.nodes["rd"]
    # 140 ticks = 20 rounds of 7 frames: 1 good + 4 bad on t/cmd, 1 good + 1 bad on t/big per round
    assert ex.nodes["src"].k == 140 and not ex.failures
    assert len(rd.got_cmd) == 20 and rd.got_cmd == sorted(rd.got_cmd)
    assert len(rd.got_big) == 20 and rd.got_big == sorted(rd.got_big)
    assert (rd.cmd.count, rd.cmd.dropped, rd.big.count, rd.big.dropped) == (20, 80, 20, 20)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 5, errors  # one line per topic and kind; later ones only counted
    assert any("schema version mismatch for krabgraph.msgs.VelocityCommand: got v2" in e for e in errors)
    assert any(
        "type mismatch: expected krabgraph.msgs.VelocityCommand, got krabgraph.msgs.JointCommand" in e for e in errors
    )
    assert any("malformed message: no type tag (expected krabgraph.msgs.VelocityCommand@1" in e for e in errors)
    assert any("topic t/cmd" in e and "malformed krabgraph.msgs.VelocityCommand payload" in e for e in errors)
    assert any("topic t/big" in e and "malformed krabgraph.msgs.ArrayStamped payload" in e for e in errors)
    sub = next(s for s in ex.subscriptions if s.topic == "t/cmd")
    assert sub.errors == {"version": 20, "type": 20, "no_tag": 20, "payload": 20}
