"""Per-topic publish permission at run time (issue 14, "Every write path is authenticated and
authorized"): with per-process keys (``security.curve.keys``) every process serves its tcp exports
with its own key, and a subscriber pins the key of the process that publishes the topic. So only
the policy's process can feed ``policy/joint_command`` to the robot: a process holding another
authorized key (here a copy of the robot's own) that binds the brain's port after the brain is gone
gets no frame in. Real executors and zmq CURVE sockets on 127.0.0.x; every wait is bounded."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from krabgraph.launch import Executor, Input, Node, Output, build_graph, load_graph
from krabgraph.launch.cli.main import main as cli_main
from krabgraph.launch.graph.endpoints import plan
from krabgraph.launch.runtime.security import KeyFileError, create_keys
from krabgraph.msgs import JointCommand, VelocityCommand

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


class Brain(Node):
    """Stands in for the policy: a JointCommand every 10 ms."""

    out = Output(JointCommand)

    def on_activate(self) -> None:
        self.create_timer(0.01, lambda: self.out.publish(JointCommand()))


class Robot(Node):
    """Stands in for the robot side: counts the commands that reach it."""

    kind = "recorder"
    command = Input(JointCommand, queue=100)

    def on_configure(self) -> None:
        self.got = 0

    def on_command(self, _msg: JointCommand) -> None:
        self.got += 1


class TickOne(Node):
    out = Output(VelocityCommand, shared=True)

    def on_activate(self) -> None:
        self.create_timer(0.01, lambda: self.out.publish(VelocityCommand(vx=1.0)))


class TickTwo(TickOne):
    def on_activate(self) -> None:
        self.create_timer(0.01, lambda: self.out.publish(VelocityCommand(vx=2.0)))


class Senders(Node):
    kind = "recorder"
    cmd = Input(VelocityCommand, queue=100)

    def on_configure(self) -> None:
        self.seen: dict[float, int] = {}

    def on_cmd(self, msg: VelocityCommand) -> None:
        self.seen[msg.vx] = self.seen.get(msg.vx, 0) + 1


GRAPH = """\
name: {name}
clock: wall
processes: {{robot: {{host: 127.0.0.1}}, brain: {{host: 127.0.0.2}}}}
base_port: {port}
security:
  curve:
    secret_key: keys/graph.key_secret
    clients: keys
    keys: {{robot: keys/robot.key_secret, brain: {brain_key}}}
nodes:
  policy: {{class: "{mod}:Brain", process: brain, outputs: {{out: policy/joint_command}}}}
  robot: {{class: "{mod}:Robot", process: robot, inputs: {{command: policy/joint_command}}}}
"""


def graph_file(tmp_path: Path, file: str, name: str, port: int, brain_key: str = "keys/brain.key_secret") -> Path:
    path = tmp_path / file
    path.write_text(GRAPH.format(name=name, port=port, brain_key=brain_key, mod=__name__))
    return path


def start(ex: Executor) -> threading.Thread:
    thread = threading.Thread(target=ex.run, kwargs={"duration_s": 30.0, "handle_signals": False}, daemon=True)
    thread.start()
    return thread


def stop(ex: Executor, thread: threading.Thread) -> None:
    ex.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def wait_until(cond: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_only_the_publishing_process_key_feeds_the_robot(tmp_path, unique):
    """The brain's commands reach the robot; once the brain is gone, an impostor holding the robot's
    own (authorized) key binds the brain's endpoint and publishes: zero frames reach the robot; the
    legitimate brain, back, gets through again (so the robot was still reconnecting all along)."""
    keys = tmp_path / "keys"
    for name in ("graph", "robot", "brain"):
        create_keys(keys, name)
    stolen = tmp_path / "stolen"
    stolen.mkdir(mode=0o700)
    shutil.copy2(keys / "robot.key_secret", stolen / "robot.key_secret")  # 0600 kept
    name, port = unique("perm")
    graph = build_graph(load_graph(graph_file(tmp_path, "g.yaml", name, port)))
    # the impostor's copy of the graph: the brain's process, run with the robot's key
    impostor_graph = build_graph(load_graph(graph_file(tmp_path, "i.yaml", name, port, "stolen/robot.key_secret")))
    (exp,) = plan(graph).values()
    assert exp.tcp == f"tcp://127.0.0.2:{port}" and plan(impostor_graph)[(exp.topic, "brain")].tcp == exp.tcp

    robot = Executor(graph, process="robot")
    robot_thread = start(robot)
    sink = robot.nodes["robot"]
    try:
        brain = Executor(graph, process="brain")
        brain_thread = start(brain)
        try:
            assert wait_until(lambda: sink.got > 20, 5.0), f"the brain's commands did not arrive ({sink.got})"
        finally:
            stop(brain, brain_thread)
        time.sleep(0.2)  # whatever was in flight has arrived
        before = sink.got

        impostor = Executor(impostor_graph, process="brain")
        impostor_thread = start(impostor)
        try:
            sent = impostor.nodes["policy"].out
            assert wait_until(lambda: sent.count > 80, 5.0)  # it published for ~1 s on the brain's port
        finally:
            stop(impostor, impostor_thread)
        assert sink.got == before, f"{sink.got - before} impostor frames reached the robot"
        assert robot.nodes["robot"].command.dropped == 0

        brain = Executor(graph, process="brain")
        brain_thread = start(brain)
        try:
            assert wait_until(lambda: sink.got > before + 20, 5.0), "the brain, back, did not get through"
        finally:
            stop(brain, brain_thread)
    finally:
        stop(robot, robot_thread)
    assert robot.exit_code == 0 and not robot.failures


def test_a_topic_published_from_two_processes_pins_each_publisher(tmp_path, unique):
    """One SUB, two tcp publishers with different keys: each connection pins its own server key."""
    keys = tmp_path / "keys"
    for name in ("graph", "robot", "one", "two"):
        create_keys(keys, name)
    name, port = unique("perm2")
    path = tmp_path / "two.yaml"
    path.write_text(f"""\
name: {name}
clock: wall
processes: {{robot: {{host: 127.0.0.1}}, one: {{host: 127.0.0.2}}, two: {{host: 127.0.0.3}}}}
base_port: {port}
security:
  curve:
    secret_key: keys/graph.key_secret
    clients: keys
    keys: {{robot: keys/robot.key_secret, one: keys/one.key_secret, two: keys/two.key_secret}}
nodes:
  a: {{class: "{__name__}:TickOne", process: one, outputs: {{out: tick}}}}
  b: {{class: "{__name__}:TickTwo", process: two, outputs: {{out: tick}}}}
  sink: {{class: "{__name__}:Senders", process: robot, inputs: {{cmd: tick}}}}
""")
    graph = build_graph(load_graph(path))
    assert sorted(e.tcp for e in plan(graph).values()) == [f"tcp://127.0.0.2:{port}", f"tcp://127.0.0.3:{port + 1}"]
    runs = [(ex, start(ex)) for ex in (Executor(graph, process=p) for p in ("robot", "one", "two"))]
    seen = runs[0][0].nodes["sink"].seen
    try:
        assert wait_until(lambda: seen.get(1.0, 0) > 20 and seen.get(2.0, 0) > 20, 5.0), seen
    finally:
        for ex, thread in reversed(runs):
            stop(ex, thread)


def test_the_runtime_refuses_an_ipc_directory_opened_after_check(tmp_path, monkeypatch):
    """Validation checks the ipc directory; the executor checks it again right before it binds
    (``security.private_dir``), so one opened, or swapped for a symlink, meanwhile is refused in one line."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    graph = build_graph(load_graph("walk_split"))
    ipc = tmp_path / f"krabgraph-{os.getuid()}"
    ipc.mkdir(mode=0o700)
    os.chmod(ipc, 0o777)
    with pytest.raises(KeyFileError) as err:
        Executor(graph, process="robot")
    assert "mode 0777" in str(err.value) and f"chmod 700 {ipc}" in str(err.value) and "\n" not in str(err.value)
    ipc.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    ipc.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError, match="not a directory"):
        Executor(graph, process="robot")


def test_krabgraph_keys_makes_private_key_pairs(tmp_path, capsys):
    assert cli_main(["keys", str(tmp_path / "k"), "robot", "brain"]) == 0
    out = capsys.readouterr().out
    assert "robot.key_secret (secret, 0600)" in out and "brain.key (public)" in out
    assert (tmp_path / "k" / "brain.key_secret").stat().st_mode & 0o777 == 0o600
    assert cli_main(["keys", str(tmp_path / "k"), "robot"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "exists" in line
