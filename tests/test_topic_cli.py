"""`krabgraph topic list|echo|hz|bw` and `krabgraph node list` against running graphs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from krabgraph.launch.cli.introspect import RateWindow, TapClient, measure
from krabgraph.launch.cli.main import main

from .test_tap import Pulse, free_port, running

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("floats", [753, 5000])  # a 3 KB and a 20 KB message
def test_hz_reads_50_hz_for_small_and_large_messages(floats):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    nodes = {"cam": {"class": Pulse, "params": {"period_s": 0.02, "floats": floats}}}
    with running(nodes, endpoint), TapClient(endpoint) as client:
        client.check_topic("cam/data")
        stats = measure(client, "cam/data", 2.5)
    assert stats is not None and stats.count >= 110
    assert 49.0 <= stats.rate_hz <= 51.0, stats
    assert abs(stats.mean_bytes - (4 * floats + 50)) < 60
    assert 49 * stats.mean_bytes <= stats.bytes_per_s <= 51 * stats.mean_bytes


def test_rate_comes_from_receive_times_not_from_processing():
    window = RateWindow(window=5)
    for i in range(10):
        window.add(i * 20_000_000, 100)  # 50 Hz, whatever the reader did in between
    stats = window.stats()
    assert stats.count == 5 and stats.rate_hz == pytest.approx(50.0) and stats.bytes_per_s == pytest.approx(5000.0)


def test_cli_topic_and_node_commands(capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    nodes = {
        "robot": {"class": "fake_robot", "inputs": {"command": "policy/joint_command"}, "unsafe_direct_command": True},
        "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
    }
    with running(nodes, endpoint):
        time.sleep(0.2)
        assert main(["topic", "list", "--tap", endpoint]) == 0
        out = capsys.readouterr().out.splitlines()
        assert re.match(r"topic\s+type\s+publishers\s+subscribers\s+published", out[0])
        assert re.match(r"robot/state\s+RobotState\s+robot\.state\s+policy\.state\s+\d+", out[1])

        assert main(["node", "list", "--tap", endpoint]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^robot\s+FakeRobot\s+hal\s+active\s+\d+\s+\d+\s+0\s+0\s+0\s+0$", out, re.M), out
        assert re.search(r"^policy\s+HoldPose\s+policy\s+active", out, re.M)

        assert main(["topic", "echo", "policy/joint_command", "-n", "2", "--tap", endpoint]) == 0
        docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
        assert len(docs) == 2
        assert docs[0]["name"][:2] == ["FL_hip_joint", "FL_thigh_joint"]
        assert docs[0]["position"][:3] == [0.0, 0.8, -1.5] and len(docs[0]["position"]) == 12

        assert main(["topic", "hz", "robot/state", "--duration", "1.2", "--tap", endpoint]) == 0
        out = capsys.readouterr().out
        assert re.search(r"average rate: (49|50)\.\d+ Hz", out), out

        assert main(["topic", "bw", "robot/state", "--duration", "1.2", "--tap", endpoint]) == 0
        assert re.search(r"KB/s  mean \d+\.\d B  window \d+", capsys.readouterr().out)

        assert main(["topic", "hz", "no/such", "--tap", endpoint]) == 1
        assert "has no topic 'no/such'; topics: policy/joint_command, robot/state" in capsys.readouterr().err


def test_no_graph_on_the_tap_is_one_clear_error(capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    assert main(["node", "list", "--tap", endpoint, "--timeout", "0.5"]) == 1
    assert time.monotonic() - t0 < 3
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: no graph answered on {endpoint} within 0.5 s (start one with `krabgraph launch GRAPH --tap`, "
        "or give its endpoint with --tap)"
    )


def test_launch_with_tap_is_visible_from_another_process():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "krabgraph", "launch", "demo", "--clock", "wall", "--tap", endpoint, "--duration", "20"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out = subprocess.run(
            [sys.executable, "-m", "krabgraph", "node", "list", "--tap", endpoint, "--timeout", "15"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr
        assert re.search(r"^robot\s+FakeRobot\s+hal\s+active", out.stdout, re.M), out.stdout
        assert out.stdout.startswith("demo (clock wall, t = ")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"tap open on {endpoint}" in err
