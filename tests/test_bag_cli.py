"""`krabgraph info` and `krabgraph play`: real recordings (the recorder node's, foxglove-sdk's), a real
graph with its tap and control channel on loopback."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from krabgraph.launch import Executor, build_graph, graph_from_dict
from krabgraph.launch.cli.bag import BagError, playlist
from krabgraph.launch.cli.introspect import TapClient, decode
from krabgraph.launch.cli.main import main
from krabgraph.msgs import VelocityCommand

from .test_tap import free_port

pytest.importorskip("mcap")
ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = [[0.5, 0.1, 0.0, 0.0], [0.5, 0.2, 0.0, 0.0], [1.0, 0.3, 0.0, 0.1]]  # vx steps every 0.5 s
RECORDED = ["robot/state", "command/cmd_vel", "policy/joint_command", "safety/joint_command", "safety/status"]


def record(path: Path, duration: float = 2.0) -> dict[str, int]:
    """The demo graph with a 20 Hz velocity schedule, recorded in lockstep; the messages published per topic."""
    robot_inputs = {"command": "safety/joint_command", "velocity_command": "command/cmd_vel"}
    nodes = {
        "command": {"class": "scripted_velocity", "params": {"schedule": SCHEDULE, "rate_hz": 20.0}},
        "robot": {"class": "fake_robot", "inputs": robot_inputs},
        "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
        "safety": {"class": "safety", "inputs": {"state": "robot/state", "command": "policy/joint_command"}},
        "rec": {"class": "recorder", "params": {"path": str(path)}, "inputs": {"topics": RECORDED}},
    }
    ex = Executor(build_graph(graph_from_dict({"name": "rec_demo", "clock": "sim", "robot": "go2", "nodes": nodes})))
    assert ex.run(duration_s=duration, handle_signals=False) == 0
    counts: collections.Counter = collections.Counter()
    for name, spec in ex.graph.nodes.items():
        for port, topic in spec.outputs.items():
            counts[topic] += ex.nodes[name].output_ports()[port].count
    return {t: counts[t] for t in RECORDED}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("bag") / "run.mcap"
    return path, record(path)


# -- info ------------------------------------------------------------------------------------------
def test_info_of_a_recorder_file_gives_counts_rates_times_and_compression(recording, capsys):
    path, published = recording
    assert main(["info", str(path)]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data  # the same figures either way
    listed = {t["topic"]: t for t in data["topics"]}
    topics = {t: e for t, e in listed.items() if not t.endswith("/values")}
    assert {t: e["count"] for t, e in topics.items()} == published
    # The recorder's /values twins (arrays as JSON numbers, for Foxglove's Plot) are listed too.
    twins = {t: e for t, e in listed.items() if t.endswith("/values")}
    assert {t: (e["encoding"], e["count"]) for t, e in twins.items()} == {
        f"/{t}/values": ("json", published[t]) for t in ("robot/state", "policy/joint_command", "safety/joint_command")
    }
    assert data["messages"] == sum(e["count"] for e in listed.values())
    assert topics["robot/state"]["rate_hz"] == pytest.approx(50.0, abs=1e-6)
    assert topics["command/cmd_vel"]["rate_hz"] == pytest.approx(20.0, abs=1e-6)
    assert topics["robot/state"]["type"] == "krabgraph.msgs.RobotState"
    assert {e["encoding"] for e in topics.values()} == {"protobuf"}
    assert data["compression"] == "zstd" and data["chunks"] >= 1 and data["library"].startswith("krabgraph")
    assert data["size_bytes"] == path.stat().st_size
    # lockstep from graph time 0: the first message at 0, the last at the end of the 2 s run
    assert data["start"]["graph_time_s"] == 0.0 and data["end"]["graph_time_s"] == pytest.approx(2.0)
    assert data["duration_s"] == pytest.approx(2.0)  # log times keep the graph-time spacing
    start = time.mktime(time.strptime(data["start"]["wall_clock"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(start - time.time()) < 600  # wall clock: recorded moments ago
    assert "recovered" not in data


def test_info_lists_the_channels_of_a_foxglove_sdk_file(tmp_path, capsys):
    foxglove = pytest.importorskip("foxglove")
    from foxglove.channels import LogChannel
    from foxglove.messages import Log, LogLevel

    path, t0 = tmp_path / "fox.mcap", 1_700_000_000_000_000_000
    with foxglove.open_mcap(str(path)):
        values = foxglove.Channel("/debug/values", message_encoding="json")
        logs = LogChannel("/log")
        for i in range(21):
            values.log({"i": i}, log_time=t0 + i * 50_000_000)  # 20 Hz for 1 s
            if i % 2 == 0:
                logs.log(Log(message=f"tick {i}", level=LogLevel.Info), log_time=t0 + i * 50_000_000)
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    topics = {t["topic"]: t for t in data["topics"]}
    assert topics["/debug/values"]["encoding"] == "json" and topics["/debug/values"]["count"] == 21
    assert topics["/debug/values"]["rate_hz"] == pytest.approx(20.0)
    assert topics["/log"]["type"] == "foxglove.Log" and topics["/log"]["encoding"] == "protobuf"
    assert topics["/log"]["count"] == 11 and topics["/log"]["rate_hz"] == pytest.approx(10.0)
    assert data["messages"] == 32 and data["duration_s"] == pytest.approx(1.0)
    assert data["start"] == {"wall_clock": "2023-11-14T22:13:20Z", "graph_time_s": None}  # no krabgraph header
    assert data["library"].startswith("foxglove")


def test_info_says_a_killed_recorders_file_was_recovered(tmp_path, capsys):
    from krabgraph.msgs.schema import type_tag
    from krabgraph.nodes.record.mcapio import McapFile

    path = tmp_path / "killed.mcap"
    f = McapFile(path, library="krabgraph recorder")
    channel = f.channel("command/cmd_vel", VelocityCommand, type_tag(VelocityCommand).decode())
    for k in range(5):
        msg = VelocityCommand(vx=k)
        msg.header.stamp_ns = k * 100_000_000
        f.write(channel, msg.SerializeToString(), msg.header.stamp_ns, k)
    f.flush()  # what a recorder killed after a flush leaves: no summary, never closed
    f.stream.close()
    assert main(["info", str(path)]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["messages"] == 5 and data["end"]["graph_time_s"] == pytest.approx(0.4)
    assert "did not finish it" in data["recovered"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file (0 bytes), not a recording"),
        (b"time,vx\n0,0.5\n", "not an MCAP file (no MCAP magic bytes)"),
        ("truncated", "not a readable MCAP file (truncated: it ends before its footer; "),
        ("corrupt", "not a readable MCAP file ("),  # a CRC or a zstd frame check, by where the byte lands
        (None, "no such file"),
    ],
)
def test_bad_files_are_one_error_line_and_exit_1(recording, tmp_path, capsys, content, expected):
    whole = recording[0].read_bytes()
    path = tmp_path / "bad.mcap"
    if content == "truncated":
        content = whole[: len(whole) // 2]
    elif content == "corrupt":
        from mcap.reader import make_reader

        with open(recording[0], "rb") as f:
            chunk = make_reader(f).get_summary().chunk_indexes[0]
        data = bytearray(whole)
        data[chunk.chunk_start_offset + chunk.chunk_length // 2] ^= 0xFF  # in the first chunk's compressed records
        content = bytes(data)
    if content is not None:
        path.write_bytes(content)
    for verb in ("info", "play"):
        assert main([verb, str(path), "--timeout", "0.5"] if verb == "play" else [verb, str(path)]) == 1
        out = capsys.readouterr()
        assert out.out == ""
        (line,) = out.err.splitlines()
        assert line.startswith(f"error: {path}: {expected}"), line


# -- play: what is played ---------------------------------------------------------------------------
def test_playlist_orders_by_graph_time_and_windows_by_topic_start_and_duration(recording):
    path, published = recording
    whole = playlist(path, None, 0.0, None)
    stamps = [m.stamp_ns for m in whole.messages]
    assert stamps == sorted(stamps) and len(stamps) == sum(published.values())
    assert whole.span_ns == 2_000_000_000 and whole.skipped == {}
    cmds = playlist(path, ["command/*"], 0.5, 1.0)
    assert {m.channel.topic for m in cmds.messages} == {"command/cmd_vel"}
    assert [m.stamp_ns for m in cmds.messages] == [500_000_000 + k * 50_000_000 for k in range(21)]
    assert [VelocityCommand.FromString(m.payload).vx for m in cmds.messages][::10] == pytest.approx([0.2, 0.3, 0.3])
    assert cmds.messages[0].channel.tag == "krabgraph.msgs.VelocityCommand@1"
    with pytest.raises(BagError, match=r"no krabgraph messages to play on nothing/\*; the recording has: command/"):
        playlist(path, ["nothing/*"], 0.0, None)
    with pytest.raises(BagError, match=r"nothing to play after --start 5 s: the messages span 2.000 s"):
        playlist(path, None, 5.0, None)


# -- play: into a running graph ---------------------------------------------------------------------
TARGET = """\
name: target
extends: {demo}
clock: wall
topics:
  command/cmd_vel: {{type: VelocityCommand, external: true}}   # published from outside (here: by play)
nodes:
  robot:
    inputs: {{velocity_command: command/cmd_vel}}   # a HAL shows it on its status line
"""


@pytest.fixture
def target(launch, tmp_path) -> str:
    """The demo graph on the wall clock with an external command/cmd_vel, its tap on an ephemeral port."""
    path = tmp_path / "target.yaml"
    path.write_text(TARGET.format(demo=ROOT / "graphs" / "demo.yaml"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = launch(str(path), "--tap", endpoint, "--duration", "300")
    run.wait_for("tap open on", 60)
    return endpoint


class Listener:
    """Collects (receive time, message) on a topic through the tap, in a thread."""

    def __init__(self, endpoint: str, topic: str):
        self.client = TapClient(endpoint, timeout_s=10)
        self.got: list[tuple[float, VelocityCommand]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(topic,), daemon=True)
        self.thread.start()

    def _run(self, topic: str) -> None:
        sock, name = self.client.sock, topic.encode()
        self.client.subscribe(topic)
        while not self.stop.is_set():
            if sock.poll(50):
                parts = sock.recv_multipart()
                if len(parts) == 2 and parts[0] == name:
                    self.got.append((time.monotonic(), decode(parts[1])))

    def wait_subscribed(self, endpoint: str, topic: str) -> None:
        """Publish a marker until it comes back through the tap (subscriptions travel asynchronously)."""
        from krabgraph.launch.cli.control_client import ControlClient

        with ControlClient(endpoint, timeout_s=10) as control:
            for _ in range(100):
                control.publish(topic, VelocityCommand(vx=-99.0))
                time.sleep(0.05)
                if any(m.vx == -99.0 for _, m in self.got):
                    self.got.clear()
                    return
        raise AssertionError(f"the tap never delivered {topic}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.client.close()


def test_play_sends_recorded_values_with_their_spacing_and_skips_refused_topics(recording, target, capsys):
    path, published = recording
    listener = Listener(target, "command/cmd_vel")
    try:
        listener.wait_subscribed(target, "command/cmd_vel")
        t0 = time.monotonic()
        code = main(["play", str(path), "--tap", target, "--topics", "command/*", "safety/joint_command", "nothing/*",
                     "--rate", "2"])  # fmt: skip
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while len(listener.got) < published["command/cmd_vel"] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        listener.close()
    out = capsys.readouterr()
    assert code == 0, out.err
    recorded = [VelocityCommand.FromString(m.payload) for m in playlist(path, ["command/cmd_vel"], 0.0, None).messages]
    got = [m for _, m in listener.got]
    assert [m.vx for m in got] == [m.vx for m in recorded] and len(got) == 40  # every value, in order
    # graph time travels with each message (a message stamped 0, graph time 0, is stamped on arrival)
    assert [m.header.stamp_ns for m in got[1:]] == [m.header.stamp_ns for m in recorded[1:]]
    span = (recorded[-1].header.stamp_ns - recorded[0].header.stamp_ns) * 1e-9
    assert elapsed >= span / 2  # at rate 2, never faster than half the recorded span
    received = [t for t, _ in listener.got]
    assert received[-1] - received[0] >= 0.8 * span / 2
    refusals = [line for line in out.err.splitlines() if line.startswith("refused:")]
    assert refusals == [
        "refused: safety/joint_command: refusing to publish on topic 'safety/joint_command': HAL node 'robot' reads "
        "it (robot.command); robot commands come only from the safety node: publish a velocity command for the "
        "policy, or use `krabgraph estop`; skipping it"
    ]
    assert "warning: --topics nothing/*: no topic of the recording matches it" in out.err
    lines = out.out.splitlines()
    assert lines[0].startswith(f"playing {40 + published['safety/joint_command']} messages on 2 topics (2.00 s of ")
    assert re.search(r"^command/cmd_vel\s+VelocityCommand\s+40\s+0\s+-$", out.out, re.M), out.out
    n = published["safety/joint_command"]
    assert re.search(rf"^safety/joint_command\s+JointCommand\s+0\s+{n}\s+refusing to publish", out.out, re.M)


def test_play_stops_cleanly_on_ctrl_c_with_a_summary(recording, target):
    path, _ = recording
    proc = subprocess.Popen(
        [sys.executable, "-m", "krabgraph", "play", str(path), "--tap", target, "--topics", "command/*", "--loop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # "playing ..." once the graph answered
        assert first.startswith("playing 40 messages on 1 topic (1.95 s of recording)"), first
        assert first.rstrip().endswith("at rate 1, looping"), first
        time.sleep(2.5)  # into the second pass (2 s of recording at rate 1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped (Ctrl-C)" in err and "Traceback" not in err
    sent = int(re.search(r"^command/cmd_vel\s+VelocityCommand\s+(\d+)\s+0\s+-$", out, re.M)[1])
    assert 40 < sent < 200  # the first pass whole, then part of the next


def test_play_without_a_graph_is_one_error_line(recording, capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert main(["play", str(recording[0]), "--tap", endpoint, "--timeout", "0.5"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"error: no graph answered on {endpoint} within 0.5 s (was it launched with --tap?)"
    ]
