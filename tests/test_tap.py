"""The tap: opt-in, per-topic copies only while someone listens, threads, CURVE, refusals."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from krabgraph.launch import Executor, GraphError, Input, Node, Output, Param, build_graph, graph_from_dict
from krabgraph.launch.cli.introspect import TapClient, TapClientError, decode
from krabgraph.launch.graph.endpoints import is_loopback
from krabgraph.launch.runtime.security import create_keys
from krabgraph.msgs import ArrayStamped, VelocityCommand, set_array

from .conftest import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pulse(Node):
    """Publishes a VelocityCommand (vx = count) every ``period_s``; with ``floats`` > 0 an array too."""

    kind = "source"
    period_s = Param(float, 0.02, "", gt=0)
    floats = Param(int, 0, "", ge=0)
    out = Output(VelocityCommand)
    data = Output(ArrayStamped)

    def on_activate(self) -> None:
        self.k = 0
        if self.floats:
            self.array = ArrayStamped()
            set_array(self.array.data, np.zeros(self.floats, dtype=np.float32))
        self.create_timer(self.period_s, self.tick)

    def tick(self) -> None:
        self.k += 1
        self.out.publish(VelocityCommand(vx=float(self.k)))
        if self.floats:
            self.array.header.stamp_ns = 0
            self.data.publish(self.array)


class Echo(Node):
    """Reads a VelocityCommand and does nothing with it."""

    kind = "other"
    inp = Input(VelocityCommand)

    def on_inp(self, msg: VelocityCommand) -> None:
        pass


@contextmanager
def running(nodes: dict, tap, clock="wall", duration: float = 30.0):
    """A graph in a background thread; yields the executor; stops it on exit."""
    spec = {"clock": clock, "nodes": nodes}
    if tap is not None:
        spec["tap"] = tap
    ex = Executor(build_graph(graph_from_dict(spec)))
    thread = threading.Thread(target=ex.run, kwargs={"duration_s": duration, "handle_signals": False})
    thread.start()
    try:
        yield ex
    finally:
        ex.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_no_tap_unless_asked(no_thread_leak):
    with running({"p": {"class": Pulse}}, None, duration=0.2) as ex:
        pass
    assert ex.tap is None and all(w.tap is None for w in ex.workers)


def test_copies_flow_only_while_someone_listens(no_thread_leak):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with running({"p": {"class": Pulse, "params": {"period_s": 0.01}}}, endpoint) as ex:
        flag = ex.workers[0].tap.flag("p/out")
        time.sleep(0.1)
        assert not flag.on and not ex.workers[0].tap.backlog
        with TapClient(endpoint) as client:
            got = []
            for _, frame in client.frames("p/out", duration_s=0.5):
                got.append(decode(frame).vx)
            assert flag.on  # still subscribed while frames() runs... until it returns
            assert len(got) >= 30 and got == sorted(got)
            assert got == [float(v) for v in range(int(got[0]), int(got[0]) + len(got))]  # none missing
        assert wait_until(lambda: not flag.on)  # unsubscribed when the client left
        assert not ex.workers[0].tap.flag("p/data").on  # never asked for


def test_an_output_is_wanted_while_a_node_reads_it_or_a_tap_listener_subscribes(no_thread_leak):
    """``OutputPort.wanted``: a read topic always, an unread one only while a tap listener holds it."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    nodes = {"p": {"class": Pulse, "params": {"period_s": 0.01}}, "q": {"class": Pulse}, "echo": {"class": Echo}}
    nodes["echo"]["inputs"] = {"inp": "q/out"}
    with running(nodes, endpoint) as ex:
        p, q = ex.nodes["p"], ex.nodes["q"]
        assert q.out.wanted and not q.data.wanted and not p.out.wanted
        with TapClient(endpoint) as client:
            got = [decode(frame).vx for _, frame in client.frames("p/out", duration_s=0.3)]
            assert p.out.wanted and not p.data.wanted and got
        assert wait_until(lambda: not p.out.wanted)  # the listener left
    unbound = Pulse(name="alone")
    assert unbound.out.wanted  # outside an executor: ``sent`` keeps every message


def test_a_threaded_node_is_tapped_through_the_proxy(no_thread_leak):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    nodes = {
        "main": {"class": Pulse, "params": {"period_s": 0.01}},
        "side": {"class": Pulse, "params": {"period_s": 0.01}, "thread": True},
    }
    with running(nodes, endpoint) as ex, TapClient(endpoint) as client:
        assert wait_until(lambda: ex.tap.thread is not None)  # the gate thread owns the listening socket
        side = [decode(f).vx for _, f in client.frames("side/out", duration_s=0.4)]
        main = [decode(f).vx for _, f in client.frames("main/out", duration_s=0.4)]
        assert len(side) >= 20 and len(main) >= 20
        info = client.graph_info()
        assert {n["name"]: n["thread"] for n in info["nodes"]} == {"main": False, "side": True}


def test_graph_description_names_nodes_states_and_counters():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    nodes = {
        "robot": {"class": "fake_robot", "inputs": {"command": "policy/joint_command"}, "unsafe_direct_command": True},
        "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
    }
    with running(nodes, endpoint, clock={"mode": "sim", "real_time_factor": 1.0}) as ex, TapClient(endpoint) as c:
        time.sleep(0.3)
        info = c.graph_info()
        assert info["graph"] == "inline" and info["clock"] == "sim" and info["time_ns"] > 0
        nodes_info = {n["name"]: n for n in info["nodes"]}
        assert nodes_info["robot"]["class"] == "krabgraph.nodes.demo:FakeRobot"
        assert nodes_info["robot"]["kind"] == "hal" and nodes_info["robot"]["state"] == "active"
        assert nodes_info["policy"]["received"] > 0 and nodes_info["robot"]["published"] > 0
        topics = {t["name"]: t for t in info["topics"]}
        assert topics["robot/state"]["type"] == "krabgraph.msgs.RobotState"
        assert topics["robot/state"]["subscribers"] == ["policy.state"]
        assert ex.tap.thread is not None  # the gate thread owns the listening socket, even with one worker


def test_off_loopback_without_keys_is_refused_before_anything_starts():
    for endpoint in ("tcp://0.0.0.0:7447", "tcp://192.168.1.5:7447", "tcp://*:7447"):
        with pytest.raises(GraphError) as exc:
            build_graph(graph_from_dict({"tap": endpoint, "nodes": {"p": {"class": Pulse}}}))
        assert f"refusing to open {endpoint} without encryption" in str(exc.value)
    assert is_loopback("tcp://127.0.0.1:1") and is_loopback("tcp://[::1]:1") and is_loopback("tcp://localhost:1")
    with pytest.raises(GraphError, match="needs a port"):
        build_graph(graph_from_dict({"tap": "tcp://127.0.0.1", "nodes": {"p": {"class": Pulse}}}))


def test_a_busy_port_is_one_clear_error():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        graph = build_graph(graph_from_dict({"tap": f"tcp://127.0.0.1:{port}", "nodes": {"p": {"class": Pulse}}}))
        with pytest.raises(Exception, match=rf"tap: cannot listen on tcp://127.0.0.1:{port}: Address already in use"):
            Executor(graph)


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_lets_in_only_the_authorized_client(tmp_path, write_graph, no_thread_leak):
    keys, clients = tmp_path / "keys", tmp_path / "keys" / "clients"
    clients.mkdir(parents=True)
    server_public, server_secret = create_keys(keys, "server")  # secret halves 0600: check refuses 0644
    client_public, client_secret = create_keys(keys, "client")
    (clients / "client.key").write_bytes(Path(client_public).read_bytes())
    _, stranger_secret = create_keys(keys, "stranger")
    port = free_port()
    spec = {"endpoint": f"tcp://127.0.0.1:{port}", "secret_key": str(server_secret), "clients": str(clients)}
    with running({"p": {"class": Pulse, "params": {"period_s": 0.01}}}, spec) as ex:
        assert ex.tap.auth is not None
        with TapClient(spec["endpoint"], server_key=server_public, key=client_secret) as ok:
            assert len(list(ok.frames("p/out", duration_s=0.5))) >= 20
        with TapClient(spec["endpoint"], server_key=server_public, key=stranger_secret, timeout_s=0.5) as bad:
            assert list(bad.frames("p/out", duration_s=0.5)) == []
            with pytest.raises(TapClientError, match="no graph answered"):
                bad.graph_info()
        with TapClient(spec["endpoint"], timeout_s=0.5) as plain:  # no keys at all
            assert list(plain.frames("p/out", duration_s=0.5)) == []


def test_a_bad_tap_value_in_a_graph_file_is_explained(write_graph):
    from krabgraph.launch import load_and_build

    path = write_graph("tap: 5\nnodes:\n  robot: {class: fake_robot, inputs: {command: robot/none}}\n")
    with pytest.raises(GraphError) as exc:
        load_and_build(path)
    assert exc.value.errors == [
        f"{path}:1: tap: tap must be true, an endpoint (tcp://127.0.0.1:7447) or "
        "{endpoint, secret_key, clients, control}"
    ]
