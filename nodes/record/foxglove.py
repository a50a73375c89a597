"""Foxglove sees the robot: a running graph's topics as Foxglove channels, live or in an MCAP file.

``FoxgloveView`` is fed ``(topic, type name, payload bytes, header stamp)`` of each message a graph's
tap delivers (``krabgraph foxglove``, ``krabgraph record``) and logs, into an outlet (``outlets.py``):

- the topic itself: its protobuf payload unchanged, schema embedded (the recorder node's channels);
- ``/<topic>/values`` for a message type with float arrays: the same message as JSON with arrays as
  numbers (``values.py``), for the Plot panel (``/hal/state/values.joints.position[0]``);
- from the HAL's ``state``: ``/tf`` (``foxglove.FrameTransforms``: ``world -> base`` from the base
  pose, every body from its parent by forward kinematics of the robot description's MuJoCo model);
- ``/scene/robot`` (the robot's geoms on their body frames) and, for a MuJoCo HAL, ``/scene/terrain``
  (rebuilt from the HAL's running ``terrain``, ``terrain_params`` and ``seed`` in the tap's graph
  description): ``foxglove.SceneUpdate``, sent with the first message and again on ``send_scene``
  (the live server calls it for each new subscriber);
- from the HAL's ``height_scan``: ``/scene/height_scan`` (``foxglove.PointCloud``, world frame,
  placed with the state of the same stamp);
- a ``DepthImage`` topic also as ``/<topic>/image`` (``foxglove.RawImage``, 32FC1, metres).

Log times are wall clock (``WallClockBase``: graph time plus the offset at the first message); the
graph time stays in each raw message's header. What cannot be drawn (no HAL, a HAL that is not
MuJoCo's: no terrain) is said once, in one line.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError, Message

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.msgs import DepthImage, HeightScan, RobotState, to_numpy
from krabgraph.msgs.schema import message_class
from krabgraph.nodes.record import scene
from krabgraph.nodes.record.mcapio import WallClockBase
from krabgraph.nodes.record.outlets import LiveOutlet, Outlet, Sink
from krabgraph.nodes.record.values import has_arrays, json_schema, schema_name, values_topic
from krabgraph.nodes.record.wsguard import DEFAULT_ORIGINS, TOKEN_ENV, WsGuard, needs_token

log = logging.getLogger("krabgraph.foxglove")

TF_TOPIC = "/tf"
ROBOT_SCENE = "/scene/robot"
TERRAIN_SCENE = "/scene/terrain"
SCAN_TOPIC = "/scene/height_scan"
SCENE_TOPICS = (ROBOT_SCENE, TERRAIN_SCENE)
POSES_KEPT = 16  # base poses by stamp, for height scans that arrive before their state
SCANS_KEPT = 4  # height scans waiting for the state of their stamp


def image_topic(topic: str) -> str:
    return f"/{topic.lstrip('/')}/image"


@dataclass(frozen=True)
class HalInfo:
    """The graph's HAL as the tap describes it: node, class, running params, its state and scan topics."""

    node: str
    cls: str
    params: dict[str, Any]
    state_topic: str
    scan_topic: str

    @property
    def is_mujoco(self) -> bool:
        return "terrain" in self.params and "terrain_params" in self.params


def find_hals(info: dict) -> list[HalInfo]:
    """Every node of kind ``hal`` in a ``_tap/graph`` description, with the topics of its outputs."""
    published: dict[str, str] = {}
    for topic in info["topics"]:
        for ref in topic["publishers"]:
            published[ref] = topic["name"]
    return [
        HalInfo(
            n["name"],
            n["class"],
            dict(n.get("params") or {}),
            published.get(f"{n['name']}.state", ""),
            published.get(f"{n['name']}.height_scan", ""),
        )
        for n in info["nodes"]
        if n["kind"] == "hal"
    ]


class FoxgloveView:
    """Turns one graph's messages into Foxglove channels (see the module docstring).

    ``info``: the tap's graph description; ``to_data``: message -> plain data with arrays as numbers
    (``launch/cli/echo.py``'s); ``scene``: the robot and its world (``/tf``, ``/scene/*``); without it
    only the topics and their ``/values`` twins.
    """

    def __init__(
        self,
        outlet: Outlet,
        info: dict,
        *,
        to_data: Callable[[Message], dict],
        scene: bool = True,
        images: bool = True,
        time_base: WallClockBase | None = None,
    ):
        self.outlet = outlet
        self.to_data = to_data
        self.images = images
        self.time_base = time_base or WallClockBase()
        self.graph = info.get("graph", "")
        self.raw: dict[str, Sink | None] = {}
        self.values: dict[str, Sink | None] = {}
        self.derived: dict[str, Sink] = {}
        self.notes: list[str] = []
        self.skipped: dict[str, int] = {}
        self.last_log_time = 0
        self.scene_sent = False
        self.poses: deque[tuple[int, scene.Pose7]] = deque(maxlen=POSES_KEPT)
        self.scans: deque[HeightScan] = deque(maxlen=SCANS_KEPT)
        self.robot: scene.RobotModel | None = None
        self.terrain: Any = None
        self.classes: dict[str, type[Message]] = {}
        hals = find_hals(info) if scene else []
        self.hal = hals[0] if hals else None
        if scene:
            self._load_world(hals)

    # -- setup ----------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("%s", text)

    def _load_world(self, hals: list[HalInfo]) -> None:
        if not hals:
            self._note(f"graph {self.graph!r} has no HAL node: no /tf, robot model or terrain in the 3D panel")
            return
        hal = hals[0]
        if len(hals) > 1:
            self._note(f"graph {self.graph!r} has {len(hals)} HALs; the 3D panel shows {hal.node!r} only")
        self.robot = self._robot_model(hal)
        if hal.is_mujoco:
            self.terrain = self._terrain(hal)
        else:
            self._note(
                f"HAL {hal.node!r} ({hal.cls.rpartition(':')[2]}) is not a MuJoCo HAL: no /scene/terrain "
                "(only the simulator's terrain can be rebuilt); /tf and /scene/robot only"
            )

    def _robot_model(self, hal: HalInfo) -> scene.RobotModel | None:
        name = hal.params.get("robot")
        if not isinstance(name, str) or not name:
            self._note(f"HAL {hal.node!r} names no robot description: /tf has world -> base only, no /scene/robot")
            return None
        try:
            return scene.RobotModel(name)
        except (KrabgraphError, ValueError, OSError) as exc:  # RobotError, AssetError, SceneError
            self._note(f"robot {name!r} of HAL {hal.node!r}: {exc}: /tf has world -> base only, no /scene/robot")
            return None

    def _terrain(self, hal: HalInfo) -> Any:
        from krabgraph.nodes.mujoco.terrain import TerrainError, make_terrain

        params = hal.params
        try:
            return make_terrain(str(params["terrain"]), seed=int(params.get("seed", 0)), **params["terrain_params"])
        except (TerrainError, TypeError, ValueError) as exc:
            self._note(f"terrain of HAL {hal.node!r} cannot be rebuilt ({exc}): no /scene/terrain")
            return None

    # -- messages -------------------------------------------------------------------------------
    def handle(self, topic: str, type_name: str, payload: bytes, stamp_ns: int, msg: Message | None = None) -> None:
        """One message of ``topic`` (``type_name``: its full protobuf name); ``msg`` if already parsed."""
        log_time = self.time_base.log_time(stamp_ns)
        self.last_log_time = log_time
        if not self.scene_sent:
            self.send_scene()
        raw = self._raw(topic, type_name)
        if raw is None:
            return
        cls = self.classes[topic]
        if raw.wanted():
            raw.log(payload, log_time, stamp_ns, msg.header.seq if msg is not None else 0)
        try:
            if msg is None and self._needs_message(topic, cls):
                msg = cls.FromString(payload)
        except DecodeError:
            self._skip(f"{topic}: a payload that does not parse as {type_name}")
            return
        if msg is not None:
            self._derive(topic, msg, log_time)

    def _skip(self, why: str) -> None:
        if why not in self.skipped:
            log.warning("skipped %s (further ones are counted)", why)
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def _raw(self, topic: str, type_name: str) -> Sink | None:
        if topic not in self.raw:
            try:
                cls = message_class(type_name)
            except (KeyError, ImportError, AttributeError, ValueError):
                self._note(f"topic {topic}: type {type_name!r} is not a krabgraph message; not shown")
                self.raw[topic] = None
                return None
            self.classes[topic] = cls
            self.raw[topic] = self.outlet.protobuf(topic, cls)
            if not has_arrays(cls.DESCRIPTOR):
                self.values[topic] = None
        return self.raw[topic]

    def _needs_message(self, topic: str, cls: type[Message]) -> bool:
        """Whether anything derived from ``topic`` is wanted now (parsing costs only then)."""
        if topic not in self.values:  # the twin's schema comes from the first message
            return True
        twin = self.values[topic]
        if twin is not None and twin.wanted():
            return True
        hal = self.hal
        if hal is not None and topic in (hal.state_topic, hal.scan_topic):
            return True
        return cls is DepthImage and self.images

    def _derive(self, topic: str, msg: Message, log_time: int) -> None:
        twin = self._values_sink(topic, msg)
        if twin is not None and twin.wanted():
            self._log_values(twin, msg, log_time)
        hal = self.hal
        if hal is not None and topic == hal.state_topic and isinstance(msg, RobotState):
            self._state(msg, log_time)
        elif hal is not None and topic == hal.scan_topic and isinstance(msg, HeightScan):
            self.scans.append(msg)
            self._place_scans()
        if isinstance(msg, DepthImage) and self.images:
            self._image(topic, msg, log_time)

    def _values_sink(self, topic: str, msg: Message) -> Sink | None:
        if topic not in self.values:
            name = schema_name(msg.DESCRIPTOR)
            self.values[topic] = self.outlet.json(values_topic(topic), name, json_schema(msg), topic)
        return self.values[topic]

    def _log_values(self, twin: Sink, msg: Message, log_time: int) -> None:
        try:
            twin.log(self.to_data(msg), log_time)
        except ValueError as exc:  # a value JSON cannot hold
            self._skip(f"{twin.topic}: a message that is not JSON ({exc})")

    def _sink(self, topic: str, message_type: type, source: str) -> Sink:
        sink = self.derived.get(topic)
        if sink is None:
            sink = self.derived[topic] = self.outlet.typed(topic, message_type, source)
        return sink

    def _state(self, state: RobotState, log_time: int) -> None:
        from foxglove.messages import FrameTransforms

        pose = scene.base_pose(state)
        self.poses.append((state.header.stamp_ns, pose))
        tf = self._sink(TF_TOPIC, FrameTransforms, self.hal.state_topic)
        if tf.wanted():
            frames = self.robot.transforms(state) if self.robot is not None else []
            frames = frames or [scene.FrameSpec(scene.WORLD, state.header.frame_id or "base", *pose)]
            tf.log(scene.frame_transforms(frames, log_time), log_time)
        self._place_scans()

    def _place_scans(self) -> None:
        """Draw each waiting scan once the state of its stamp is known (the HAL publishes the scan
        first); a scan whose state never comes is drawn at the newest pose once two newer ones exist."""
        if not self.scans or not self.poses:
            return
        poses = dict(self.poses)
        newest = self.poses[-1][0]
        while self.scans:
            scan = self.scans[0]
            stamp = scan.header.stamp_ns
            pose = poses.get(stamp)
            if pose is None and sum(1 for s, _ in self.poses if s > stamp) < 2:
                return
            self.scans.popleft()
            self._scan(scan, pose or poses[newest])

    def _scan(self, scan: HeightScan, pose: scene.Pose7) -> None:
        from foxglove.messages import PointCloud

        sink = self._sink(SCAN_TOPIC, PointCloud, self.hal.scan_topic)
        if not sink.wanted():
            return
        try:
            points = scene.scan_points(scan, *pose)
        except (scene.ScanShapeError, ValueError) as exc:
            self._skip(f"{self.hal.scan_topic}: a height scan that does not fit its grid ({exc})")
            return
        log_time = self.time_base.log_time(scan.header.stamp_ns)
        sink.log(scene.point_cloud(points, log_time), log_time)

    def _image(self, topic: str, msg: DepthImage, log_time: int) -> None:
        from foxglove.messages import RawImage

        sink = self._sink(image_topic(topic), RawImage, topic)
        if sink.wanted():
            try:
                sink.log(_raw_image(msg, log_time), log_time)
            except ValueError as exc:
                self._skip(f"{topic}: a depth image that does not fit its size ({exc})")

    # -- the scene ------------------------------------------------------------------------------
    def send_scene(self, topic: str | None = None) -> None:
        """Log the robot model and the terrain (or only ``topic``'s), at the latest log time."""
        from foxglove.messages import SceneUpdate

        self.scene_sent = True
        stamp = self.last_log_time
        if self.robot is not None and topic in (None, ROBOT_SCENE):
            sink = self._sink(ROBOT_SCENE, SceneUpdate, self.hal.node)
            if sink.wanted():
                sink.log(scene.scene_update(scene.robot_entities(self.robot, stamp)), stamp)
        if self.terrain is not None and topic in (None, TERRAIN_SCENE):
            sink = self._sink(TERRAIN_SCENE, SceneUpdate, self.hal.node)
            if sink.wanted():
                sink.log(scene.scene_update(scene.terrain_entities(self.terrain, stamp)), stamp)

    def counts(self) -> dict[str, int]:
        """Messages logged per channel."""
        sinks = [s for s in (*self.raw.values(), *self.values.values(), *self.derived.values()) if s is not None]
        return {s.topic: s.count for s in sinks}


def _raw_image(msg: DepthImage, log_time: int):
    from foxglove.messages import RawImage

    depth = np.ascontiguousarray(to_numpy(msg.depth), dtype="<f4")
    if depth.size != int(msg.width) * int(msg.height):
        raise ValueError(f"{depth.size} pixels for {msg.width} x {msg.height}")
    return RawImage(
        timestamp=scene.timestamp(log_time),
        frame_id=msg.header.frame_id or "depth_camera",
        width=int(msg.width),
        height=int(msg.height),
        encoding="32FC1",
        step=int(msg.width) * 4,
        data=depth.tobytes(),
    )


# -- the live server ------------------------------------------------------------------------------
TOKEN_NEEDED = (
    "--host {host} is off loopback: the Foxglove server then needs a token; give --token or set "
    f"${TOKEN_ENV} (clients open ws://HOST:PORT/?token=...), or bind 127.0.0.1 and tunnel"
)


def server_token(host: str, token: str = "") -> str:
    """The token clients must give (``token`` or ``$KRABGRAPH_FOXGLOVE_TOKEN``); raises off loopback without one."""
    token = token or os.environ.get(TOKEN_ENV, "")
    if needs_token(host) and not token:
        raise KrabgraphError(TOKEN_NEEDED.format(host=host))
    return token


class LiveServer:
    """A foxglove-sdk WebSocket server on an ephemeral loopback port behind a ``WsGuard`` on ``host:port``.

    ``listener``: a ``foxglove.websocket.ServerListener`` (subscriptions, client channels);
    ``client_publish``: advertise the ``clientPublish`` capability (JSON client channels), else clients
    cannot send anything. Off loopback a token is required (``token`` or ``$KRABGRAPH_FOXGLOVE_TOKEN``).
    """

    def __init__(
        self,
        outlet: LiveOutlet,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str = "",
        origins: tuple[str, ...] = DEFAULT_ORIGINS,
        listener: Any = None,
        client_publish: bool = False,
        name: str = "krabgraph",
    ):
        import foxglove
        from foxglove.websocket import Capability

        self.token = server_token(host, token)
        self.client_publish = client_publish
        self.server = foxglove.start_server(
            name=name,
            host="127.0.0.1",
            port=0,
            context=outlet.context,
            server_listener=listener,
            capabilities=[Capability.ClientPublish] if client_publish else [],
            supported_encodings=["json"] if client_publish else None,
        )
        try:
            self.guard = WsGuard(host, port, self.server.port, origins=origins, token=self.token)
        except KrabgraphError:
            self.server.stop()
            raise
        self.host, self.port = host, self.guard.bound_port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}" + ("/?token=..." if self.token else "")

    def stop(self) -> None:
        self.guard.stop()
        self.server.stop()


__all__ = [
    "DEFAULT_ORIGINS",
    "SCAN_TOPIC",
    "SCENE_TOPICS",
    "TF_TOPIC",
    "TOKEN_ENV",
    "FoxgloveView",
    "HalInfo",
    "LiveServer",
    "WsGuard",
    "find_hals",
    "image_topic",
    "server_token",
    "values_topic",
]
