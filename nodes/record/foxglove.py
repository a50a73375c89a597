"""Live view: a Foxglove WebSocket server streaming graph topics (foxglove-sdk)."""

from __future__ import annotations

import numpy as np

from krabgraph.launch import Input, Node, Param
from krabgraph.launch.ports import AnyMessage, RawMessage
from krabgraph.launch.tap import is_loopback
from krabgraph.msgs import DepthImage, to_numpy


class FoxgloveBridge(Node):
    """Streams the topics wired to ``topics`` to Foxglove over WebSocket, with protobuf schemas.

    ``inputs: {topics: [hal/state, policy/joint_command, safety/status, hal/height_scan, ...]}``
    (globs allowed). Each topic becomes a channel (encoding ``protobuf``, the message's schema
    embedded) when its first message arrives; a message costs nothing but a check until a client
    subscribes to its channel. Log time is the header stamp (graph time, ns). ``DepthImage``
    topics are also sent as ``foxglove.RawImage`` (32FC1, metres) on ``<topic>/image`` for the
    Image panel. Binds ``host`` (loopback by default; the server has no authentication) and
    ``port`` (0: any free port, see ``bound_port``); in Foxglove open ``ws://host:port``. Works
    beside the MuJoCo HAL's viewer and video options: it only reads topics.
    """

    kind = "bridge"
    host = Param(str, "127.0.0.1", "address to listen on (the server has no authentication)")
    port = Param(int, 8765, "TCP port; 0 = any free port", ge=0, le=65535)
    images = Param(bool, True, "also send DepthImage topics as foxglove.RawImage on <topic>/image")

    topics = Input(AnyMessage, queue=1000, doc="the topics to stream (a list, globs allowed)")

    def on_configure(self) -> None:
        import foxglove

        if not is_loopback(f"tcp://{self.host}:{self.port}"):
            self.log.warning("Foxglove server on %s is reachable from the network, without authentication", self.host)
        self._context = foxglove.Context()
        self._server = foxglove.start_server(
            name=f"krabgraph {self.name}", host=self.host, port=self.port, context=self._context
        )
        self.bound_port = self._server.port
        self._channels: dict[str, object] = {}
        self._images: dict[str, object] = {}
        self.log.info("Foxglove live view on ws://%s:%d", self.host, self.bound_port)

    def on_topics(self, msg: RawMessage) -> None:
        channel = self._channels.get(msg.topic)
        if channel is None:
            channel = self._advertise(msg)
        if channel.has_sinks():
            channel.log(msg.payload, log_time=msg.header.stamp_ns)
        image = self._images.get(msg.topic)
        if image is not None and image.has_sinks():
            image.log(_raw_image(msg.decode()), log_time=msg.header.stamp_ns)

    def _advertise(self, msg: RawMessage):
        from foxglove import Channel, Schema
        from foxglove.channels import RawImageChannel
        from mcap_protobuf.schema import build_file_descriptor_set

        cls = msg.resolve()
        schema = Schema(
            name=cls.DESCRIPTOR.full_name, encoding="protobuf", data=build_file_descriptor_set(cls).SerializeToString()
        )
        channel = Channel(msg.topic, schema=schema, message_encoding="protobuf", context=self._context)
        self._channels[msg.topic] = channel
        if self.images and cls is DepthImage:
            self._images[msg.topic] = RawImageChannel(f"{msg.topic}/image", context=self._context)
        return channel

    def on_shutdown(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop()
            self._server = None


def _raw_image(msg: DepthImage):
    from foxglove.messages import RawImage, Timestamp

    depth = np.ascontiguousarray(to_numpy(msg.depth), dtype="<f4")
    stamp = msg.header.stamp_ns
    return RawImage(
        timestamp=Timestamp(sec=stamp // 1_000_000_000, nsec=stamp % 1_000_000_000),
        frame_id=msg.header.frame_id or "depth_camera",
        width=int(msg.width),
        height=int(msg.height),
        encoding="32FC1",
        step=int(msg.width) * 4,
        data=depth.tobytes(),
    )


__all__ = ["FoxgloveBridge"]
