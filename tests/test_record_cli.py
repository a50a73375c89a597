"""``krabgraph record``: a running graph's topics through its tap into an MCAP file that Foxglove's own
libraries (``mcap`` reader, ``mcap_protobuf`` decoder) and krabgraph's (``read_recording``, ``krabgraph
plot``) both read. A lockstep walk on stairs runs in a ``krabgraph launch`` subprocess; every wait is bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from krabgraph.launch.cli.echo import to_data
from krabgraph.launch.cli.main import main
from krabgraph.launch.cli.plot import read_run
from krabgraph.msgs import DepthImage, RobotState, set_array
from krabgraph.nodes.record.foxglove import FoxgloveView
from krabgraph.nodes.record.mcapio import TAG_KEY, VIEW_KEY, WallClockBase, read_recording
from krabgraph.nodes.record.outlets import McapOutlet
from krabgraph.nodes.robots import load_robot

from .conftest import walk_on_stairs_with_tap
from .test_tap import free_port

RAW = {"hal/state", "hal/height_scan", "safety/status", "command/cmd_vel", "policy/joint_command"}


@pytest.fixture(scope="module")
def tap():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with walk_on_stairs_with_tap(endpoint):
        yield endpoint


def record(tap: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "krabgraph", "record", "--tap", tap, "--timeout", "30", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def recording(tap, tmp_path_factory) -> tuple[Path, str, int]:
    path = tmp_path_factory.mktemp("rec") / "run.mcap"
    started = time.time_ns()
    proc = record(tap, *sorted(RAW), "-o", str(path), "--duration", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path, proc.stdout, started


def test_foxglove_reads_every_channel_with_its_schema(recording):
    path, out, started = recording
    counts: dict[str, int] = {}
    log_times: dict[str, list[int]] = {}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        channels = {c.topic: c for c in summary.channels.values()}
        schemas = {c.topic: summary.schemas[c.schema_id] for c in channels.values()}
        for _, channel, message, decoded in reader.iter_decoded_messages(topics=["/tf", "hal/state", "/scene/robot"]):
            assert decoded is not None
            log_times.setdefault(channel.topic, []).append(message.log_time)
        for _, channel, message in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.message_encoding == "json":
                json.loads(message.data)  # every twin message is JSON
    derived = {"/tf", "/scene/robot", "/scene/terrain", "/scene/height_scan"}
    twins = {"/hal/state/values", "/hal/height_scan/values", "/policy/joint_command/values"}
    assert set(channels) == RAW | derived | twins
    assert schemas["hal/state"].name == "krabgraph.msgs.RobotState" and schemas["hal/state"].encoding == "protobuf"
    assert channels["hal/state"].metadata[TAG_KEY] == "krabgraph.msgs.RobotState@1"
    assert schemas["/tf"].name == "foxglove.FrameTransforms"
    assert schemas["/scene/height_scan"].name == "foxglove.PointCloud"
    assert (schemas["/hal/state/values"].encoding, channels["/hal/state/values"].message_encoding) == (
        "jsonschema",
        "json",
    )
    assert all(VIEW_KEY in channels[t].metadata for t in derived | twins)
    n = counts["hal/state"]
    assert n >= 40  # 2 s at 50 Hz, generously
    assert counts["/tf"] == counts["/hal/state/values"] == n  # one of each per state
    assert counts["/scene/robot"] == counts["/scene/terrain"] == 1
    assert 0 <= counts["hal/height_scan"] - counts["/scene/height_scan"] <= 2  # a last scan may wait for its state
    now = time.time_ns()
    for topic, times in log_times.items():
        assert all(started - 60e9 < t < now + 60e9 for t in times), topic  # wall clock: today, not 1970
    assert f"wrote {path}" in out
    printed = dict(line.split() for line in out.splitlines() if line.startswith("  "))
    assert {topic: int(count) for topic, count in printed.items()} == counts  # the summary: per channel


def test_krabgraph_reads_the_raw_channels(recording):
    path, _, _ = recording
    rec = read_recording(path)
    assert not rec.recovered
    assert set(rec.counts) == RAW  # the viewer channels are passed over
    assert rec.tags["hal/state"] == "krabgraph.msgs.RobotState@1"
    states = [RobotState.FromString(frame.partition(b"\0")[2]) for t, _, frame in rec.messages if t == "hal/state"]
    offsets = {log - s.header.stamp_ns for (t, log, _), s in zip(
        [m for m in rec.messages if m[0] == "hal/state"], states, strict=True)}  # fmt: skip
    assert len(offsets) == 1  # log time = graph time + one offset for the whole file
    run = read_run(path)  # krabgraph plot's reader
    assert run.topics["state"] == "hal/state" and len(run.messages["state"]) == rec.counts["hal/state"]


def test_bad_topics_and_no_graph_are_one_line(tap, tmp_path, capsys):
    proc = record(tap, "no/such*", "-o", str(tmp_path / "x.mcap"), "--duration", "1")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: 'no/such*' matches no topic of graph 'walk'; its topics: ")
    assert not (tmp_path / "x.mcap").exists()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert main(["record", "--tap", endpoint, "--timeout", "0.5", "-o", str(tmp_path / "y.mcap")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: no graph answered on {endpoint} within 0.5 s")


def test_a_real_robots_hal_gets_transforms_and_model_but_no_terrain(tmp_path, caplog):
    """A HAL that is not MuJoCo's (the real Go2): /tf and /scene/robot, no terrain, said once; a state
    without a base pose puts the base at the origin with the IMU's orientation. Depth images: RawImage."""
    topics = [("hal/state", "RobotState", "hal.state"), ("cam/depth", "DepthImage", "cam.depth")]
    hal_params = {"robot": "go2", "network_interface": "eth0"}
    info = {
        "graph": "real", "time_ns": 0,
        "topics": [{"name": n, "type": f"krabgraph.msgs.{t}", "publishers": [p], "subscribers": [], "published": 0}
                   for n, t, p in topics],
        "nodes": [{"name": "hal", "class": "krabgraph.nodes.go2.hal:Go2Hal", "kind": "hal", "params": hal_params}],
    }  # fmt: skip
    path = tmp_path / "real.mcap"
    outlet = McapOutlet(path, WallClockBase())
    view = FoxgloveView(outlet, info, to_data=to_data)
    robot = load_robot("go2")
    state = RobotState(has_base=False)
    state.header.stamp_ns = 5_000_000_000
    state.imu.orientation.w, state.imu.orientation.z = np.cos(np.pi / 4), np.sin(np.pi / 4)  # yaw 90 degrees
    state.joints.name.extend(robot.joint_names)
    set_array(state.joints.position, robot.default_pos)
    image = DepthImage(width=3, height=2)
    image.header.stamp_ns = 5_000_000_000
    set_array(image.depth, np.arange(6, dtype=np.float32).reshape(2, 3))
    for _ in range(2):
        view.handle("hal/state", "krabgraph.msgs.RobotState", state.SerializeToString(), state.header.stamp_ns)
    view.handle("cam/depth", "krabgraph.msgs.DepthImage", image.SerializeToString(), image.header.stamp_ns)
    outlet.close()
    notes = [r.getMessage() for r in caplog.records if "not a MuJoCo HAL" in r.getMessage()]
    assert notes == ["HAL 'hal' (Go2Hal) is not a MuJoCo HAL: no /scene/terrain (only the simulator's terrain can "
                     "be rebuilt); /tf and /scene/robot only"]  # fmt: skip
    with open(path, "rb") as f:
        topics = {channel.topic for _, channel, _ in make_reader(f).iter_messages()}
        f.seek(0)
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        got: dict[str, list] = {}
        for _, channel, _, msg in reader.iter_decoded_messages(topics=["/tf", "/scene/robot", "/cam/depth/image"]):
            got.setdefault(channel.topic, []).append(msg)
    twins = {"/hal/state/values", "/cam/depth/values"}
    assert topics == {"hal/state", "/tf", "/scene/robot", "cam/depth", "/cam/depth/image"} | twins
    base = next(t for t in got["/tf"][-1].transforms if t.child_frame_id == "base")
    assert (base.translation.x, base.translation.y, base.translation.z) == (0.0, 0.0, 0.0)
    assert (base.rotation.w, base.rotation.z) == pytest.approx((np.cos(np.pi / 4), np.sin(np.pi / 4)))
    assert len(got["/tf"][-1].transforms) == 13 and len(got["/scene/robot"]) == 1
    (raw_image,) = got["/cam/depth/image"]
    assert (raw_image.encoding, raw_image.width, raw_image.height, raw_image.step) == ("32FC1", 3, 2, 12)
    assert np.frombuffer(raw_image.data, dtype="<f4").tolist() == [0, 1, 2, 3, 4, 5]


def test_no_scene_records_the_topics_and_their_twins_only(tap, tmp_path):
    path = tmp_path / "plain.mcap"
    proc = record(tap, "hal/state", "safety/status", "-o", str(path), "--duration", "1", "--no-scene")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(path, "rb") as f:
        topics = {channel.topic for _, channel, _ in make_reader(f).iter_messages()}
    assert topics == {"hal/state", "/hal/state/values", "safety/status"}
