"""The control channel (launch/runtime/control.py) and its verbs: `krabgraph topic pub`, `estop`,
`param get|set|list`, `node activate|deactivate`, and `ControlClient`, against graphs running in a
thread with their tap on an ephemeral loopback port (so the control channel's port is ephemeral too)."""

from __future__ import annotations

import io
import json
import logging
import threading
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
import zmq

from krabgraph.launch import Executor, GraphError, Input, Node, NodeHarness, Output, build_graph, graph_from_dict
from krabgraph.launch.api.errors import ParamError
from krabgraph.launch.api.ports import AnyMessage
from krabgraph.launch.cli.control_client import ControlClient, ControlError
from krabgraph.launch.cli.echo import echo
from krabgraph.launch.cli.introspect import TapClient, decode
from krabgraph.launch.cli.main import main
from krabgraph.launch.graph.endpoints import control_endpoint
from krabgraph.launch.runtime.control import MAX_PAYLOAD
from krabgraph.launch.runtime.security import create_keys
from krabgraph.msgs import RobotState, SafetyStatus, VelocityCommand
from krabgraph.nodes.demo import FakeRobot
from krabgraph.nodes.hal import Hal

from .conftest import wait_until

EPHEMERAL = "tcp://127.0.0.1:0"
WAIT_S = 10.0  # the longest any wait below takes (a loaded 2-core machine); none is a pass/fail threshold


class Listener(Node):
    """Keeps (vx, header seq, header stamp) of every VelocityCommand it receives."""

    cmd = Input(VelocityCommand, queue=100)

    def on_configure(self) -> None:
        self.got: list[tuple[float, int, int]] = []

    def on_cmd(self, msg: VelocityCommand) -> None:
        self.got.append((msg.vx, msg.header.seq, msg.header.stamp_ns))


class RawSource(Node):
    """An ``Output(AnyMessage)`` wired to topics in the graph (as a replay's is); publishes nothing itself."""

    kind = "source"
    out = Output(AnyMessage)


class StatusRobot(FakeRobot):
    """The fake robot with the HAL contract's own (dynamic) ``status_period_s``; FakeRobot fixes its own."""

    status_period_s = Hal.params()["status_period_s"]


ROBOT = {
    "robot": {"class": "fake_robot", "inputs": {"command": "safety/joint_command"}},
    "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
    "safety": {"class": "safety", "inputs": {"state": "robot/state", "command": "policy/joint_command"}},
}


def commander(thread: bool = False, rate_hz: float = 5.0) -> dict:
    """A scripted velocity source (vx 0.1 for 100 s, at ``rate_hz`` and once at activation) and a
    listener of its topic."""
    params = {"rate_hz": rate_hz, "schedule": [[100.0, 0.1, 0.0, 0.0]]}
    return {
        "cmd": {"class": "scripted_velocity", "params": params, "thread": thread},
        "listener": {"class": Listener, "inputs": {"cmd": "cmd/cmd_vel"}},
    }


@contextmanager
def running(nodes: dict, tap: object = EPHEMERAL, **extra):
    """The graph in a background thread (wall clock unless ``clock=``); yields (executor, the tap's endpoint)."""
    ex = Executor(build_graph(graph_from_dict({"clock": "wall", "tap": tap, "nodes": nodes, **extra})))
    thread = threading.Thread(target=ex.run, kwargs={"duration_s": 120.0, "handle_signals": False})
    thread.start()
    try:
        yield ex, ex.tap.endpoint
    finally:
        ex.stop()
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive()


def tapped(ex: Executor, topic: str) -> bool:
    """Whether a listener of the tap has subscribed to ``topic`` on the worker that publishes it."""
    return any(w.tap.flags.get(topic) is not None and w.tap.flags[topic].on for w in ex.workers)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def messages(endpoint: str, topic: str, until, timeout: float = WAIT_S) -> list:
    """Messages on ``topic`` from the tap until ``until(msg)`` holds (or ``timeout``)."""
    got = []
    with TapClient(endpoint) as tap:
        for _, frame in tap.frames(topic, duration_s=timeout):
            got.append(decode(frame))
            if until(got[-1]):
                break
    return got


# -- endpoints ------------------------------------------------------------------------------------
def test_control_endpoint_is_the_tap_port_plus_one_or_the_ipc_path_dot_control():
    assert control_endpoint("tcp://127.0.0.1:7447") == "tcp://127.0.0.1:7448"
    assert control_endpoint("tcp://[::1]:9000") == "tcp://[::1]:9001"
    assert control_endpoint(EPHEMERAL) == EPHEMERAL  # ephemeral tap, ephemeral control channel
    assert control_endpoint("ipc:///tmp/k/tap") == "ipc:///tmp/k/tap.control"
    with pytest.raises(ValueError, match="leaves no port for the control channel"):
        control_endpoint("tcp://127.0.0.1:65535")
    with pytest.raises(GraphError, match=r"listens on the tap's port \+ 1; use a port below 65535"):
        build_graph(graph_from_dict({"tap": "tcp://127.0.0.1:65535", "nodes": commander()}))


def test_the_description_names_the_ephemeral_control_endpoint_and_the_dynamic_params():
    with running(commander()) as (ex, endpoint), TapClient(endpoint) as tap:
        info = tap.graph_info()
        assert info["control"] == ex.control.endpoint and ex.control.endpoint.startswith("tcp://127.0.0.1:")
        assert not info["control"].endswith(":0")
        cmd = next(n for n in info["nodes"] if n["name"] == "cmd")
        assert cmd["dynamic"] == ["schedule", "heading_gain", "heading_max"]


# -- topic pub ------------------------------------------------------------------------------------
@pytest.mark.parametrize("thread", [False, True])  # the publisher on the main worker, or on its own thread
def test_topic_pub_once_reaches_the_subscriber_and_the_tap(capsys, thread):
    with running(commander(thread, rate_hz=0.001)) as (ex, endpoint):  # its one message is out before echo starts
        out = io.StringIO()
        args = Namespace(field="vx", no_arr=False, count=0, once=True, duration=WAIT_S, json=True)
        with TapClient(endpoint) as tap:
            reader = threading.Thread(target=echo, args=(tap, "cmd/cmd_vel", "", args, out))
            reader.start()
            assert wait_until(lambda: tapped(ex, "cmd/cmd_vel"))
            code, stdout, err = cli(capsys, "topic", "pub", "cmd/cmd_vel", "{vx: 7.5, source: cli}", "--once",
                                    "--tap", endpoint)  # fmt: skip
            listener = ex.nodes["listener"]
            assert wait_until(lambda: any(vx == 7.5 for vx, _, _ in listener.got))
            reader.join(timeout=WAIT_S + 2)
        assert out.getvalue() == "7.5\n"  # `topic echo cmd/cmd_vel --once --field vx --json` printed it
        assert code == 0, err
        lines = stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("published #1 on cmd/cmd_vel (VelocityCommand) via cmd.cmd_vel")
        seq = int(lines[0].split(", seq ")[1].split(",")[0])
        (ours,) = [(s, stamp) for vx, s, stamp in listener.got if vx == 7.5]
        assert ours[0] == seq and ours[1] > 0  # the publisher's own sequence, stamped by the graph clock
        seqs = [s for _, s, _ in listener.got]
        assert seqs == list(range(1, len(seqs) + 1))  # one sequence, no gap: it went out through cmd's port
        assert ex.nodes["cmd"].output_ports()["cmd_vel"].count == len(seqs)  # counted like the node's own


def test_topic_pub_times_sends_that_many_at_the_rate(capsys):
    with running(commander()) as (ex, endpoint):
        code, out, err = cli(capsys, "topic", "pub", "cmd/cmd_vel", "{vx: 2.5}", "--times", "3", "--rate", "20",
                             "--tap", endpoint)  # fmt: skip
        listener = ex.nodes["listener"]
        assert wait_until(lambda: sum(vx == 2.5 for vx, _, _ in listener.got) == 3)
    assert code == 0, err
    assert [line.split(" on ")[0] for line in out.splitlines()] == ["published #1", "published #2", "published #3"]
    assert sum(vx == 2.5 for vx, _, _ in listener.got) == 3


def test_topic_pub_on_an_external_topic_goes_through_its_endpoint(capsys):
    nodes = {"listener": {"class": Listener, "inputs": {"cmd": "ext/cmd"}}}
    topics = {"ext/cmd": {"type": "VelocityCommand", "external": True}}
    with running(nodes, topics=topics) as (ex, endpoint):
        code, out, err = cli(capsys, "topic", "pub", "ext/cmd", "{vx: 1.25}", "--once", "--tap", endpoint)
        assert wait_until(lambda: ex.nodes["listener"].got)
    assert code == 0, err
    assert "via external" in out
    assert ex.nodes["listener"].got[0][0] == 1.25 and ex.nodes["listener"].got[0][2] > 0  # stamped


def test_topic_pub_through_a_raw_output_port(capsys):
    nodes = {
        "raw": {"class": RawSource, "outputs": {"out": ["raw/cmd"]}},
        "listener": {"class": Listener, "inputs": {"cmd": "raw/cmd"}},
    }
    with running(nodes) as (ex, endpoint):
        code, out, err = cli(capsys, "topic", "pub", "raw/cmd", "{vx: 4.0}", "--times", "2", "--rate", "50",
                             "--tap", endpoint)  # fmt: skip
        assert wait_until(lambda: len(ex.nodes["listener"].got) == 2)
    assert code == 0, err
    assert "via raw.out" in out and [vx for vx, _, _ in ex.nodes["listener"].got] == [4.0, 4.0]
    assert ex.nodes["raw"].output_ports()["out"].count == 2


def test_refusals_are_one_line_each_and_the_graph_runs_on(capsys):
    with running({**ROBOT, **commander()}) as (ex, endpoint):
        code, out, err = cli(capsys, "topic", "pub", "safety/joint_command", "{}", "--once", "--tap", endpoint)
        assert (code, out) == (1, "")
        assert err == (
            "error: refusing to publish on topic 'safety/joint_command': HAL node 'robot' reads it (robot.command); "
            "robot commands come only from the safety node: publish a velocity command for the policy, or use "
            "`krabgraph estop`\n"
        )
        code, _, err = cli(capsys, "topic", "pub", "cmd/cmd_vl", "{vx: 1}", "--once", "--tap", endpoint)
        assert code == 1 and err.startswith("error: graph 'inline' has no topic 'cmd/cmd_vl'; topics: cmd/cmd_vel, ")
        code, _, err = cli(capsys, "topic", "pub", "cmd/cmd_vel", "{vx: [1,", "--once", "--tap", endpoint)
        assert code == 2 and err.startswith("error: topic pub: the message is not YAML (") and err.count("\n") == 1
        code, _, err = cli(capsys, "topic", "pub", "cmd/cmd_vel", "{vz: 1}", "--once", "--tap", endpoint)
        assert code == 2
        assert err == (
            "error: topic pub cmd/cmd_vel: VelocityCommand: VelocityCommand has no field 'vz'; its fields: header, "
            "vx, vy, yaw_rate, source\n"
        )
        code, _, err = cli(capsys, "topic", "pub", "cmd/cmd_vel", "{vx: fast}", "--once", "--tap", endpoint)
        assert code == 2 and "Failed to parse vx field" in err
        with ControlClient(endpoint) as client:
            with pytest.raises(ControlError) as exc:
                client.publish("robot/state", VelocityCommand(vx=1.0))  # another message type
            assert str(exc.value) == (
                "type mismatch on topic 'robot/state': it carries krabgraph.msgs.RobotState, the request sends "
                "krabgraph.msgs.VelocityCommand; send a RobotState"
            )
            with pytest.raises(ControlError, match=r"does not parse as krabgraph\.msgs\.VelocityCommand"):
                client.publish("cmd/cmd_vel", b"\xff\xff\xff garbage", "VelocityCommand")
            with pytest.raises(
                ControlError, match=r"has fields krabgraph.msgs.VelocityCommand does not have \(numbers 7\)"
            ):
                client.publish("cmd/cmd_vel", RobotState(robot_id="x").SerializeToString(), "VelocityCommand")
            with pytest.raises(
                ControlError, match=r"the graph reads krabgraph.msgs.VelocityCommand@1, the request sends @9"
            ):
                client.publish("cmd/cmd_vel", b"", "krabgraph.msgs.VelocityCommand@9")
            assert client.publish("cmd/cmd_vel", VelocityCommand(vx=3.0))["via"] == "cmd.cmd_vel"
        assert wait_until(lambda: any(vx == 3.0 for vx, _, _ in ex.nodes["listener"].got))
        assert all(n.lifecycle == "active" for n in ex.nodes.values()) and not ex.failures


# -- estop ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("clock", ["wall", {"mode": "sim", "real_time_factor": 1.0}])  # real time, lockstep
def test_estop_latches_the_safety_node_and_reset_clears_it(capsys, clock):
    with running(ROBOT, clock=clock) as (ex, endpoint):
        has_state = (SafetyStatus.SOFT_START, SafetyStatus.ACTIVE)
        assert wait_until(lambda: getattr(ex.nodes["safety"], "mode", None) in has_state)
        code, out, err = cli(capsys, "estop", "--reason", "test stop", "--tap", endpoint)
        assert (code, err) == (0, "")
        assert out == "e-stop engaged: safety is ESTOP (e-stop engaged: test stop)\n"
        got = messages(endpoint, "safety/status", lambda m: m.mode == SafetyStatus.ESTOP)
        assert got[-1].mode == SafetyStatus.ESTOP and got[-1].fault == SafetyStatus.FAULT_ESTOP
        assert got[-1].reason == "e-stop engaged: test stop"
        code, out, err = cli(capsys, "estop", "--reset", "--tap", endpoint)
        assert (code, err) == (0, "")
        assert out.startswith("e-stop reset: safety is SOFT_START (ramping to the default pose")
        got = messages(endpoint, "safety/status", lambda m: m.mode != SafetyStatus.ESTOP)
        assert got[-1].mode in (SafetyStatus.SOFT_START, SafetyStatus.ACTIVE)


def test_estop_without_a_safety_node_is_one_clear_error(capsys):
    with running(commander()) as (_, endpoint):
        code, out, err = cli(capsys, "estop", "--tap", endpoint)
    assert (code, out) == (1, "")
    assert err == (
        "error: graph 'inline' has no safety node in this process: nothing here can take an e-stop; stop the graph "
        "instead (Ctrl-C)\n"
    )


# -- parameters -----------------------------------------------------------------------------------
def test_param_set_changes_a_dynamic_param_on_the_nodes_thread(capsys):
    with running(commander(thread=True)) as (_, endpoint):
        code, out, err = cli(capsys, "param", "set", "cmd.schedule", "[[100, 0.25, 0, 0]]", "--tap", endpoint)
        assert (code, err) == (0, "")
        assert out == "cmd.schedule: [[100, 0.25, 0, 0]] (was [[100.0, 0.1, 0.0, 0.0]])\n"
        got = messages(endpoint, "cmd/cmd_vel", lambda m: m.vx == 0.25)
        assert got[-1].vx == 0.25  # the node publishes the new schedule
        code, out, _ = cli(capsys, "node", "info", "cmd", "--tap", endpoint)
        info = yaml.safe_load(out)
        assert code == 0 and info["params"]["schedule"] == [[100, 0.25, 0, 0]]
        assert info["dynamic"] == ["schedule", "heading_gain", "heading_max"]
        code, out, _ = cli(capsys, "param", "get", "cmd.schedule", "--tap", endpoint)
        assert code == 0 and yaml.safe_load(out) == [[100, 0.25, 0, 0]]
        code, out, _ = cli(capsys, "param", "list", "cmd", "--tap", endpoint)
        assert code == 0 and yaml.safe_load(out) == {
            "node": "cmd",
            "dynamic": {"schedule": [[100, 0.25, 0, 0]], "heading_gain": 0.0, "heading_max": 1.0},
            "fixed": {"rate_hz": 5.0},
        }


def test_param_set_refusals(capsys):
    with running({**ROBOT, **commander()}) as (ex, endpoint):
        code, _, err = cli(capsys, "param", "set", "cmd.rate_hz", "10", "--tap", endpoint)
        assert code == 1
        assert err == (
            "error: parameter 'rate_hz' of node 'cmd' (ScriptedVelocity) is fixed while the graph runs; dynamic ones: "
            "schedule, heading_gain, heading_max (set it in the graph file or with `launch --set`)\n"
        )
        code, _, err = cli(capsys, "param", "set", "safety.max_step", "10", "--tap", endpoint)  # a safety limit
        assert code == 1 and "is fixed while the graph runs; dynamic ones: none" in err
        code, _, err = cli(capsys, "param", "set", "cmd.heading_gain", "-1", "--tap", endpoint)
        assert code == 1 and err == "error: node 'cmd': parameter 'heading_gain' must be >= 0 1/s, got -1.0\n"
        code, _, err = cli(capsys, "param", "set", "cmd.schedule", "[[0, 1, 0, 0]]", "--tap", endpoint)
        assert code == 1 and "schedule[0] = [0, 1, 0, 0]; expected [duration_s > 0, vx, vy, yaw_rate]" in err
        code, _, err = cli(capsys, "param", "get", "cmd.nope", "--tap", endpoint)
        assert code == 1 and err.startswith("error: node 'cmd' (ScriptedVelocity) has no parameter 'nope'; parameters:")
        code, _, err = cli(capsys, "param", "get", "nobody.x", "--tap", endpoint)
        assert code == 1 and err.startswith("error: graph 'inline' has no node 'nobody'; nodes: ")
        code, _, err = cli(capsys, "param", "set", "cmd.schedule", "--tap", endpoint)
        assert code == 2 and "needs a VALUE" in err
        code, _, err = cli(capsys, "param", "get", "cmd", "--tap", endpoint)
        assert code == 2 and "expected NODE.PARAM" in err
        assert ex.nodes["cmd"].schedule == [[100.0, 0.1, 0.0, 0.0]]  # every refusal left it as it was


def test_a_hal_reschedules_its_status_line_when_status_period_s_changes(caplog):
    harness = NodeHarness(StatusRobot, name="robot", status_period_s=1.0).start()
    robot = harness.node
    lines = []
    with caplog.at_level(logging.INFO, logger="krabgraph.robot"):
        for period, seconds in ((None, 3.0), (0.25, 1.0), (0.0, 2.0)):
            if period is not None:
                assert robot.set_param("status_period_s", period) == period
            caplog.clear()
            harness.advance(seconds)
            lines.append(sum(r.getMessage().startswith("t=") for r in caplog.records))
    assert lines == [3, 4, 0]  # every 1 s, then every 0.25 s, then none
    assert len(robot.timers) == 1  # the control timer only: the status timer was cancelled, not left behind
    with pytest.raises(ParamError, match="must be >= 0"):
        robot.set_param("status_period_s", -1.0)
    assert robot.status_period_s == 0.0


# -- lifecycle ------------------------------------------------------------------------------------
def count_on(endpoint: str, topic: str, seconds: float) -> int:
    with TapClient(endpoint) as tap:
        return sum(1 for _ in tap.frames(topic, duration_s=seconds))


def test_node_deactivate_stops_its_output_and_activate_resumes_it(capsys):
    with running(ROBOT) as (ex, endpoint):
        assert count_on(endpoint, "policy/joint_command", 0.5) > 0
        code, out, err = cli(capsys, "node", "deactivate", "policy", "--tap", endpoint)
        assert (code, out, err) == (0, "policy: inactive (deactivated)\n", "")
        assert count_on(endpoint, "policy/joint_command", 0.5) == 0
        code, out, _ = cli(capsys, "node", "list", "--tap", endpoint)
        assert any(line.split()[:4] == ["policy", "HoldPose", "policy", "inactive"] for line in out.splitlines())
        code, _, err = cli(capsys, "node", "deactivate", "policy", "--tap", endpoint)
        assert code == 1 and err == "error: node 'policy' is inactive; deactivate needs it active\n"
        code, out, err = cli(capsys, "node", "activate", "policy", "--tap", endpoint)
        assert (code, out, err) == (0, "policy: active (activated)\n", "")
        assert count_on(endpoint, "policy/joint_command", 0.5) > 0
        for node, kind, left in (("safety", "safety", "guard"), ("robot", "hal", "driver")):
            code, _, err = cli(capsys, "node", "deactivate", node, "--tap", endpoint)
            assert code == 1
            assert err.startswith(
                f"error: refusing to deactivate {kind} node {node!r}: the robot would be left without its {left}; "
                "stop the graph instead"
            )
        assert ex.nodes["safety"].lifecycle == ex.nodes["robot"].lifecycle == "active"


# -- the socket itself ----------------------------------------------------------------------------
def test_malformed_and_oversized_requests_get_an_error_reply_and_the_graph_runs_on():
    with running(commander(thread=True)) as (ex, _):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(ex.control.endpoint)

        def ask(*frames: bytes) -> dict:
            sock.send_multipart([b"", *frames])
            assert sock.poll(int(WAIT_S * 1000)), "no reply"
            return json.loads(sock.recv_multipart()[-1])

        try:
            assert ask(b"not json") == {"ok": False, "error": "malformed request: not JSON (Expecting value: line 1 "
                                                              "column 1 (char 0))"}  # fmt: skip
            assert ask(b"[1, 2]")["error"] == 'malformed request: expected a JSON object with an "op"'
            assert ask(b"{}", b"a", b"b")["error"] == (
                "malformed request: 3 frames; a request is one JSON frame and at most one payload frame"
            )
            big = ask(json.dumps({"op": "pub", "topic": "cmd/cmd_vel", "type": "x", "id": 7}).encode(),
                      b"\0" * (MAX_PAYLOAD + 1))  # fmt: skip
            assert big == {"ok": False, "error": f"malformed request: payload of {MAX_PAYLOAD + 1} bytes, over "
                                                 f"{MAX_PAYLOAD}"}  # fmt: skip
            assert ask(b'{"op": "reboot", "id": 3}') == {
                "ok": False,
                "error": "malformed request: unknown op 'reboot'; ops: pub, estop, param_get, param_set, param_list, "
                "lifecycle",
                "id": 3,
            }
            assert ask(b'{"op": "param_get", "node": 5}')["error"] == (
                "malformed request: param_get needs 'node': a non-empty string"
            )
            ok = ask(b'{"op": "param_get", "node": "cmd", "param": "rate_hz", "id": "x"}')
            assert ok == {"ok": True, "node": "cmd", "param": "rate_hz", "value": 5.0, "dynamic": False, "id": "x"}
        finally:
            sock.close(0)
            ctx.term()
        assert ex.control.stats()["malformed"] == 6
        assert wait_until(lambda: len(ex.nodes["listener"].got) >= 2) and not ex.failures


class Blocker(Node):
    """A hung callback: its first timer tick blocks the node's thread until the test releases it."""

    blocked, release = threading.Event(), threading.Event()

    def on_activate(self) -> None:
        self.create_timer(0.01, self.tick)

    def tick(self) -> None:
        if not self.blocked.is_set():
            self.blocked.set()
            self.release.wait(WAIT_S)


def test_a_request_for_a_hung_node_thread_is_answered_with_an_error_and_nothing_done():
    with running({"blocker": {"class": Blocker, "thread": True}, **commander()}) as (ex, endpoint):
        assert Blocker.blocked.wait(WAIT_S)
        try:
            with ControlClient(endpoint, timeout_s=WAIT_S) as client:
                with pytest.raises(ControlError) as exc:
                    client.lifecycle("blocker", "deactivate")
                assert str(exc.value) == (
                    "deactivate 'blocker': the node's thread did not take the request within 2 s (a callback "
                    "blocking it?); nothing was done"
                )
                assert client.param_get("cmd", "rate_hz")["value"] == 5.0  # the main worker answers meanwhile
        finally:
            Blocker.release.set()
        assert wait_until(lambda: not ex.control.pending)
        assert ex.nodes["blocker"].lifecycle == "active"  # the expired request never ran


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_with_curve_keys_only_the_authorized_client_acts(tmp_path):
    keys, clients = tmp_path / "keys", tmp_path / "keys" / "clients"
    clients.mkdir(parents=True)
    server_public, server_secret = create_keys(keys, "server")
    client_public, client_secret = create_keys(keys, "client")
    (clients / "client.key").write_bytes(Path(client_public).read_bytes())
    _, stranger_secret = create_keys(keys, "stranger")
    tap = {"endpoint": EPHEMERAL, "secret_key": str(server_secret), "clients": str(clients)}
    with running(commander(), tap=tap) as (ex, endpoint):
        assert ex.control.auth is not None
        with ControlClient(endpoint, server_key=str(server_public), key=str(client_secret)) as ok:
            assert ok.param_set("cmd", "heading_gain", 0.5)["value"] == 0.5
        silence = rf"^no graph answered on {endpoint} within 0.5 s \(was it launched with --tap\?\)$"
        for key in ("", str(stranger_secret)):  # no keys; a key the graph does not know
            bad = ControlClient(endpoint, server_key=str(server_public) if key else "", key=key, timeout_s=0.5)
            with bad, pytest.raises(ControlError, match=silence):
                bad.param_set("cmd", "heading_gain", 0.9)
        assert ex.nodes["cmd"].heading_gain == 0.5


def test_no_graph_is_one_clear_error(capsys):
    code, out, err = cli(capsys, "estop", "--tap", "tcp://127.0.0.1:9", "--timeout", "0.3")
    assert (code, out) == (1, "")
    assert err == "error: no graph answered on tcp://127.0.0.1:9 within 0.3 s (was it launched with --tap?)\n"


def test_a_topic_of_another_process_is_refused_naming_it(unique):
    name, port = unique("ctl")
    spec = {
        "name": name,
        "base_port": port,
        "clock": "wall",
        "tap": EPHEMERAL,
        "processes": {"main": {}, "other": {}},
        "nodes": {
            "cmd": {"class": "scripted_velocity", "process": "other"},
            "listener": {"class": Listener, "inputs": {"cmd": "cmd/cmd_vel"}, "process": "main"},
        },
    }
    ex = Executor(build_graph(graph_from_dict(spec)), process="main")
    thread = threading.Thread(target=ex.run, kwargs={"duration_s": 60.0, "handle_signals": False})
    thread.start()
    try:
        with ControlClient(ex.tap.endpoint) as client:
            with pytest.raises(ControlError) as exc:
                client.publish("cmd/cmd_vel", VelocityCommand(vx=1.0))
            assert str(exc.value) == (
                "cannot publish on topic 'cmd/cmd_vel' from here: it is published in process 'other', not in this "
                "one ('main'); use that process's tap"
            )
            with pytest.raises(ControlError, match="node 'cmd' runs in process 'other', not in this one"):
                client.param_get("cmd", "rate_hz")
    finally:
        ex.stop()
        thread.join(timeout=WAIT_S)


def test_a_watch_only_tap_has_no_control_channel(capsys):
    """`tap: {control: false}`: the tap still shows the graph, and every act is refused with one line
    saying how to get a control channel; nothing listens on the control port."""
    tap = {"endpoint": EPHEMERAL, "control": False}
    with running({**ROBOT, **commander()}, tap=tap) as (ex, endpoint):
        assert ex.control is None
        with TapClient(endpoint) as client:
            assert "safety" in {n["name"] for n in client.graph_info()["nodes"]}
        code, _, err = cli(capsys, "estop", "--tap", endpoint, "--reason", "x")
        assert code == 1
        assert err.count("\n") == 1 and "watch-only" in err and "control: false" in err
        assert ex.nodes["safety"].estop_reason == ""
