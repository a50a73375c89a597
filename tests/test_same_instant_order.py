"""One global order at one instant: observers (recorder, depth camera, extra timers) change no other bytes.

Timers due at the same graph time fire by (deadline, node declaration order, creation order within
the node); see docs/architecture.md. Which other nodes or timers exist must not matter.
"""

from __future__ import annotations

import pytest

from krabgraph.launch import Executor, Input, Node, Param, build_graph, graph_from_dict, load_graph
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc

LOG: list[str] = []


class Ticker(Node):
    """Appends ``<name>.<i>@<ms>`` to LOG from each of its timers (periods in ms)."""

    kind = "source"
    periods_ms = Param(list, [10.0], "one timer per period", item=float)

    def on_activate(self) -> None:
        for i, period in enumerate(self.periods_ms):
            self.create_timer(period * 1e-3, self._fire(i))

    def _fire(self, i: int):
        def fire() -> None:
            LOG.append(f"{self.name}.{i}@{round(self.now() * 1e3)}")

        return fire


def _fire_order(nodes: dict[str, list[float]], duration_s: float) -> list[str]:
    LOG.clear()
    graph = build_graph(
        graph_from_dict(
            {"clock": "sim", "nodes": {n: {"class": Ticker, "params": {"periods_ms": p}} for n, p in nodes.items()}}
        )
    )
    assert Executor(graph).run(duration_s=duration_s, handle_signals=False) == 0
    return list(LOG)


def test_equal_deadlines_fire_in_declaration_then_creation_order():
    order = _fire_order({"b": [20.0], "a": [10.0, 20.0], "c": [20.0, 10.0]}, 0.045)
    at20 = [e for e in order if e.endswith("@20")]
    assert at20 == ["b.0@20", "a.0@20", "a.1@20", "c.0@20", "c.1@20"]  # file order b, a, c; not by name


@pytest.mark.parametrize("extra", [[5.0], [10.0, 20.0, 40.0], [2.5, 7.5, 10.0, 30.0, 50.0]])
def test_another_nodes_timers_do_not_reorder_the_rest(extra):
    """The old per-node tie-break (deadline, creation number) left equal keys to the heap's layout."""
    base = {"hal": [20.0, 1000.0], "command": [20.0], "policy": [20.0, 100.0], "safety": [20.0, 500.0]}
    alone = _fire_order(base, 2.0)
    observed = [e for e in _fire_order({**base, "observer": extra}, 2.0) if not e.startswith("observer")]
    assert len(alone) > 400 and observed == alone


# -- the walk graph, byte for byte -------------------------------------------------------------------

WATCHED = ("hal/state", "safety/joint_command")
WALK_S = 4.0  # the schedule walks from t = 2 s


class Tape(Node):
    """Keeps every frame of the watched topics, as sent but for the run's ``robot_id``."""

    kind = "recorder"
    topics = Input(AnyMessage, queue=100_000)

    def on_configure(self) -> None:
        self.frames: dict[str, list[bytes]] = {t: [] for t in WATCHED}

    def on_topics(self, msg: RawMessage) -> None:
        frame = bytes(msg.frame)
        typed = msg.decode()
        if typed.robot_id:  # the HAL's identity is drawn per run (issue 14): every other byte must match
            typed.robot_id = ""
            frame = frame[: msg.offset] + typed.SerializeToString()
        self.frames[msg.topic].append(frame)


def _walk_frames(graph: str, sets: list[str]) -> dict[str, list[bytes]]:
    pytest.importorskip("mujoco")
    decl = load_graph(graph, clock="sim", sets=["hal.status_period_s=0", *sets])
    decl.nodes["tape"] = NodeDecl("tape", Tape, inputs={"topics": list(WATCHED)}, locs={"node": Loc("test")})
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=WALK_S, handle_signals=False) == 0
    assert not ex.failures, ex.failures
    return ex.nodes["tape"].frames


@pytest.fixture(scope="module")
def unobserved() -> dict[str, list[bytes]]:
    return _walk_frames("walk", [])


@pytest.mark.parametrize(
    "observers",
    [
        pytest.param(["rec"], id="recorder"),  # the old order changed hal/state from t = 2.00 s on
        pytest.param(["depth"], id="depth_camera"),
        pytest.param(["rec", "depth", "video"], id="recorder+depth+video"),
    ],
)
def test_observers_change_no_state_or_command_byte(unobserved, observers, tmp_path):
    """walk.yaml with a recorder, the 10 Hz depth camera or a video must walk exactly as without."""
    sets = []
    if "depth" in observers:
        sets.append("hal.depth_hz=10")
    if "video" in observers:
        pytest.importorskip("av")
        sets += [f"hal.video={tmp_path / 'walk.mp4'}", "hal.video_fps=7"]  # frames between ticks: physics in two steps
    if "rec" in observers:
        sets.append(f"rec.path={tmp_path / 'walk.mcap'}")
    observed = _walk_frames("walk_record" if "rec" in observers else "walk", sets)
    if "rec" in observers:
        assert (tmp_path / "walk.mcap").stat().st_size > 100_000  # it really recorded
    if "video" in observers:
        assert (tmp_path / "walk.mp4").stat().st_size > 10_000
    assert len(unobserved["hal/state"]) == WALK_S / 0.02  # the activation state + a tick every 20 ms
    assert len(unobserved["safety/joint_command"]) >= WALK_S / 0.02
    for topic in WATCHED:
        plain, seen = unobserved[topic], observed[topic]
        first = next((i for i, (a, b) in enumerate(zip(plain, seen, strict=False)) if a != b), None)
        assert first is None, f"{topic}: message {first} of {len(plain)} differs with {observers}"
        assert len(seen) == len(plain)
