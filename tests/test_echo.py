"""`krabgraph topic echo|info`, `node info`, `interface show`: outputs parsed as YAML and JSON.

The live tests launch the walk graph (MuJoCo, policy, safety) with the tap in a child process, as
a user would, and run the CLI against it in other processes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.launch.cli.echo import EchoError, check_path, find_type, pick, to_data, to_json, to_yaml
from krabgraph.launch.cli.main import main
from krabgraph.msgs import Diagnostics, RobotState, set_array

from .test_tap import free_port

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # seconds for one CLI call on a loaded machine (it usually takes one or two)


def _robot_state() -> RobotState:
    msg = RobotState(has_base=False)
    msg.header.seq = 7
    msg.header.stamp_ns = 3_000_000_000_000  # beyond 2**32: the JSON mapping would write a string
    msg.joints.name[:] = ["a", "b", "c"]
    set_array(msg.joints.position, [0.5, -1.0, math.nan])
    set_array(msg.contacts.force, np.arange(12, dtype=np.float32).reshape(4, 3))
    return msg


def test_arrays_are_numbers_64_bit_ints_numbers_and_zero_fields_present():
    data = to_data(_robot_state())
    assert data["header"] == {"stamp_ns": 3_000_000_000_000, "seq": 7, "frame_id": ""}
    assert data["joints"]["position"] == [0.5, -1.0, "NaN"]
    assert "velocity" not in data["joints"]  # an unset message field (Array included) stays out
    assert data["contacts"]["force"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]
    assert data["has_base"] is False and "imu" not in data  # unset messages stay out, as in the mapping
    assert list(data["contacts"]) == ["name", "in_contact", "force"]  # .proto order
    assert yaml.safe_load(to_yaml(data)) == data
    assert json.loads(to_json(data)) == data

    short = to_data(_robot_state(), arrays=False)
    assert short["joints"]["position"] == "<float64[3]>" and short["contacts"]["force"] == "<float32[4,3]>"

    diag = to_data(Diagnostics(node="x", level=Diagnostics.WARN, values={"k": "v"}))
    assert diag["level"] == "WARN" and diag["values"] == {"k": "v"}


def test_field_paths_and_bad_paths():
    data = to_data(_robot_state())
    assert pick(data, check_path(RobotState, "header.seq")) == 7
    assert pick(data, check_path(RobotState, "joints.position.1")) == -1.0
    assert pick(data, check_path(RobotState, "contacts.force.3.2")) == 11.0
    with pytest.raises(EchoError) as err:
        check_path(RobotState, "joints.pos")
    assert str(err.value) == (
        "--field joints.pos: RobotState.joints has no field 'pos'; its fields: header, name, position, velocity, effort"
    )
    with pytest.raises(EchoError, match=r"RobotState has no field 'nope'; its fields: header, joints, imu"):
        check_path(RobotState, "nope")


def test_interface_show_and_close_matches(capsys):
    assert find_type("krabgraph.msgs.RobotState") is RobotState and find_type("robotstate") is RobotState
    assert main(["interface", "show", "RobotState"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# krabgraph.msgs.RobotState  (krabgraph/msgs/robot.proto)\n")
    assert "message RobotState {" in out and "  JointState joints = 2;" in out and out.rstrip().endswith("}")
    assert main(["interface", "show", "JointState", "--fields"]) == 0
    assert "position: Array" in capsys.readouterr().out
    assert main(["interface", "show", "RobotStat"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown message type 'RobotStat'; did you mean RobotState")


@pytest.fixture(scope="module")
def walk() -> Iterator[str]:
    """The walk graph (lockstep at real time) with its tap open; yields the tap endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "krabgraph",
            "launch",
            "walk",
            "--tap",
            endpoint,
            "--duration",
            "300",
            "--set",
            "hal.status_period_s=0.5",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def cli(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "krabgraph", *args, "--tap", endpoint, "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
    )


def test_echo_yaml_messages_separated_like_ros(walk):
    out = cli(walk, "topic", "echo", "hal/state", "-n", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n---\n")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    assert len(docs) == 3
    seqs = [d["header"]["seq"] for d in docs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    for d in docs:
        joints = d["joints"]
        assert len(joints["name"]) == 12 and joints["name"][0] == "FL_hip_joint"
        for key in ("position", "velocity", "effort"):
            assert len(joints[key]) == 12 and all(isinstance(v, float) for v in joints[key])
        assert np.array(d["contacts"]["force"]).shape == (4, 3)
        assert d["imu"]["linear_acceleration"]["z"] > 5.0  # gravity reaction
        assert isinstance(d["header"]["stamp_ns"], int)


def test_echo_json_field_once_and_no_arr(walk):
    out = cli(walk, "topic", "echo", "hal/state", "--json", "-n", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert second["header"]["seq"] > first["header"]["seq"]
    assert len(first["joints"]["position"]) == 12

    out = cli(walk, "topic", "echo", "hal/state", "--field", "joints.position", "--json", "--once")
    assert out.returncode == 0, out.stderr
    position = json.loads(out.stdout)
    assert len(position) == 12 and all(isinstance(v, float) for v in position)

    out = cli(walk, "topic", "echo", "hal/state", "--field", "header.seq", "-n", "2")
    assert out.returncode == 0, out.stderr
    seqs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    assert len(seqs) == 2 and all(isinstance(s, int) for s in seqs) and seqs[1] > seqs[0]

    out = cli(walk, "topic", "echo", "hal/height_scan", "--no-arr", "--once")
    assert out.returncode == 0, out.stderr
    (scan,) = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    assert scan["heights"] == "<float32[11,17]>" and scan["resolution"] == pytest.approx(0.1)

    out = cli(walk, "topic", "echo", "hal/state", "--field", "joints.pos", "--once")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == (
        "error: --field joints.pos: RobotState.joints has no field 'pos'; its fields: header, name, position, "
        "velocity, effort"
    )


def test_topic_info_and_node_info(walk):
    out = cli(walk, "topic", "info", "hal/state")
    assert out.returncode == 0, out.stderr
    info = yaml.safe_load(out.stdout)
    assert info["type"] == "krabgraph.msgs.RobotState"
    assert info["publishers"] == ["hal.state"] and set(info["subscribers"]) == {"policy.state", "safety.state"}
    assert info["published"] > 0
    assert 45 <= info["rate_hz"] <= 55  # per second of graph time: 50 Hz

    out = cli(walk, "node", "info", "policy")
    assert out.returncode == 0, out.stderr
    node = yaml.safe_load(out.stdout)
    assert node["class"] == "krabgraph.nodes.policy.node:PolicyNode" and node["kind"] == "policy"
    assert node["state"] == "active" and node["params"]["bundle"] == "go2_rough"
    assert node["inputs"]["state"] == {"topic": "hal/state", "type": "RobotState"}
    assert node["outputs"]["joint_command"] == {"topic": "policy/joint_command", "type": "JointCommand"}

    hal = yaml.safe_load(cli(walk, "node", "info", "hal").stdout)
    assert hal["params"]["status_period_s"] == 0.5  # the running value, given with --set

    out = cli(walk, "node", "info", "polcy")
    assert out.returncode == 1
    assert (
        out.stderr.strip().splitlines()[-1]
        == "error: graph 'walk' has no node 'polcy'; nodes: command, hal, policy, safety"
    )
