"""Multi-process graphs: placement validation, endpoint plan, CURVE between processes.

The supervisor end-to-end runs (MuJoCo walking across processes, a killed brain) are in
tests/test_multiprocess_walk.py.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from krabgraph.launch import Executor, Input, Node, Output, build_graph, load_graph
from krabgraph.launch.api.errors import GraphError
from krabgraph.launch.graph.endpoints import plan
from krabgraph.launch.runtime.security import create_keys
from krabgraph.msgs import VelocityCommand

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"


def write(tmp_path: Path, text: str, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path, **kw) -> list[str]:
    with pytest.raises(GraphError) as err:
        build_graph(load_graph(path, **kw))
    return err.value.errors


SPLIT = """\
extends: {base}
processes:
  robot: {{host: 127.0.0.1}}
  brain: {{host: {brain}}}
nodes:
  hal: {{process: robot}}
  command: {{process: robot}}
  safety: {{process: robot}}
  policy: {{process: {policy}}}
"""


def test_unknown_process_is_reported_with_file_and_line(tmp_path):
    path = write(tmp_path, SPLIT.format(base=GRAPHS / "walk_split.yaml", brain="127.0.0.1", policy="brian"))
    errs = errors_of(path)
    assert len(errs) == 1
    assert errs[0].startswith(f"{path}:9: node 'policy': unknown process 'brian'; did you mean 'brain'?")


def test_node_without_process_and_process_without_section(tmp_path):
    path = write(tmp_path, "extends: walk.yaml\nclock: wall\nprocesses: {a: {}, b: {}}\nnodes:\n  hal: {process: a}\n")
    errs = errors_of(path)
    line = (GRAPHS / "walk.yaml").read_text().splitlines().index("  command:") + 1
    assert any(
        f"walk.yaml:{line}: node 'command' has no process; add `process: NAME` (processes: a, b)" in e for e in errs
    )
    path = write(tmp_path, "extends: walk.yaml\nnodes:\n  hal: {process: robot}\n", "h.yaml")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:3: node 'hal': unknown process 'robot'") and "processes: main" in err


def test_sim_clock_with_several_processes_is_refused(tmp_path):
    path = write(tmp_path, SPLIT.format(base=GRAPHS / "walk_split.yaml", brain="127.0.0.1", policy="brain"))
    (err,) = errors_of(path, clock="sim")
    assert "lockstep runs in one process; use clock wall" in err and err.startswith("command line")
    path = write(tmp_path, "extends: walk_split.yaml\nclock: sim\n", "s.yaml")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:2: clock 'sim' with 2 processes")


def test_off_loopback_host_needs_curve(tmp_path):
    path = write(tmp_path, SPLIT.format(base=GRAPHS / "walk_split.yaml", brain="192.168.123.10", policy="brain"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:4: topic 'policy/joint_command' and 3 more cross from process 'brain'")
    assert "without authentication" in err and "security: {curve:" in err
    create_keys(tmp_path / "keys", "graph")
    path.write_text(path.read_text() + "security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}\n")
    graph = build_graph(load_graph(path))
    assert graph.decl.curve is not None and graph.nodes["policy"].decl.host == "192.168.123.10"


def test_one_process_graph_is_unchanged():
    graph = build_graph(load_graph("walk"))
    assert list(graph.processes) == ["main"] and plan(graph) == {}
    assert {s.process for s in graph.nodes.values()} == {"main"}


def test_endpoint_plan(tmp_path):
    path = write(tmp_path, SPLIT.format(base=GRAPHS / "walk_split.yaml", brain="127.0.0.2", policy="brain"))
    path.write_text(path.read_text() + "base_port: 17000\n")
    assert "without authentication" in errors_of(path)[0]  # tcp between processes needs CURVE, loopback too
    create_keys(tmp_path / "keys", "graph")
    path.write_text(path.read_text() + "security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}\n")
    exports = plan(build_graph(load_graph(path)))
    # Sorted (topic, publishing process) pairs that cross: port base_port + k; hosts differ -> tcp.
    assert [(t, p, e.tcp, e.ipc) for (t, p), e in exports.items()] == [
        ("command/cmd_vel", "robot", "tcp://127.0.0.1:17000", ""),
        ("hal/height_scan", "robot", "tcp://127.0.0.1:17001", ""),
        ("hal/state", "robot", "tcp://127.0.0.1:17002", ""),
        ("policy/joint_command", "brain", "tcp://127.0.0.2:17003", ""),
    ]
    same_host = plan(build_graph(load_graph("walk_split")))
    assert [e.port for e in same_host.values()] == [7600, 7601, 7602, 7603]
    assert all(e.ipc.startswith("ipc://") and e.ipc.endswith(f"walk_split.7600.{e.index}") for e in same_host.values())
    assert not any(e.tcp for e in same_host.values())


class Ticker(Node):
    out = Output(VelocityCommand)

    def on_activate(self) -> None:
        self.create_timer(0.01, lambda: self.out.publish(VelocityCommand(vx=1.0)))


class Sink(Node):
    kind = "recorder"
    cmd = Input(VelocityCommand, queue=100)

    def on_configure(self) -> None:
        self.got = 0

    def on_cmd(self, _msg: VelocityCommand) -> None:
        self.got += 1


def test_curve_between_processes_refuses_a_peer_without_the_key(tmp_path, caplog):
    keys, rogue = tmp_path / "keys", tmp_path / "rogue"
    create_keys(keys, "graph")
    _, rogue_secret = create_keys(rogue, "rogue")
    port = 20000 + (time.monotonic_ns() // 1000) % 20000
    text = f"""\
clock: wall
processes: {{a: {{host: 127.0.0.1}}, b: {{host: 127.0.0.2}}}}
base_port: {port}
security: {{curve: {{secret_key: keys/graph.key_secret, clients: keys}}}}
nodes:
  tick: {{class: "{__name__}:Ticker", process: a}}
  sink: {{class: "{__name__}:Sink", process: b, inputs: {{cmd: tick/out}}}}
"""
    graph = build_graph(load_graph(write(tmp_path, text)))
    (exp,) = plan(graph).values()
    assert exp.tcp == f"tcp://127.0.0.1:{port}"
    a, b = Executor(graph, process="a"), Executor(graph, process="b")
    assert list(a.nodes) == ["tick"] and list(b.nodes) == ["sink"]
    threads = [threading.Thread(target=ex.run, kwargs={"duration_s": 2.0}, daemon=True) for ex in (a, b)]
    ctx = zmq.Context()
    peer = ctx.socket(zmq.SUB)
    peer.linger = 0
    public, secret = zmq.auth.load_certificate(rogue_secret)
    server_public, _ = zmq.auth.load_certificate(keys / "graph.key")
    peer.curve_publickey, peer.curve_secretkey, peer.curve_serverkey = public, secret, server_public
    peer.setsockopt(zmq.SUBSCRIBE, b"")
    stolen = 0
    try:
        with caplog.at_level(logging.DEBUG, logger="krabgraph.auth"):
            for t in threads:
                t.start()
            peer.connect(exp.tcp)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                if peer.poll(100):
                    peer.recv()
                    stolen += 1
            for t in threads:
                t.join(timeout=5.0)
    finally:
        peer.close(0)
        ctx.term()
    assert not any(t.is_alive() for t in threads)
    assert stolen == 0
    assert b.nodes["sink"].got > 50  # the keyed process got ~100/s over tcp + CURVE
    refused = [r for r in caplog.records if r.message.startswith("refused a peer")]
    assert refused and z85(public) in refused[0].message
    assert a.exit_code == 0 and b.exit_code == 0


def z85(key: bytes) -> str:
    return key.decode()
