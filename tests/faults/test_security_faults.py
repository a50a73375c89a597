"""Write paths are authenticated (issue 14, items 2 and 8): no topic crosses processes over tcp
without CURVE, ipc sockets live in a private directory, keys are made private and checked, a
subscriber can pin the one process allowed to publish a topic, and the tap shares the graph's keys.
Real zmq sockets on 127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from krabgraph.launch import build_graph, load_graph
from krabgraph.launch.api.errors import GraphError
from krabgraph.launch.cli.introspect import TapClient
from krabgraph.launch.graph.keyfiles import private_dir_problem, process_secret
from krabgraph.launch.runtime.security import (
    KeyFileError,
    create_keys,
    curve_client,
    curve_server,
    main,
    private_dir,
    process_public,
    release_auth,
)

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")

SPLIT = """\
extends: {base}
processes:
  robot: {{host: 127.0.0.1}}
  brain: {{host: 127.0.0.2}}
base_port: {port}
nodes:
  hal: {{process: robot}}
  command: {{process: robot}}
  safety: {{process: robot}}
  policy: {{process: brain}}
"""


def split(tmp_path: Path, extra: str = "", port: int = 17100) -> Path:
    path = tmp_path / "split.yaml"
    path.write_text(SPLIT.format(base=GRAPHS / "walk_split.yaml", port=port) + extra)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(GraphError) as err:
        build_graph(load_graph(path))
    return err.value.errors


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tcp_between_processes_without_curve_is_refused_even_on_loopback(tmp_path):
    path = split(tmp_path)
    (err,) = errors_of(path)
    # where (the publishing process's line), what (the command topic first), how to fix
    assert err.startswith(f"{path}:4: topic 'policy/joint_command' and 3 more cross from process 'brain'")
    assert "over tcp (tcp://127.0.0.2:17103) without authentication" in err
    assert "security: {curve:" in err and "krabgraph keys" in err
    create_keys(tmp_path / "keys", "graph")
    path.write_text(path.read_text() + "security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}\n")
    assert build_graph(load_graph(path)).decl.curve is not None


def test_keys_are_created_private_and_load(tmp_path, capsys):
    public, secret = create_keys(tmp_path / "k", "graph")
    assert mode(secret) == 0o600 and mode(public) == 0o644 and mode(tmp_path / "k") == 0o700
    pub, sec = zmq.auth.load_certificate(secret)
    assert sec is not None and zmq.auth.load_certificate(public) == (pub, None)
    with pytest.raises(KeyFileError, match="exists; remove it first"):
        create_keys(tmp_path / "k", "graph")
    assert main([str(tmp_path / "k"), "brain"]) == 0 and "brain.key_secret (secret, 0600)" in capsys.readouterr().out
    assert main([str(tmp_path / "k"), "brain"]) == 1
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: ") and "exists" in err


def test_check_refuses_an_open_secret_key_and_a_writable_clients_folder(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    zmq.auth.create_certificates(keys, "graph")  # the way the docs used to say: the secret half as umask makes it
    os.chmod(keys / "graph.key_secret", 0o644)
    path = split(tmp_path, "security: {curve: {secret_key: keys/graph.key_secret, clients: keys}}\n")
    (err,) = errors_of(path)
    assert "graph.key_secret is open to other users (mode 0644)" in err and "chmod 600" in err
    assert err.startswith(f"{path}:")
    os.chmod(keys / "graph.key_secret", 0o600)
    os.chmod(keys, 0o777)
    (err,) = errors_of(path)
    assert "clients folder" in err and "writable by other users (mode 0777)" in err and "chmod go-w" in err
    os.chmod(keys, 0o755)
    os.chmod(keys / "graph.key", 0o666)
    (err,) = errors_of(path)
    assert "authorized keys in" in err and "graph.key" in err
    os.chmod(keys / "graph.key", 0o644)
    build_graph(load_graph(path))


def test_ipc_directory_must_be_private(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ipc = tmp_path / f"krabgraph-{os.getuid()}"
    ipc.mkdir(mode=0o777)
    os.chmod(ipc, 0o777)
    with pytest.raises(GraphError) as err:
        build_graph(load_graph("walk_split"))
    (line,) = err.value.errors
    assert "walk_split.yaml" in line and f"{ipc}" in line and "mode 0777" in line and f"chmod 700 {ipc}" in line
    os.chmod(ipc, 0o700)
    build_graph(load_graph("walk_split"))
    # A directory another account made first (or a symlink) is refused, not used.
    if os.getuid() == 0:
        os.chown(ipc, 12345, -1)
        assert "belongs to uid 12345" in private_dir_problem(ipc)
        with pytest.raises(KeyFileError, match="belongs to uid 12345"):
            private_dir(ipc)
        os.chown(ipc, 0, -1)
    link = tmp_path / "link"
    link.symlink_to(ipc)
    assert "not a directory" in private_dir_problem(link)
    fresh = private_dir(tmp_path / "fresh")
    assert mode(fresh) == 0o700


def test_tap_ipc_endpoint_needs_a_private_directory(tmp_path, write_graph):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    path = write_graph(f"""
        tap: "ipc://{open_dir}/tap"
        nodes:
          robot: {{class: fake_robot, inputs: {{command: policy/joint_command}}, unsafe_direct_command: true}}
          policy: {{class: hold_pose, inputs: {{state: robot/state}}}}
        """)
    (err,) = errors_of(path)
    assert "the tap's ipc socket" in err and "chmod 700" in err


def test_per_process_keys_are_checked(tmp_path):
    keys = tmp_path / "keys"
    for name in ("graph", "robot", "brain"):
        create_keys(keys, name)
    curve = (
        "security: {curve: {secret_key: keys/graph.key_secret, clients: keys, "
        "keys: {robot: keys/robot.key_secret, brain: keys/brain.key_secret}}}\n"
    )
    graph = build_graph(load_graph(split(tmp_path, curve)))
    spec = graph.decl.curve
    assert process_secret(spec, "brain").endswith("brain.key_secret")
    assert process_public(spec, "brain") == zmq.auth.load_certificate(keys / "brain.key")[0]
    brain_public = zmq.auth.load_certificate(keys / "brain.key")[0]
    (keys / "brain.key_secret").rename(tmp_path / "brain.key_secret")  # the robot's host: brain's public half only
    assert process_public(build_graph(load_graph(split(tmp_path, curve))).decl.curve, "brain") == brain_public
    run = subprocess.run(  # ...and cannot run brain: one error line before anything binds
        [sys.executable, "-m", "krabgraph", "launch", str(split(tmp_path, curve)), "--process", "brain"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert re.search(r"security.curve.keys.brain: secret_key .* is not a file", run.stderr), run.stderr
    (tmp_path / "brain.key_secret").rename(keys / "brain.key_secret")
    (keys / "brain.key").unlink()  # not authorized: the other processes would refuse brain
    (err,) = errors_of(split(tmp_path, curve))
    assert "security.curve.keys.brain: the public half of" in err and "copy brain.key there" in err
    shared = curve.replace("brain: keys/brain.key_secret", "brain: keys/robot.key_secret")
    (err,) = errors_of(split(tmp_path, shared))
    assert "shares" in err and "each process needs its own key" in err


def test_a_subscriber_pinned_to_the_publishing_process_ignores_an_impostor(tmp_path):
    """Only the policy's process may publish policy/joint_command: an impostor that holds another
    authorized key (here the robot's) binds the endpoint after the brain died, and gets nothing in."""
    keys = tmp_path / "keys"
    for name in ("robot", "brain"):
        create_keys(keys, name)
    port = 20000 + (time.monotonic_ns() // 1000) % 20000
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = zmq.Context()
    sockets = []

    def pub(key: str) -> zmq.Socket:
        sock = ctx.socket(zmq.PUB)
        sock.linger = 0
        sockets.append(sock)
        curve_server(ctx, sock, str(keys / f"{key}.key_secret"), str(keys), domain="krabgraph")
        for _ in range(100):  # a closed socket's port is freed asynchronously: bind within 2 s
            try:
                sock.bind(endpoint)
                return sock
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE:
                    raise
                time.sleep(0.02)
        sock.bind(endpoint)
        return sock

    def received(sub: zmq.Socket, source: zmq.Socket, seconds: float) -> int:
        got, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            source.send(b"cmd")
            if sub.poll(20):
                sub.recv()
                got += 1
        return got

    try:
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sockets.append(sub)
        # the robot's subscriber: its own key, and the brain's public key pinned as the server's
        curve_client(sub, str(keys / "robot.key_secret"), zmq.auth.load_certificate(keys / "brain.key")[0])
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.reconnect_ivl = 50
        brain = pub("brain")
        sub.connect(endpoint)
        assert received(sub, brain, 1.0) > 5
        brain.close(0)  # the brain dies... (the context's authenticator stays: restarting it races its inproc endpoint)
        impostor = pub("robot")  # ...and a process with another authorized key binds its port
        assert received(sub, impostor, 1.0) == 0
    finally:
        for sock in sockets:
            sock.close(0)
        for _ in range(2):
            release_auth(ctx)
        ctx.term()


def test_the_tap_of_a_secured_graph_is_authenticated_with_the_graph_keys(tmp_path, write_graph):
    create_keys(tmp_path / "keys", "graph")
    port = 20000 + (time.monotonic_ns() // 1000 + 7) % 20000
    path = write_graph(f"""
        clock: wall
        tap: "tcp://127.0.0.1:{port}"
        security: {{curve: {{secret_key: keys/graph.key_secret, clients: keys}}}}
        nodes:
          robot: {{class: fake_robot, inputs: {{command: policy/joint_command}}, unsafe_direct_command: true}}
          policy: {{class: hold_pose, inputs: {{state: robot/state}}}}
        """)
    graph = build_graph(load_graph(path))
    assert graph.decl.tap.secret_key.endswith("graph.key_secret") and graph.decl.tap.clients.endswith("keys")
    from krabgraph.launch import Executor

    ex = Executor(graph)
    import threading

    thread = threading.Thread(target=ex.run, kwargs={"duration_s": 5.0, "handle_signals": False})
    thread.start()
    try:
        with TapClient(f"tcp://127.0.0.1:{port}", timeout_s=0.7) as plain:  # no keys: nothing
            assert list(plain.frames("robot/state", duration_s=0.5)) == []
        key, pub = str(tmp_path / "keys" / "graph.key_secret"), str(tmp_path / "keys" / "graph.key")
        with TapClient(f"tcp://127.0.0.1:{port}", server_key=pub, key=key, timeout_s=3.0) as ok:
            assert ok.graph_info()["graph"] == "g"
    finally:
        ex.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
