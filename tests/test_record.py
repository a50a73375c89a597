"""The recorder: MCAP files any reader opens, nothing lost, rotation, disk floor, drops reported."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.decoder import DecoderFactory as McapDecoderFactory
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from krabgraph.launch import Executor, GraphError, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.graph.declaration import NodeDecl, load_graph
from krabgraph.msgs import ArrayStamped, Diagnostics, VelocityCommand, set_array, to_numpy
from krabgraph.nodes.record import recorder as recorder_module
from krabgraph.nodes.record.mcapio import VIEW_KEY, McapFile


class Source(Node):
    """Publishes a VelocityCommand and a 20 KB ArrayStamped every ``period_s``."""

    kind = "source"
    period_s = Param(float, 0.01, "", gt=0)
    cmd = Output(VelocityCommand)
    image = Output(ArrayStamped)

    def on_activate(self) -> None:
        self.k = 0
        self.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        self.k += 1
        self.cmd.publish(VelocityCommand(vx=float(self.k)))
        msg = ArrayStamped()
        set_array(msg.data, np.full((58, 87), self.k, dtype=np.float32))
        self.image.publish(msg)


class DiagSink(Node):
    inp = Input(Diagnostics, queue=100)

    def on_configure(self) -> None:
        self.got: list[Diagnostics] = []

    def on_inp(self, msg: Diagnostics) -> None:
        self.got.append(msg)


def published(ex: Executor) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for name, spec in ex.graph.nodes.items():
        for port, topic in spec.outputs.items():
            counts[topic] += ex.nodes[name].output_ports()[port].count
    return counts


class JsonDecoders(McapDecoderFactory):
    """``json`` messages (the ``/values`` twins) as plain data, as Foxglove reads them."""

    def decoder_for(self, message_encoding: str, schema: object):
        return json.loads if message_encoding == "json" else None


def read_all(paths: list[Path], *, views: bool = False) -> list[tuple]:
    """(schema name, topic, log_time, publish_time, sequence, decoded message) with the mcap reader;
    the recorder's raw channels only, unless ``views`` (then its ``/values`` twins too)."""
    out = []
    for path in paths:
        with open(path, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory(), JsonDecoders()])
            for schema, channel, message, proto in reader.iter_decoded_messages(log_time_order=False):
                if VIEW_KEY in channel.metadata and not views:
                    continue
                out.append(
                    (schema.name, channel.topic, message.log_time, message.publish_time, message.sequence, proto)
                )
    return out


def run_recorder(tmp_path: Path, duration: float = 1.0, **params) -> Executor:
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "src": {"class": Source},
                    "rec": {
                        "class": "recorder",
                        "params": {"path": str(tmp_path / "run.mcap"), **params},
                        "inputs": {"topics": ["src/*"]},
                    },
                },
            }
        )
    )
    ex = Executor(graph)
    assert ex.run(duration_s=duration, handle_signals=False) == 0
    return ex


def test_recording_reads_back_with_schemas_stamps_and_sequences(tmp_path, no_thread_leak):
    before_ns = time.time_ns()
    ex = run_recorder(tmp_path)
    after_ns = time.time_ns()
    rec = ex.nodes["rec"]
    assert rec.files == [tmp_path / "run.mcap"]
    rows = read_all(rec.files)
    counts = collections.Counter(topic for _, topic, *_ in rows)
    assert counts == {"src/cmd": 99, "src/image": 99} == {k: v for k, v in published(ex).items() if k.startswith("src")}
    cmds = [r for r in rows if r[1] == "src/cmd"]
    assert {r[0] for r in rows} == {"krabgraph.msgs.VelocityCommand", "krabgraph.msgs.ArrayStamped"}
    offset = cmds[0][2] - cmds[0][5].header.stamp_ns  # log times: the wall clock at the first message + graph time
    assert before_ns <= cmds[0][2] <= after_ns
    for k, (_, _, log_time, publish_time, seq, msg) in enumerate(cmds, 1):
        assert msg.header.stamp_ns == k * 10_000_000  # graph time stays in the message
        assert log_time == publish_time == msg.header.stamp_ns + offset
        assert seq == msg.header.seq == k and msg.vx == k
    with open(rec.files[0], "rb") as f:
        (meta,) = [m for m in make_reader(f).iter_metadata() if m.name == "krabgraph.time_base"]
    assert int(meta.metadata["offset_ns"]) == offset and "header.stamp_ns" in meta.metadata["graph_time"]
    last_image = [r for r in rows if r[1] == "src/image"][-1][5]
    # The dynamically built class (from the embedded schema) decodes the array bytes unchanged.
    assert np.frombuffer(last_image.data.data, dtype=np.float32).reshape(58, 87)[0, 0] == 99
    assert rec.written == 198 and rec.total_dropped == 0
    # values (default on): each ArrayStamped also as JSON numbers on /src/image/values, at the same log time;
    # VelocityCommand has no float arrays, so no twin.
    twins = [r for r in read_all(rec.files, views=True) if r[0].startswith("krabgraph.values.")]
    assert collections.Counter(r[1] for r in twins) == {"/src/image/values": 99} and rec.values_written == 99
    images = [r for r in rows if r[1] == "src/image"]
    assert [(r[2], r[4], r[5]["data"][57][86]) for r in twins] == [(r[2], r[4], float(r[4])) for r in images]


@pytest.mark.slow
def test_parkour_20_s_in_lockstep_recorded_with_nothing_lost(tmp_path):
    """Acceptance: every topic of a 20 s parkour run, message counts equal to those published."""
    decl = load_graph("parkour", clock="sim", sets=["hal.status_period_s=0"])
    decl.nodes["rec"] = NodeDecl(
        "rec",
        "recorder",
        params={"path": str(tmp_path / "parkour.mcap")},
        inputs={"topics": ["hal/*", "command/*", "policy/*", "safety/*"]},
        locs=dict(decl.nodes["hal"].locs),
    )
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=20.0, handle_signals=False) == 0
    rows = read_all(ex.nodes["rec"].files)
    counts = collections.Counter(topic for _, topic, *_ in rows)
    expected = {t: n for t, n in published(ex).items() if not t.startswith("rec/")}
    assert counts == expected
    assert expected["hal/state"] == 1000 and expected["hal/depth_image"] >= 199  # 50 Hz and 10 Hz for 20 s
    schemas = {name for name, *_ in rows}
    assert schemas == {
        f"krabgraph.msgs.{t}"
        for t in (
            "RobotState",
            "Clock",
            "HeightScan",
            "DepthImage",
            "VelocityCommand",
            "JointCommand",
            "ArrayStamped",
            "SafetyStatus",
        )
    }
    depth = next(msg for name, _, _, _, _, msg in rows if name == "krabgraph.msgs.DepthImage")
    assert depth.height == 58 and depth.width == 87
    assert ex.nodes["rec"].total_dropped == 0


def test_rotation_by_graph_time_and_by_size(tmp_path):
    ex = run_recorder(tmp_path, duration=2.0, max_duration_s=0.5)
    files = ex.nodes["rec"].files
    assert [f.name for f in files] == [f"run_{i:03d}.mcap" for i in range(4)]
    rows = [read_all([f]) for f in files]
    assert sum(len(r) for r in rows) == 2 * 199
    for r in rows:  # each file spans less than 0.5 s of graph time
        stamps = [log_time for _, _, log_time, *_ in r]
        assert max(stamps) - min(stamps) < 500_000_000

    ex = run_recorder(tmp_path / "size", duration=1.0, max_mb=0.5, compression="none", values=False)
    files = ex.nodes["rec"].files
    assert len(files) == 4  # 99 images of 20 KB = 2 MB
    assert sum(len(read_all([f])) for f in files) == 198
    assert all(f.stat().st_size < 0.6e6 for f in files)  # one message past 0.5 MB, plus records and index
    # (with /values twins, their bytes count too: tests/test_recorder_values.py)


def test_disk_floor_stops_writing_with_one_error_and_counts_the_rest(tmp_path, monkeypatch, caplog):
    checks = []

    def disk_free(path: Path) -> int:
        """Plenty of space for the first 30 messages, then 1 MB."""
        checks.append(path)
        return 10**12 if len(checks) <= 30 else 10**6

    monkeypatch.setattr(recorder_module, "disk_free", disk_free)
    monkeypatch.setattr(recorder_module, "DISK_CHECK_S", 0.0)  # look before every message

    graph = build_graph(
        graph_from_dict(
            {
                "clock": {"mode": "sim", "real_time_factor": 2.0},  # paced, so the writer keeps up
                "nodes": {
                    "src": {"class": Source},
                    "rec": {
                        "class": "recorder",
                        "params": {"path": str(tmp_path / "run.mcap"), "min_free_mb": 100.0, "status_period_s": 0.25},
                        "inputs": {"topics": ["src/cmd", "src/image"]},
                    },
                    "diag": {"class": DiagSink, "inputs": {"inp": "rec/diagnostics"}},
                },
            }
        )
    )
    ex = Executor(graph)
    ex.run(duration_s=1.0, handle_signals=False)
    rec = ex.nodes["rec"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "below min_free_mb 100 MB: recording stopped" in errors[0]
    rows = read_all(rec.files)  # the file was closed properly: readable to the end
    assert len(rows) == rec.written == 30
    assert rec.dropped["disk_floor"] + rec.dropped["after_stop"] == rec.total_dropped == 198 - 30
    last = ex.nodes["diag"].got[-1]
    assert last.level == Diagnostics.ERROR and last.message == "stopped: disk"
    assert 0 < int(last.values["dropped"]) <= 198 - 30  # as of the last report before the end
    assert any("messages not recorded so far" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_callback_only_enqueues_and_a_full_queue_is_counted_and_reported(tmp_path, monkeypatch, caplog):
    """The writer is held for the whole run: the graph keeps running, the queue fills, drops are counted."""
    release = threading.Event()
    original = McapFile.write

    def slow_write(self, *args) -> None:
        release.wait(timeout=10)
        original(self, *args)

    monkeypatch.setattr(McapFile, "write", slow_write)

    class Check(Node):
        """At t = 0.9 s: nothing written yet, the queue holds what fits; then let the writer go."""

        def on_activate(self) -> None:
            self.create_timer(0.9, self.tick)

        def tick(self) -> None:
            rec = self.graph_rec
            self.seen = (rec.written, len(rec._queue), rec.dropped["queue_full"])
            release.set()

    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "src": {"class": Source},
                    "rec": {
                        "class": "recorder",
                        "params": {"path": str(tmp_path / "run.mcap"), "queue": 50, "status_period_s": 0.5},
                        "inputs": {"topics": ["src/cmd", "src/image"]},
                    },
                    "check": {"class": Check},
                    "diag": {"class": DiagSink, "inputs": {"inp": "rec/diagnostics"}},
                },
            }
        )
    )
    ex = Executor(graph)
    ex.nodes["check"].graph_rec = ex.nodes["rec"]
    ex.run(duration_s=1.0, handle_signals=False)
    rec = ex.nodes["rec"]
    written, queued, dropped = ex.nodes["check"].seen
    # 89 or 90 ticks (the check's timer ties with the source's at 0.9 s) of 2 messages; 50 queued,
    # maybe one in the writer's hands, the rest dropped.
    assert written == 0 and queued == 50 and 178 - 51 <= dropped <= 180 - 50
    assert rec.written + rec.total_dropped == 198 and rec.total_dropped > 0
    assert len(read_all(rec.files)) == rec.written
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("messages not recorded so far (queue_full" in w for w in warnings)
    levels = [m.level for m in ex.nodes["diag"].got]
    assert levels[-1] == Diagnostics.WARN


def test_a_list_on_a_typed_port_and_a_glob_matching_nothing_are_graph_errors(tmp_path):
    with pytest.raises(GraphError) as exc:
        build_graph(
            graph_from_dict(
                {
                    "nodes": {
                        "src": {"class": Source},
                        "rec": {"class": "recorder", "inputs": {"topics": ["nothing/*"]}},
                        "diag": {"class": DiagSink, "inputs": {"inp": ["rec/diagnostics", "src/cmd"]}},
                    }
                }
            )
        )
    text = str(exc.value)
    assert "input 'topics': pattern 'nothing/*' matches no topic; topics: rec/diagnostics, src/cmd, src/image" in text
    assert "input 'inp' (Diagnostics) takes one topic, got a list" in text


def test_recorded_arrays_match_what_was_published(tmp_path):
    ex = run_recorder(tmp_path, duration=0.05)
    images = [msg for name, topic, *_, msg in read_all(ex.nodes["rec"].files) if topic == "src/image"]
    assert [int(to_numpy(_as_array(m))[0, 0]) for m in images] == [1, 2, 3, 4]


def _as_array(msg):
    from krabgraph.msgs import ArrayStamped as Typed

    return Typed.FromString(msg.SerializeToString()).data


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.INFO)
