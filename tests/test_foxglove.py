"""The Foxglove live view: a WebSocket client on loopback sees the channels and gets the messages."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time

import numpy as np
import websockets
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from krabgraph.launch import Node, Output
from krabgraph.msgs import DepthImage, RobotState, set_array

from .test_tap import running, wait_for

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


class Camera(Node):
    """A 58 x 87 depth image every 0.1 s, value = image count."""

    kind = "sensor"
    depth = Output(DepthImage)

    def on_activate(self) -> None:
        self.k = 0
        self.create_timer(0.1, self.tick)

    def tick(self) -> None:
        self.k += 1
        msg = DepthImage(height=58, width=87)
        set_array(msg.depth, np.full((58, 87), float(self.k), dtype=np.float32))
        self.depth.publish(msg)


async def session(port: int, topics: list[str], per_topic: int) -> tuple[dict, dict[str, list[bytes]]]:
    """Connect, read the advertised channels, subscribe to ``topics``, collect messages."""
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS) as ws:
        channels: dict[str, dict] = {}
        info = None
        while not all(t in channels for t in topics):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["op"] == "serverInfo":
                info = frame
            elif frame["op"] == "advertise":
                channels.update({c["topic"]: c for c in frame["channels"]})
        subs = [{"id": i, "channelId": channels[t]["id"]} for i, t in enumerate(topics)]
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
        got: dict[str, list[bytes]] = {t: [] for t in topics}
        while any(len(v) < per_topic for v in got.values()):
            frame = await asyncio.wait_for(ws.recv(), 5)
            if isinstance(frame, bytes) and frame[0] == 0x01:  # message data
                sub_id, log_time = struct.unpack_from("<IQ", frame, 1)
                got[topics[sub_id]].append((log_time, frame[13:]))
        return {"info": info, "channels": channels}, got


def test_live_view_advertises_protobuf_channels_and_streams(no_thread_leak):
    nodes = {
        "robot": {"class": "fake_robot", "inputs": {"command": "policy/joint_command"}, "unsafe_direct_command": True},
        "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
        "cam": {"class": Camera},
        "live": {"class": "foxglove", "params": {"port": 0}, "inputs": {"topics": ["robot/*", "policy/*", "cam/*"]}},
    }
    with running(nodes, None) as ex:
        assert wait_for(lambda: hasattr(ex.nodes["live"], "bound_port"))
        port = ex.nodes["live"].bound_port
        assert port > 0
        meta, got = asyncio.run(session(port, ["robot/state", "cam/depth", "cam/depth/image"], per_topic=3))
    assert meta["info"]["name"] == "krabgraph live"
    channels = meta["channels"]
    assert channels["robot/state"]["encoding"] == "protobuf"
    assert channels["robot/state"]["schemaName"] == "krabgraph.msgs.RobotState"
    assert channels["robot/state"]["schemaEncoding"] == "protobuf"
    assert channels["policy/joint_command"]["schemaName"] == "krabgraph.msgs.JointCommand"
    assert channels["cam/depth/image"]["schemaName"] == "foxglove.RawImage"
    offsets = set()
    for log_time, payload in got["robot/state"]:
        state = RobotState.FromString(payload)
        assert state.header.stamp_ns > 0 and len(state.joints.name) == 12
        offsets.add(log_time - state.header.stamp_ns)
    assert len(offsets) == 1  # wall-clock log times: one offset from graph time for the whole run
    assert abs(got["robot/state"][0][0] - time.time_ns()) < 120e9  # today, not 1970
    depth = DepthImage.FromString(got["cam/depth"][-1][1])
    assert depth.width == 87 and depth.height == 58
    # The image channel carries the same pixels as 32FC1, decoded with the schema it advertised.
    image = schema_class(channels["cam/depth/image"]).FromString(got["cam/depth/image"][-1][1])
    assert (image.encoding, image.width, image.height, image.step) == ("32FC1", 87, 58, 87 * 4)
    pixels = np.frombuffer(image.data, dtype="<f4")
    assert pixels.size == 58 * 87 and np.all(pixels == pixels[0]) and pixels[0] >= 1


def schema_class(channel: dict):
    """The message class of a channel, built from the FileDescriptorSet the server advertised."""
    files = FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def test_nothing_is_sent_while_no_client_subscribes():
    nodes = {
        "robot": {"class": "fake_robot", "inputs": {"command": "policy/joint_command"}, "unsafe_direct_command": True},
        "policy": {"class": "hold_pose", "inputs": {"state": "robot/state"}},
        "live": {"class": "foxglove", "params": {"port": 0}, "inputs": {"topics": ["robot/state"]}},
    }
    with running(nodes, None) as ex:
        time.sleep(0.3)
    live = ex.nodes["live"]
    assert live.topics.count > 5 and not live._channels["robot/state"].has_sinks()
