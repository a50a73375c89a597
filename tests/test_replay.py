"""Replay: recorded topics back into a graph; bit-exact policy output; bad files refused whole."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import pytest

from krabgraph.launch import Executor, GraphError, Input, Node, build_graph, graph_from_dict, load_and_build
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.declaration import NodeDecl, load_graph
from krabgraph.msgs import RobotState
from krabgraph.nodes.record.mcapio import read_recording


class Capture(Node):
    """Keeps the payload bytes and arrival time of every message on its topics."""

    inp = Input(AnyMessage, queue=10_000)

    def on_configure(self) -> None:
        self.got: list[tuple[str, int, bytes]] = []

    def on_inp(self, msg: RawMessage) -> None:
        self.got.append((msg.topic, self.now_ns(), msg.payload))


@pytest.fixture(scope="module")
def walk_recording(tmp_path_factory) -> Path:
    """A 3 s lockstep run of graphs/walk.yaml on flat ground: state, height scan, command and joint commands."""
    path = tmp_path_factory.mktemp("rec") / "walk.mcap"
    decl = load_graph("walk", clock="sim", sets=["hal.terrain=flat", "hal.status_period_s=0"])
    decl.nodes["rec"] = NodeDecl(
        "rec",
        "recorder",
        params={"path": str(path)},
        inputs={"topics": ["hal/state", "hal/height_scan", "command/cmd_vel", "policy/joint_command"]},
        locs=dict(decl.nodes["hal"].locs),
    )
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=3.0, handle_signals=False) == 0
    assert ex.nodes["rec"].total_dropped == 0
    return path


def replay_into_policy(path: Path, **params) -> Executor:
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "hal": {
                        "class": "replay",
                        "params": {"path": str(path), **params},
                        "outputs": {"frames": ["hal/state", "hal/height_scan", "command/cmd_vel"]},
                    },
                    "policy": {  # walk.yaml's
                        "class": "policy",
                        "params": {"bundle": "go2_rough"},
                        "inputs": {
                            "state": "hal/state",
                            "command": "command/cmd_vel",
                            "height_scan": "hal/height_scan",
                        },
                    },
                    "capture": {"class": Capture, "inputs": {"inp": ["policy/joint_command", "hal/state"]}},
                },
            }
        )
    )
    ex = Executor(graph)
    ex.run(duration_s=60.0, handle_signals=False)  # the replay stops the graph at its end
    return ex


def test_replay_reproduces_the_recorded_joint_commands_bit_for_bit(walk_recording, no_thread_leak):
    recorded = read_recording(walk_recording)
    assert recorded.counts == {
        "hal/state": 150,
        "hal/height_scan": 150,
        "command/cmd_vel": 150,
        "policy/joint_command": 150,
    }
    ex = replay_into_policy(walk_recording)
    assert ex.exit_code == 0
    assert ex.nodes["hal"].published == 450
    got = [payload for topic, _, payload in ex.nodes["capture"].got if topic == "policy/joint_command"]
    want = [frame[frame.index(b"\0") + 1 :] for topic, _, frame in recorded.messages if topic == "policy/joint_command"]
    assert len(got) == len(want) == 150
    assert all(a == b for a, b in zip(got, want, strict=True))  # every byte: targets, gains, stamps, seq
    # The states went out unchanged, at their recorded graph times.
    states = [(t, p) for topic, t, p in ex.nodes["capture"].got if topic == "hal/state"]
    assert [RobotState.FromString(p).header.stamp_ns for _, p in states] == [t for t, _ in states]


def test_speed_scales_graph_time(walk_recording):
    ex = replay_into_policy(walk_recording, speed=2.0)
    states = [RobotState.FromString(p) for topic, _, p in ex.nodes["capture"].got if topic == "hal/state"]
    times = [t for topic, t, _ in ex.nodes["capture"].got if topic == "hal/state"]
    assert len(states) == 150
    assert [2 * t for t in times] == [s.header.stamp_ns for s in states]  # stamps kept, sent twice as fast


def test_an_overlay_swaps_the_hal_for_a_replay(walk_recording, write_graph):
    graphs = Path(__file__).resolve().parents[1] / "graphs"
    overlay = write_graph(
        f"""
        extends: {graphs / "walk.yaml"}
        clock: sim
        nodes:
          hal:
            class: replay
            params: {{path: {walk_recording}}}
            outputs: {{frames: [hal/state, hal/height_scan]}}
        """
    )
    graph = load_and_build(overlay)
    assert graph.nodes["hal"].decl.replaced == "mujoco_hal"
    assert graph.nodes["hal"].inputs == {"command": "safety/joint_command", "safety_status": "safety/status"}  # kept
    ex = Executor(graph)
    assert ex.run(duration_s=60.0, handle_signals=False) == 0
    assert ex.nodes["policy"].joint_command.count == 150
    assert ex.nodes["hal"].command.count >= 150  # the safety node's commands reach the stand-in


def _startup_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "cut_in_the_index"])
def test_a_malformed_or_truncated_file_gives_one_error_and_publishes_nothing(walk_recording, tmp_path, damage, caplog):
    data = walk_recording.read_bytes()
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(
        {
            "garbage": b"not an mcap file at all" * 100,
            "truncated": data[: len(data) // 2],
            "cut_in_the_index": data[:-40],
        }[damage]
    )
    caplog.set_level(logging.INFO)
    ex = replay_into_policy(bad)
    assert ex.exit_code == 1
    assert ex.nodes["hal"].frames.count == 0 and getattr(ex.nodes["capture"], "got", []) == []
    errors = _startup_errors(caplog)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"startup failed: {bad}: not a readable MCAP file (")
    assert "Traceback" not in errors[0]


def test_topics_missing_from_the_recording_or_of_another_type_are_refused(walk_recording, caplog):
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "hal": {
                        "class": "replay",
                        "params": {"path": str(walk_recording)},
                        "outputs": {"frames": ["hal/state", "hal/clock"]},
                    },
                    "capture": {"class": Capture, "inputs": {"inp": "hal/state"}},
                },
            }
        )
    )
    ex = Executor(graph)
    assert ex.run(duration_s=1.0, handle_signals=False) == 1
    errors = _startup_errors(caplog)
    assert len(errors) == 1
    assert (
        "no messages on hal/clock; the recording has: command/cmd_vel (150), hal/height_scan (150), hal/state (150)"
        in errors[0]
    )


def test_a_typed_subscriber_gives_the_replayed_topic_its_type(walk_recording):
    class WantsState(Node):
        state = Input(RobotState)

    graph = build_graph(
        graph_from_dict(
            {
                "nodes": {
                    "hal": {"class": "replay", "params": {"path": "x"}, "outputs": {"frames": ["hal/state"]}},
                    "p": {"class": WantsState, "inputs": {"state": "hal/state"}},
                }
            }
        )
    )
    assert graph.topics["hal/state"].msg_type is RobotState
    with pytest.raises(GraphError, match=r"output 'frames'|takes one topic"):
        build_graph(
            graph_from_dict(
                {
                    "nodes": {
                        "hal": {"class": "mujoco_hal", "outputs": {"state": ["a", "b"]}},
                    }
                }
            )
        )


def test_real_time_replay_follows_the_wall_clock(walk_recording):
    """Under a wall clock the recording plays in real time (here 4× faster: 3 s in 0.75 s)."""
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "wall",
                "nodes": {
                    "hal": {
                        "class": "replay",
                        "params": {"path": str(walk_recording), "speed": 4.0},
                        "outputs": {"frames": ["hal/state"]},
                    },
                    "capture": {"class": Capture, "inputs": {"inp": "hal/state"}},
                },
            }
        )
    )
    ex = Executor(graph)
    t0 = time.monotonic()
    assert ex.run(duration_s=10.0, handle_signals=False) == 0
    assert 0.7 <= time.monotonic() - t0 < 2.0
    got = ex.nodes["capture"].got
    assert len(got) == 150
    start = got[0][1]
    lateness = [(t - start) - RobotState.FromString(p).header.stamp_ns / 4 for _, t, p in got]
    # Paced to the scaled recorded time: the typical message within 2 ms of it, every one within 50 ms
    # (a loaded 2-core VM stalls a process for several ms now and then; a broken pacing is off by
    # whole periods, 80 ms here, or drifts).
    assert statistics.median(abs(x) for x in lateness) < 2e6
    assert max(abs(x) for x in lateness) < 50e6
