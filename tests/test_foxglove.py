"""``krabgraph foxglove``: the one observation server, reading a running graph through its tap.

A MuJoCo walk graph on stairs (lockstep sim clock, paced to real time) runs with its tap in a
``krabgraph launch`` subprocess; ``krabgraph foxglove`` runs in another; a WebSocket client speaks
Foxglove's ws-protocol (``foxglove.websocket.v1``) and decodes every message with the schema the
server advertised (protobuf from the FileDescriptorSet, JSON). Expected values come from MuJoCo, the
terrain generator and the raw messages, computed here. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import mujoco
import numpy as np
import pytest
import websockets
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from websockets.exceptions import InvalidStatus

from krabgraph.launch.cli.introspect import TapClient, decode
from krabgraph.msgs import RobotState, VelocityCommand, to_numpy
from krabgraph.nodes.mujoco.scene import build_scene
from krabgraph.nodes.mujoco.terrain import make_terrain
from krabgraph.nodes.record.controls import ClientChannel, Controls, parse_estop, parse_twist
from krabgraph.nodes.robots import load_robot

from .conftest import STAIRS, walk_on_stairs_with_tap
from .test_tap import free_port

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
WAIT_S = 30.0  # the longest any single wait may take on a loaded 2-core machine


# -- the graph and the server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tap() -> Iterator[str]:
    """A lockstep walk on stairs with its tap; its endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with walk_on_stairs_with_tap(endpoint):
        yield endpoint


class Server:
    """``krabgraph foxglove`` in a subprocess on an ephemeral port; stdout and stderr gathered."""

    def __init__(self, endpoint: str, *args: str):
        argv = [sys.executable, "-m", "krabgraph", "foxglove", "--tap", endpoint, "--port", "0", "--timeout", "30"]
        self.proc = subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.port = int(self.wait_for(r"Foxglove server on ws://127\.0\.0\.1:(\d+)").group(1))

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out) + list(self.err):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not any(r.is_alive() for r in self.readers):
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}:\n{''.join(self.out + self.err)[-4000:]}")

    def stop(self) -> tuple[str, str]:
        """SIGTERM (a clean stop: the summary is printed); stdout and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for reader in self.readers:
            reader.join(timeout=5)
        return "".join(self.out), "".join(self.err)


@pytest.fixture(scope="module")
def server(tap: str) -> Iterator[Server]:
    srv = Server(tap)
    yield srv
    out, err = srv.stop()
    assert srv.proc.returncode == 0, err[-3000:]
    assert "refused" not in out  # nothing was refused on the plain server


# -- the WebSocket client -----------------------------------------------------------------------------
@dataclass
class Session:
    """What one client saw: the server info, the advertised channels, the messages per topic."""

    info: dict = field(default_factory=dict)
    channels: dict[str, dict] = field(default_factory=dict)
    messages: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)  # topic -> (log time, payload)


async def watch(url: str, need: dict[str, int], timeout: float = WAIT_S, **kw) -> Session:
    """Connect, wait for the channels of ``need``, subscribe, collect until each has its count."""
    seen = Session()
    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=10, **kw) as ws:
        deadline = time.monotonic() + timeout
        while not all(t in seen.channels for t in need):
            _text(seen, await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01)))
        topics = list(need)
        subs = [{"id": i, "channelId": seen.channels[t]["id"]} for i, t in enumerate(topics)]
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
        seen.messages = {t: [] for t in topics}
        while any(len(seen.messages[t]) < n for t, n in need.items()):
            frame = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
            if isinstance(frame, bytes) and frame[0] == 0x01:  # message data
                sub_id, log_time = struct.unpack_from("<IQ", frame, 1)
                seen.messages[topics[sub_id]].append((log_time, frame[13:]))
            elif isinstance(frame, str):
                _text(seen, frame)
    return seen


def _text(seen: Session, frame: str | bytes) -> None:
    if isinstance(frame, bytes):
        return
    doc = json.loads(frame)
    if doc["op"] == "serverInfo":
        seen.info = doc
    elif doc["op"] == "advertise":
        seen.channels.update({c["topic"]: c for c in doc["channels"]})


def schema_class(channel: dict):
    """The message class of a protobuf channel, from the FileDescriptorSet the server advertised."""
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf"
    files = FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def decoded(seen: Session, topic: str) -> list[tuple[int, object]]:
    """(log time, message) of ``topic``, decoded with its advertised schema."""
    channel = seen.channels[topic]
    if channel["encoding"] == "json":
        return [(t, json.loads(p)) for t, p in seen.messages[topic]]
    cls = schema_class(channel)
    return [(t, cls.FromString(p)) for t, p in seen.messages[topic]]


@pytest.fixture(scope="module")
def session(server: Server) -> Session:
    need = {"hal/state": 20, "/hal/state/values": 20, "/tf": 20, "/scene/height_scan": 10,
            "/scene/robot": 1, "/scene/terrain": 1}  # fmt: skip
    return asyncio.run(watch(f"ws://127.0.0.1:{server.port}", need))


# -- expected values, computed here ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def go2():
    """The Go2's MuJoCo model (the HAL's): its bodies, geoms and a forward-kinematics helper."""
    scene = build_scene(load_robot("go2"))
    return scene


def body_name(model, body: int) -> str:
    return mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body)


def world_positions(transforms: list) -> dict[str, np.ndarray]:
    """Each frame's origin in ``world``, composing the FrameTransforms chain."""
    parent = {t.child_frame_id: t for t in transforms}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {"world": (np.zeros(3), np.array([1.0, 0, 0, 0]))}

    def pose(frame: str, depth: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if frame not in out:
            assert depth < 64 and frame in parent, f"frame {frame!r} does not reach world"
            t = parent[frame]
            p0, q0 = pose(t.parent_frame_id, depth + 1)
            q = np.array([t.rotation.w, t.rotation.x, t.rotation.y, t.rotation.z])
            rotated = np.zeros(3)
            mujoco.mju_rotVecQuat(rotated, np.array([t.translation.x, t.translation.y, t.translation.z]), q0)
            q1 = np.zeros(4)
            mujoco.mju_mulQuat(q1, q0, q)
            out[frame] = (p0 + rotated, q1)
        return out[frame]

    return {frame: pose(frame)[0] for frame in parent}


# -- the plain server (no --teleop) -------------------------------------------------------------------
def test_no_client_publish_without_teleop_and_every_channel_advertised(session: Session):
    assert session.info["name"] == "krabgraph walk"
    assert "clientPublish" not in session.info["capabilities"]
    channels = session.channels
    assert channels["hal/state"]["schemaName"] == "krabgraph.msgs.RobotState"
    assert channels["/tf"]["schemaName"] == "foxglove.FrameTransforms"
    assert channels["/scene/robot"]["schemaName"] == channels["/scene/terrain"]["schemaName"] == "foxglove.SceneUpdate"
    assert channels["/scene/height_scan"]["schemaName"] == "foxglove.PointCloud"
    assert (channels["/hal/state/values"]["encoding"], channels["/hal/state/values"]["schemaEncoding"]) == (
        "json",
        "jsonschema",
    )
    # a twin for every type with float arrays, none for those without
    assert {"/hal/height_scan/values", "/safety/joint_command/values", "/policy/joint_command/values"} <= set(channels)
    assert "/command/cmd_vel/values" not in channels and "/safety/status/values" not in channels


def test_tf_reaches_every_body_and_matches_forward_kinematics(session: Session, go2):
    model = go2.model
    states = {t: m for t, m in decoded(session, "hal/state")}
    pairs = [(states[t], tf) for t, tf in decoded(session, "/tf") if t in states]
    assert len(pairs) >= 10  # /tf and hal/state share log times: one FrameTransforms per state
    bodies = {body_name(model, int(b)) for b in go2.robot_bodies}
    assert len(bodies) == 13
    data = mujoco.MjData(model)
    for raw, tf in pairs[-5:]:
        state = RobotState.FromString(raw.SerializeToString())
        positions = world_positions(list(tf.transforms))
        assert bodies <= set(positions)  # every robot body reached from world
        base = next(t for t in tf.transforms if t.child_frame_id == "base")
        assert base.parent_frame_id == "world"
        p, q = state.base.position, state.base.orientation
        assert (base.translation.x, base.translation.y, base.translation.z) == pytest.approx((p.x, p.y, p.z), abs=1e-9)
        assert (base.rotation.w, base.rotation.x, base.rotation.y, base.rotation.z) == pytest.approx(
            (q.w, q.x, q.y, q.z), abs=1e-9
        )
        # MuJoCo's own forward kinematics of this state: every body where /tf puts it
        b = go2.base_qpos_adr
        data.qpos[b : b + 7] = (p.x, p.y, p.z, q.w, q.x, q.y, q.z)
        for name, value in zip(state.joints.name, to_numpy(state.joints.position), strict=True):
            data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]] = value
        mujoco.mj_kinematics(model, data)
        for body in go2.robot_bodies:
            np.testing.assert_allclose(positions[body_name(model, int(body))], data.xpos[body], atol=1e-6)


def test_robot_scene_holds_the_models_geoms_on_their_bodies(session: Session, go2):
    model = go2.model
    ((_, update),) = decoded(session, "/scene/robot")[:1]
    on_robot = [g for g in range(model.ngeom) if model.geom_bodyid[g] in set(go2.robot_bodies.tolist())]
    kinds = [mujoco.mjtGeom(int(model.geom_type[g])) for g in on_robot]
    n = {k: kinds.count(k) for k in set(kinds)}
    G = mujoco.mjtGeom
    entities = list(update.entities)
    assert {e.frame_id for e in entities} == {body_name(model, int(model.geom_bodyid[g])) for g in on_robot}
    assert all(e.frame_locked and e.id == f"robot/{e.frame_id}" for e in entities)
    assert sum(len(e.cubes) for e in entities) == n.get(G.mjGEOM_BOX, 0)
    assert sum(len(e.cylinders) for e in entities) == n.get(G.mjGEOM_CYLINDER, 0) + n.get(G.mjGEOM_CAPSULE, 0)
    spheres = n.get(G.mjGEOM_SPHERE, 0) + n.get(G.mjGEOM_ELLIPSOID, 0) + 2 * n.get(G.mjGEOM_CAPSULE, 0)
    assert sum(len(e.spheres) for e in entities) == spheres
    assert sum(len(e.triangles) for e in entities) == n[G.mjGEOM_MESH] == 33  # the Go2's visual meshes
    # the trunk's collision box, at its size, on the base
    trunk = next(g for g in on_robot if model.geom_type[g] == G.mjGEOM_BOX and model.geom_bodyid[g] == go2.base_body)
    (base,) = [e for e in entities if e.frame_id == "base"]
    sizes = [(c.size.x, c.size.y, c.size.z) for c in base.cubes]
    assert tuple(2 * model.geom_size[trunk]) == pytest.approx(sizes[0])
    for mesh in (t for e in entities for t in e.triangles):
        assert len(mesh.indices) % 3 == 0 and max(mesh.indices) < len(mesh.points) and len(mesh.points) > 20


def test_terrain_scene_is_the_hals_terrain(session: Session):
    terrain = make_terrain("stairs", seed=0, **STAIRS)
    ((_, update),) = decoded(session, "/scene/terrain")[:1]
    entities = {e.id: e for e in update.entities}
    assert set(entities) == {"terrain/boxes", "terrain/ground"}
    got = sorted(
        (c.pose.position.x, c.pose.position.y, c.pose.position.z, c.size.x, c.size.y, c.size.z)
        for c in entities["terrain/boxes"].cubes
    )
    want = sorted((*b.center, *(2 * h for h in b.half_size)) for b in terrain.boxes)
    assert len(got) == len(want) == 12  # 6 steps up, the landing, 5 down
    np.testing.assert_allclose(got, want, atol=1e-9)
    (ground,) = entities["terrain/ground"].cubes
    assert ground.pose.position.z + ground.size.z / 2 == pytest.approx(terrain.floor_z)


def test_height_scan_points_lie_on_the_terrain(session: Session):
    terrain = make_terrain("stairs", seed=0, **STAIRS)
    clouds = [m for _, m in decoded(session, "/scene/height_scan")]
    assert all(c.frame_id == "world" and c.point_stride == 12 for c in clouds)
    on_steps = 0
    for cloud in clouds:
        xyz = np.frombuffer(cloud.data, dtype="<f4").reshape(-1, 3).astype(float)
        assert len(xyz) == 11 * 17
        near = [terrain.height_at(xyz[:, 0] + dx, xyz[:, 1] + dy) for dx in (-5e-3, 0, 5e-3) for dy in (-5e-3, 0, 5e-3)]
        error = np.min(np.abs(np.stack(near) - xyz[:, 2]), axis=0)  # a point within 5 mm of a step edge: either side
        assert error.max() < 0.01, f"height-scan points off the terrain by up to {error.max():.3f} m"
        on_steps += int(np.sum(xyz[:, 2] > 0.02))
    assert on_steps > 0  # the scan reaches the stairs: the check covers step tops, not only the floor


def test_values_twin_holds_the_raw_messages_numbers(session: Session):
    raw = {t: RobotState.FromString(m.SerializeToString()) for t, m in decoded(session, "hal/state")}
    twins = [(t, doc) for t, doc in decoded(session, "/hal/state/values") if t in raw]
    assert len(twins) >= 10
    for t, doc in twins:
        joints = doc["joints"]
        assert joints["name"] == list(raw[t].joints.name) and len(joints["position"]) == 12
        assert joints["position"] == to_numpy(raw[t].joints.position).tolist()  # plain numbers, exactly
        assert doc["header"]["stamp_ns"] == raw[t].header.stamp_ns
    schema = json.loads(session.channels["/hal/state/values"]["schema"])
    assert schema["properties"]["joints"]["properties"]["position"] == {"type": "array", "items": {"type": "number"}}
    force = schema["properties"]["contacts"]["properties"]["force"]  # [4, 3]: nested lists
    assert force == {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}


def test_a_new_subscriber_gets_the_scene_again(server: Server):
    need = {"/scene/robot": 1, "/scene/terrain": 1}
    first = asyncio.run(watch(f"ws://127.0.0.1:{server.port}", need))
    second = asyncio.run(watch(f"ws://127.0.0.1:{server.port}", need))
    for seen in (first, second):
        (update,) = [m for _, m in decoded(seen, "/scene/robot")[:1]]
        assert len(update.entities) == 13


# -- teleop, e-stop, refusals and the guard ---------------------------------------------------------------
def status_of(url: str, **kw) -> int:
    """The HTTP status a refused handshake got (0 if it was accepted)."""

    async def first() -> None:
        async with websockets.connect(url, subprotocols=SUBPROTOCOLS, open_timeout=10, **kw) as ws:
            await asyncio.wait_for(ws.recv(), 10)

    try:
        asyncio.run(first())
    except InvalidStatus as exc:
        return exc.response.status_code
    return 0


def twist(vx: float, vy: float, yaw: float) -> bytes:
    return json.dumps({"linear": {"x": vx, "y": vy, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": yaw}}).encode()


async def teleop_session(url: str) -> dict:
    """Advertise the teleop topic and an unknown one, drive for 1 s, then go silent for the deadman."""
    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=10) as ws:
        info = json.loads(await asyncio.wait_for(ws.recv(), 10))
        channels = [
            {"id": 1, "topic": "/command/cmd_vel", "encoding": "json", "schemaName": "geometry_msgs/Twist"},
            {"id": 2, "topic": "/danger", "encoding": "json", "schemaName": "geometry_msgs/Twist"},
        ]
        await ws.send(json.dumps({"op": "advertise", "channels": channels}))
        await asyncio.sleep(0.3)
        await ws.send(b"\x01" + struct.pack("<I", 2) + twist(5.0, 0.0, 0.0))  # refused: not the teleop topic
        for _ in range(10):
            await ws.send(b"\x01" + struct.pack("<I", 1) + twist(2.0, -0.1, -3.0))
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # silent: the deadman sends one zero
        return info


def foxglove_commands(endpoint: str, out: list[VelocityCommand], ready: threading.Event) -> None:
    """The teleop's commands on the graph's topic, until the deadman's zero follows a drive (or ``WAIT_S``)."""
    with TapClient(endpoint) as client:
        client.subscribe("command/cmd_vel")  # held before the teleop starts
        ready.set()
        for _, frame in client.frames("command/cmd_vel", duration_s=WAIT_S):
            msg = decode(frame)
            if msg.source == "foxglove":
                out.append(msg)
                if len(out) > 1 and (msg.vx, msg.vy, msg.yaw_rate) == (0.0, 0.0, 0.0):
                    return


def test_teleop_is_clamped_forwarded_and_stopped_by_the_deadman(tap: str):
    srv = Server(tap, "--teleop", "command/cmd_vel", "--max-speed", "0.3", "--max-yaw-rate", "0.5", "--token", "s3cret")
    try:
        url = f"ws://127.0.0.1:{srv.port}"
        assert status_of(url) == 401  # the guard: no token
        assert status_of(url + "/?token=s3cret", origin="https://evil.example") == 403  # a foreign web page
        got: list[VelocityCommand] = []
        ready = threading.Event()
        reader = threading.Thread(target=foxglove_commands, args=(tap, got, ready))
        reader.start()
        assert ready.wait(WAIT_S)
        time.sleep(0.3)  # the subscription reaches the graph
        info = asyncio.run(teleop_session(url + "/?token=s3cret"))
        reader.join(timeout=WAIT_S)
        assert not reader.is_alive()
    finally:
        out, err = srv.stop()
    assert "clientPublish" in info["capabilities"] and info.get("supportedEncodings") == ["json"]
    driven = [m for m in got if (m.vx, m.vy, m.yaw_rate) != (0.0, 0.0, 0.0)]
    assert driven and all((m.vx, m.vy, m.yaw_rate) == (0.3, -0.1, -0.5) for m in driven)  # clamped, in the graph
    assert got[-1].vx == got[-1].vy == got[-1].yaw_rate == 0.0  # the deadman's zero came last
    assert sum(1 for m in got if m.vx == 0.0) == 1
    assert "teleop:" in out and "(1 deadman zeros)" in out
    assert "topic /danger (1)" in out and "data (1)" in out  # the unknown channel once, its message counted
    assert re.search(r"refused client \d+'s channel '/danger' \(accepted: /command/cmd_vel, /estop\)", err)
    assert err.count("refused client") == 1


def test_estop_from_a_client_channel_engages_and_resets(tap: str):
    srv = Server(tap, "--estop")

    async def send(engage: bool) -> None:
        url = f"ws://127.0.0.1:{srv.port}"
        async with websockets.connect(url, subprotocols=SUBPROTOCOLS, max_size=None, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            channel = {"id": 7, "topic": "/estop", "encoding": "json", "schemaName": "krabgraph/EStop"}
            await ws.send(json.dumps({"op": "advertise", "channels": [channel]}))
            await asyncio.sleep(0.3)
            await ws.send(b"\x01" + struct.pack("<I", 7) + json.dumps({"engage": engage, "reason": "test"}).encode())
            await asyncio.sleep(0.5)

    try:
        asyncio.run(send(True))
        srv.wait_for(r"e-stop engaged \(test\)", WAIT_S)
        modes = []
        with TapClient(tap) as client:
            for _, frame in client.frames("safety/status", duration_s=WAIT_S):
                modes.append(decode(frame).mode)
                if len(modes) == 2:
                    break
        assert modes == [5, 5]  # ESTOP, latched
        asyncio.run(send(False))
        srv.wait_for(r"e-stop reset \(test\)", WAIT_S)
    finally:
        out, _ = srv.stop()
    assert "2 e-stops" in out


# -- the gate's logic, without a server ---------------------------------------------------------------
class FakeController:
    def __init__(self, fail: bool = False):
        self.published: list[tuple[str, VelocityCommand]] = []
        self.estops: list[tuple[str, bool]] = []
        self.fail = fail

    def publish(self, topic, msg, type_name=None):
        if self.fail:
            from krabgraph.launch.api.errors import KrabgraphError

            raise KrabgraphError("no graph answered")
        self.published.append((topic, msg))
        return {"ok": True}

    def estop(self, reason="", reset=False):
        self.estops.append((reason, reset))
        return {"ok": True, "safety": [{"node": "safety", "mode": "ESTOP"}]}


def test_controls_clamp_coalesce_deadman_and_refuse():
    now = [100.0]
    fake = FakeController()
    controls = Controls(fake, teleop_topic="command/cmd_vel", max_speed=0.5, max_yaw_rate=1.0, clock=lambda: now[0])
    controls.handle([("advertise", ClientChannel(1, 1, "/command/cmd_vel", "json")),
                     ("advertise", ClientChannel(1, 2, "/other", "json")),
                     ("advertise", ClientChannel(1, 3, "estop", "cdr"))])  # fmt: skip
    assert controls.channels == {(1, 1): "teleop"}
    assert controls.refused == {"topic /other": 1, "encoding cdr": 1}
    controls.handle([("data", 1, 1, twist(0.1, 0, 0)), ("data", 1, 1, twist(3.0, -3.0, 9.0)), ("data", 1, 2, b"{}")])
    assert len(fake.published) == 1  # the newest of one pass only
    topic, cmd = fake.published[0]
    assert topic == "command/cmd_vel" and (cmd.vx, cmd.vy, cmd.yaw_rate, cmd.source) == (0.5, -0.5, 1.0, "foxglove")
    assert controls.refused["data"] == 1
    now[0] += 0.4
    controls.tick()
    assert len(fake.published) == 1  # not silent long enough
    now[0] += 0.2
    controls.tick()
    controls.tick()
    assert [(m.vx, m.vy, m.yaw_rate) for _, m in fake.published[1:]] == [(0.0, 0.0, 0.0)]  # one zero
    controls.handle([("data", 1, 1, b"not json"), ("data", 1, 1, twist(float("nan"), 0, 0))])
    controls.handle([("data", 1, 1, b'{"linear": {"x": true}}')])
    assert controls.refused["teleop message"] == 2 and len(fake.published) == 2
    controls.handle([("unadvertise", 1, 1), ("data", 1, 1, twist(0.1, 0, 0))])
    assert controls.refused["data"] == 2


def test_controls_estop_and_failures_are_one_line_each(caplog):
    fake = FakeController(fail=True)
    controls = Controls(fake, estop=True)
    assert controls.accepted == ["/estop"]
    controls.handle([("advertise", ClientChannel(4, 1, "/estop", "json"))])
    controls.handle([("data", 4, 1, b'{"engage": true, "reason": "hand on the button"}')])
    controls.handle([("data", 4, 1, b'{"engage": "yes"}'), ("data", 4, 1, b'{"engage": false}')])
    assert fake.estops == [("hand on the button", False), ("from Foxglove", True)]
    assert controls.refused == {"estop message": 1}
    teleop = Controls(fake, teleop_topic="command/cmd_vel")
    teleop.handle([("advertise", ClientChannel(1, 1, "command/cmd_vel", "json"))])
    for _ in range(3):
        teleop.handle([("data", 1, 1, twist(0.2, 0, 0))])
    assert teleop.sent == 0 and teleop.failed == {"no graph answered": 3}
    assert sum("not delivered" in r.getMessage() for r in caplog.records) == 1
    assert parse_twist(b'{"linear": {"x": 1}}') == (1.0, 0.0, 0.0)
    assert parse_estop(b'{"engage": false}') == (False, "")
