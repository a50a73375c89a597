"""Live view: a Foxglove WebSocket server streaming graph topics (foxglove-sdk), behind a guard.

The foxglove-sdk server itself has no authentication and no Origin check, so it listens on an
ephemeral loopback port and the node's ``host:port`` is a small front (``WsGuard``, a thread with an
asyncio loop) that reads each connection's HTTP upgrade request, refuses it with one HTTP status
(403: a browser page of a foreign origin; 401: a missing or wrong token; 503: too many clients), and
otherwise splices bytes both ways unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from krabgraph.launch import Input, Node, Param
from krabgraph.launch.api.checks import ParamProblem
from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.endpoints import is_loopback
from krabgraph.msgs import DepthImage, to_numpy
from krabgraph.nodes.record.mcapio import WallClockBase

TOKEN_ENV = "KRABGRAPH_FOXGLOVE_TOKEN"
DEFAULT_ORIGINS = ("https://app.foxglove.dev",)
MAX_HEAD = 16 << 10  # bytes of an HTTP upgrade request
HEAD_TIMEOUT_S = 5.0
MAX_CLIENTS = 16
CHUNK = 1 << 16

log = logging.getLogger("krabgraph.foxglove")


def _needs_token(host: str) -> bool:
    return not is_loopback(f"tcp://{host}:1")


class WsGuard:
    """A TCP front for a WebSocket server on loopback: checks Origin and token, then splices bytes.

    ``origins``: allowed ``Origin`` values (globs); a request without ``Origin`` (not a browser) is
    let in. ``token``: required when set, as ``?token=...`` in the URL or ``Authorization: Bearer ...``.
    """

    def __init__(self, host: str, port: int, inner_port: int, *, origins: Sequence[str], token: str = ""):
        self.host, self.port, self.inner_port = host, port, inner_port
        self.origins, self.token = tuple(origins), token
        self.refused: dict[str, int] = {}
        self.active = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(started,), name="krabgraph-foxglove", daemon=True)
        self._thread.start()
        started.wait(10.0)
        if self._error is not None:
            raise KrabgraphError(f"Foxglove live view: cannot listen on {host}:{port}: {self._error}")
        self.bound_port = self._server.sockets[0].getsockname()[1] if self._server else 0

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
        except OSError as exc:
            self._error = exc
            started.set()
            return
        started.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(close)
            self._thread.join(timeout=2.0)

    def _refuse_reason(self, head: bytes) -> tuple[int, str] | None:
        """(HTTP status, why) if the upgrade request must be refused, else None."""
        try:
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return 400, "not an HTTP request"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        origin = headers.get("origin")
        if origin is not None and not any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.origins):
            return 403, f"origin {origin[:100]!r} is not allowed (allowed_origins: {', '.join(self.origins) or 'none'})"
        if self.token:
            given = parse_qs(urlsplit(target).query).get("token", [""])[0]
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = given or auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, "missing or wrong token"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            if self.active >= MAX_CLIENTS:
                await self._refuse(writer, 503, f"{MAX_CLIENTS} clients connected already", peer)
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                await self._refuse(writer, 400, "no complete HTTP request", peer)
                return
            if len(head) > MAX_HEAD:
                await self._refuse(writer, 431, "request head too large", peer)
                return
            reason = self._refuse_reason(head)
            if reason is not None:
                await self._refuse(writer, *reason, peer)
                return
            self.active += 1
            try:
                inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", self.inner_port)
                inner_writer.write(head)
                await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
            finally:
                self.active -= 1
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, why: str, peer: Any) -> None:
        kind = why.split(" ", 1)[0]
        if kind not in self.refused:
            log.warning("Foxglove live view: refused a connection from %s: %s (further ones are counted)", peer, why)
        self.refused[kind] = self.refused.get(kind, 0) + 1
        text = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 431: "Too Large", 503: "Busy"}[status]
        writer.write(f"HTTP/1.1 {status} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(writer.drain(), 1.0)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class FoxgloveBridge(Node):
    """Streams the topics wired to ``topics`` to Foxglove over WebSocket, with protobuf schemas.

    ``inputs: {topics: [hal/state, policy/joint_command, safety/status, hal/height_scan, ...]}``
    (globs allowed). Each topic becomes a channel (encoding ``protobuf``, the message's schema
    embedded) when its first message arrives; a message costs nothing but a check until a client
    subscribes to its channel. Log time is the header stamp (graph time, ns). ``DepthImage``
    topics are also sent as ``foxglove.RawImage`` (32FC1, metres) on ``<topic>/image`` for the
    Image panel. Binds ``host`` (loopback by default) and ``port`` (0: any free port, see
    ``bound_port``); in Foxglove open ``ws://host:port``. A browser page may connect only from
    ``allowed_origins`` (the Foxglove web app by default; clients that send no ``Origin``, such as
    the desktop app and scripts, are let in). Off loopback it needs a token (``token`` or the
    ``KRABGRAPH_FOXGLOVE_TOKEN`` environment variable) and refuses to start without one; clients
    then open ``ws://host:port/?token=...``. Works beside the MuJoCo HAL's viewer and video
    options: it only reads topics.
    """

    kind = "bridge"
    host = Param(str, "127.0.0.1", "address to listen on; off loopback a token is required")
    port = Param(int, 8765, "TCP port; 0 = any free port", ge=0, le=65535)
    images = Param(bool, True, "also send DepthImage topics as foxglove.RawImage on <topic>/image")
    token = Param(str, "", f"clients must give it (?token=...); default: ${TOKEN_ENV}; required off loopback")
    allowed_origins = Param(
        list, list(DEFAULT_ORIGINS), "browser origins allowed to connect (globs); no Origin header: allowed", item=str
    )

    topics = Input(AnyMessage, queue=1000, doc="the topics to stream (a list, globs allowed)")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        host = params.get("host", "127.0.0.1")
        if _needs_token(host) and not (params.get("token") or os.environ.get(TOKEN_ENV)):
            return [ParamProblem("host", _TOKEN_NEEDED.format(host=host))]
        return []

    def on_configure(self) -> None:
        import foxglove

        token = self.token or os.environ.get(TOKEN_ENV, "")
        if _needs_token(self.host) and not token:
            raise KrabgraphError(f"node {self.name!r}: " + _TOKEN_NEEDED.format(host=self.host))
        self._context = foxglove.Context()
        self._server = foxglove.start_server(
            name=f"krabgraph {self.name}", host="127.0.0.1", port=0, context=self._context
        )
        try:
            self._guard = WsGuard(self.host, self.port, self._server.port, origins=self.allowed_origins, token=token)
        except KrabgraphError:
            self._server.stop()
            self._server = None
            raise
        self.bound_port = self._guard.bound_port
        self._channels: dict[str, object] = {}
        self._images: dict[str, object] = {}
        self._time_base = WallClockBase()
        self.log.info(
            "Foxglove live view on ws://%s:%d%s", self.host, self.bound_port, " (token required)" if token else ""
        )

    def on_topics(self, msg: RawMessage) -> None:
        channel = self._channels.get(msg.topic)
        if channel is None:
            channel = self._advertise(msg)
        log_time = self._time_base.log_time(msg.header.stamp_ns)  # wall clock; graph time stays in the header
        if channel.has_sinks():
            channel.log(msg.payload, log_time=log_time)
        image = self._images.get(msg.topic)
        if image is not None and image.has_sinks():
            image.log(_raw_image(msg.decode()), log_time=log_time)

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
        guard = getattr(self, "_guard", None)
        if guard is not None:
            guard.stop()
            self._guard = None
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop()
            self._server = None


_TOKEN_NEEDED = (
    "host {host} is off loopback: the live view then needs a token; set params.token or "
    f"${TOKEN_ENV} (clients open ws://HOST:PORT/?token=...), or bind 127.0.0.1 and tunnel"
)


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


__all__ = ["FoxgloveBridge", "WsGuard"]
