"""The recorder's ``/values`` twins: a lockstep walk's arrays as JSON numbers for Foxglove's Plot panel.

One 2 s lockstep run of graphs/walk_record.yaml with three recorders on the same topics: ``rec``
(values on, the default), ``rec_off`` (``values: false``) and ``rec_rot`` (values on, a file per
0.5 s of graph time). Read back with the ``mcap`` reader (Foxglove's library) and with krabgraph's
own readers, which must see exactly what they saw before twins existed.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory as ProtobufDecoders

from krabgraph.launch import Executor, Input, Node, build_graph, graph_from_dict
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.declaration import NodeDecl, load_graph
from krabgraph.msgs import to_numpy
from krabgraph.msgs.schema import message_class
from krabgraph.nodes.record import recorder as recorder_module
from krabgraph.nodes.record.mcapio import VIEW_KEY, read_recording
from krabgraph.nodes.record.values import has_arrays
from tests.test_record import JsonDecoders, Source

WALK_S = 2.0
TOPICS = ["hal/*", "command/*", "policy/*", "safety/*"]


Row = collections.namedtuple("Row", "topic encoding schema_name schema_encoding schema source log_time seq size data")


def read_rows(path: Path) -> list[Row]:
    """Every message of ``path`` in file order, each decoded as Foxglove would (protobuf with the embedded
    schemas, JSON); kept: raw bytes for protobuf channels, the decoded data for twins."""
    rows = []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[ProtobufDecoders(), JsonDecoders()])
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            json_channel = channel.message_encoding == "json"
            rows.append(
                Row(
                    channel.topic,
                    channel.message_encoding,
                    schema.name,
                    schema.encoding,
                    json.loads(schema.data) if json_channel else None,
                    channel.metadata.get(VIEW_KEY),
                    message.log_time,
                    message.sequence,
                    len(message.data),
                    decoded if json_channel else bytes(message.data),
                )
            )
    return rows


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("mujoco")
    folder = tmp_path_factory.mktemp("values")
    decl = load_graph("walk_record", clock="sim", sets=["hal.status_period_s=0", f"rec.path={folder / 'on.mcap'}"])
    locs = dict(decl.nodes["rec"].locs)
    for name, params in {
        "rec_off": {"path": str(folder / "off.mcap"), "values": False},
        "rec_rot": {"path": str(folder / "rot.mcap"), "max_duration_s": 0.5},
    }.items():
        decl.nodes[name] = NodeDecl(name, "recorder", params=params, inputs={"topics": TOPICS}, locs=locs)
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=WALK_S, handle_signals=False) == 0
    assert not ex.failures, ex.failures
    recs = {name: ex.nodes[name] for name in ("rec", "rec_off", "rec_rot")}
    for rec in recs.values():
        assert rec.total_dropped == 0 and rec.values_skipped == 0
    return {"recs": recs, "on": folder / "on.mcap", "off": folder / "off.mcap"}


def _twin_topic(topic: str) -> str:
    return f"/{topic}/values"


def test_every_array_topic_has_a_plottable_twin_equal_to_the_raw_message(walk):
    rows = read_rows(walk["on"])
    raw = [r for r in rows if r.encoding == "protobuf"]
    twins = [r for r in rows if r.encoding == "json"]
    raw_counts = collections.Counter(r.topic for r in raw)
    twin_counts = collections.Counter(r.topic for r in twins)
    array_topics = {t for t in raw_counts if _has_arrays(raw, t)}
    assert {"hal/state", "policy/joint_command", "safety/joint_command", "hal/height_scan"} <= array_topics
    assert "command/cmd_vel" not in array_topics and "safety/status" not in array_topics
    # One twin channel per array topic, as many messages as the raw channel, and nothing else.
    assert twin_counts == {_twin_topic(t): raw_counts[t] for t in array_topics}
    rec = walk["recs"]["rec"]
    assert rec.written == len(raw) and rec.values_written == len(twins)
    assert raw_counts["hal/state"] == WALK_S / 0.02

    for topic in array_topics:
        pairs = list(zip(_of(raw, topic), _of(twins, _twin_topic(topic)), strict=True))
        cls = message_class(pairs[0][0].schema_name)
        for plain, twin in pairs:
            assert twin.schema_encoding == "jsonschema" and twin.schema_name == f"krabgraph.values.{cls.__name__}"
            assert twin.source == topic
            assert (twin.log_time, twin.seq) == (plain.log_time, plain.seq)  # the same instant on the timeline
            msg = cls.FromString(plain.data)
            assert (twin.data["header"]["stamp_ns"], twin.data["header"]["seq"]) == (
                msg.header.stamp_ns,
                msg.header.seq,
            )
            if topic == "hal/state":
                for field in ("position", "velocity", "effort"):
                    expected = to_numpy(getattr(msg.joints, field)).tolist()
                    assert twin.data["joints"][field] == expected and len(expected) == 12
        jsonschema.validate([t.data for _, t in pairs], {"type": "array", "items": pairs[0][1].schema})

    # A Plot path such as /hal/state/values.joints.position[2] (a calf) moves as the robot stands up.
    knee = [r.data["joints"]["position"][2] for r in _of(twins, "/hal/state/values")]
    assert np.ptp(knee) > 0.1


def test_values_false_writes_no_twin_and_the_raw_channels_are_the_same(walk):
    on, off = read_rows(walk["on"]), read_rows(walk["off"])
    assert all(r.encoding == "protobuf" and r.source is None for r in off)
    assert walk["recs"]["rec_off"].values_written == 0
    raw_on = [(r.topic, r.schema_name, r.seq, r.data) for r in on if r.encoding == "protobuf"]
    assert raw_on == [(r.topic, r.schema_name, r.seq, r.data) for r in off]
    assert walk["recs"]["rec"].written == walk["recs"]["rec_off"].written == len(off)


def test_rotation_writes_the_twins_of_each_files_messages_into_that_file(walk):
    rec = walk["recs"]["rec_rot"]
    assert len(rec.files) >= 4  # 0.5 s each of a 2 s run (and what the nodes publish as they stop)
    assert [f.name for f in rec.files] == [f"rot_{i:03d}.mcap" for i in range(len(rec.files))]
    raw_total, twin_total = 0, 0
    for path in rec.files:
        rows = read_rows(path)  # channels and schemas registered in every file: each reads on its own
        raw = [r for r in rows if r.encoding == "protobuf"]
        twins = [r for r in rows if r.encoding == "json"]
        assert {r.topic for r in twins} == {_twin_topic(t) for t in {r.topic for r in raw} if _has_arrays(raw, t)}
        for topic in {r.source for r in twins}:
            assert [(r.log_time, r.seq) for r in _of(twins, _twin_topic(topic))] == [
                (r.log_time, r.seq) for r in _of(raw, topic)
            ]
        raw_total, twin_total = raw_total + len(raw), twin_total + len(twins)
    assert raw_total == rec.written == walk["recs"]["rec"].written
    assert twin_total == rec.values_written == walk["recs"]["rec"].values_written


def test_krabgraphs_readers_see_the_same_recording_with_or_without_twins(walk):
    from krabgraph.launch.cli.bag import playlist
    from krabgraph.launch.cli.plot import read_run

    on, off = read_recording(walk["on"]), read_recording(walk["off"])
    assert not on.recovered and on.counts == off.counts and on.tags == off.tags
    assert [(t, frame) for t, _, frame in on.messages] == [(t, frame) for t, _, frame in off.messages]
    assert not any(topic.endswith("/values") for topic in on.counts)

    run_on, run_off = read_run(walk["on"]), read_run(walk["off"])  # krabgraph plot's reader
    assert run_on.topics == run_off.topics and run_on.warning == run_off.warning == ""
    assert run_on.messages == run_off.messages and len(run_on.messages["state"]) == WALK_S / 0.02

    played_on, played_off = playlist(walk["on"], None, 0.0, None), playlist(walk["off"], None, 0.0, None)
    assert [(m.channel.topic, m.payload) for m in played_on.messages] == [
        (m.channel.topic, m.payload) for m in played_off.messages
    ]
    assert played_on.skipped == played_off.skipped == {}  # twins are viewer channels: passed over, not listed


class Tape(Node):
    """Keeps every frame it receives, by topic."""

    kind = "recorder"
    topics = Input(AnyMessage, queue=100_000)

    def on_configure(self) -> None:
        self.frames: dict[str, list[bytes]] = collections.defaultdict(list)

    def on_topics(self, msg: RawMessage) -> None:
        self.frames[msg.topic].append(bytes(msg.frame))


def test_the_replay_node_publishes_the_recorded_frames_of_a_file_with_twins(walk):
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {
                "replay": {
                    "class": "replay",
                    "params": {"path": str(walk["on"])},
                    "outputs": {"frames": ["hal/state"]},
                },
                "tape": {"class": Tape, "inputs": {"topics": ["hal/state"]}},
            },
        }
    )
    ex = Executor(build_graph(graph))
    assert ex.run(duration_s=WALK_S + 1.0, handle_signals=False) == 0
    recorded = [frame for topic, _, frame in read_recording(walk["off"]).messages if topic == "hal/state"]
    assert ex.nodes["tape"].frames["hal/state"] == recorded and len(recorded) == WALK_S / 0.02


def test_a_twin_the_conversion_refuses_is_skipped_once_logged_and_the_raw_message_kept(tmp_path, monkeypatch, caplog):
    """Fault injection: no real message makes ``to_data`` fail, so one is made to; recording goes on."""
    real = recorder_module.to_data

    def failing(msg):
        if msg.header.seq % 2:
            raise ValueError("cannot hold this value")
        return real(msg)

    monkeypatch.setattr(recorder_module, "to_data", failing)
    caplog.set_level(logging.INFO)
    rec = _record_source(tmp_path, values=True)
    rows = read_rows(rec.files[0])
    counts = collections.Counter(r.topic for r in rows)
    assert counts == {"src/cmd": 10, "src/image": 10, "/src/image/values": 5}
    assert rec.written == 20 and rec.values_written == 5 and rec.values_skipped == 5 and rec.total_dropped == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "not writing /src/image/values for a message on topic src/image (ValueError: cannot hold this value); "
        "the message itself is recorded, further ones are counted in values_skipped "
        "(values: false writes no /values channels)"
    ]
    assert [r.data["data"][0][0] for r in rows if r.encoding == "json"] == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_max_mb_counts_the_twins_so_a_file_holds_no_more_message_bytes(tmp_path):
    """Rotation is checked before each raw message, so a file ends with the message (and twin) that passed
    ``max_mb``; twins count, so a file holds half as many images as without them, and no more bytes."""
    limit = 0.1e6
    sizes = {}
    for values in (True, False):
        rec = _record_source(tmp_path / str(values), values=values, max_mb=limit / 1e6, compression="none")
        sizes[values] = [[r.size for r in read_rows(path)] for path in rec.files]
        for path, rows in zip(rec.files[:-1], map(read_rows, rec.files[:-1]), strict=True):
            last = 2 if values else 1  # the last raw message and its twin
            assert sum(r.size for r in rows[:-last]) < limit <= sum(r.size for r in rows), path
            twins = [r.topic for r in rows if r.encoding == "json"]
            assert twins == (["/src/image/values"] * (len(rows) // 3) if values else [])
    assert [len(f) for f in sizes[True]] == [9, 9, 9, 3]  # 3 ticks of (command, image, twin) per file
    assert [len(f) for f in sizes[False]] == [10, 10]  # 5 ticks of (command, image)


def _record_source(tmp_path: Path, **params) -> Any:
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {
                "src": {"class": Source, "params": {"period_s": 0.01}},
                "rec": {
                    "class": "recorder",
                    "params": {"path": str(tmp_path / "run.mcap"), **params},
                    "inputs": {"topics": ["src/*"]},
                },
            },
        }
    )
    ex = Executor(build_graph(graph))
    assert ex.run(duration_s=0.105, handle_signals=False) == 0
    return ex.nodes["rec"]


def _has_arrays(rows: list[Row], topic: str) -> bool:
    name = next(r.schema_name for r in rows if r.topic == topic)
    return has_arrays(message_class(name).DESCRIPTOR)


def _of(rows: list[Row], topic: str) -> list[Row]:
    return [r for r in rows if r.topic == topic]
