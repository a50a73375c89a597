"""A Python client of a running graph's control channel (``launch/runtime/control.py``): publish a
message, e-stop, read and change dynamic parameters, activate and deactivate nodes.

::

    with ControlClient("tcp://127.0.0.1:7447") as graph:
        graph.publish("command/cmd_vel", VelocityCommand(vx=0.3))
        graph.estop("operator stop")

The client finds the control channel through the graph's tap (the ``control`` endpoint of its
``_tap/graph`` description; CURVE keys: the tap's), then sends each request on a DEALER socket and
waits for its answer. Every method returns the graph's reply (``{"ok": True, ...}``) or raises
``ControlError`` with the graph's one-line reason, or "no graph answered on ENDPOINT within T s".
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import zmq
import zmq.auth
from google.protobuf.message import Message

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.declaration import DEFAULT_TAP

MAX_REPLY = 16 << 20  # bytes of a reply; a larger frame disconnects the graph (ZeroMQ's MAXMSGSIZE)
MSGS_PACKAGE = "krabgraph.msgs."


class ControlError(KrabgraphError):
    """The graph refused a request (its reason is the message), or no graph answered."""


class ControlClient:
    """Requests to the control channel of the graph whose tap listens on ``tap_endpoint``.

    ``server_key``/``key``: CURVE certificate files (the graph's public one, your secret one), as for
    ``krabgraph topic``; ``timeout_s``: how long finding the graph, and each answer, may take.
    """

    def __init__(self, tap_endpoint: str = DEFAULT_TAP, *, server_key: str = "", key: str = "", timeout_s: float = 3.0):
        self.tap_endpoint = tap_endpoint
        self.server_key, self.key = server_key, key
        self.timeout_s = timeout_s
        self.endpoint = ""  # the control channel's, once found
        self.info: dict[str, Any] | None = None  # the graph's description, as the tap sent it
        self._curve = _load_keys(server_key, key)
        self._ids = itertools.count(1)
        self.context = zmq.Context()
        self.sock: zmq.Socket | None = None

    # -- the graph's answers ------------------------------------------------------------------
    def publish(self, topic: str, msg: Message | bytes, type_name: str | None = None) -> dict[str, Any]:
        """Publish ``msg`` (a message, or its serialized bytes with ``type_name``: ``VelocityCommand``,
        ``krabgraph.msgs.VelocityCommand`` or the wire tag ``...@1``) on ``topic``, through the topic's
        own publishing path in the graph. The reply names the path (``via``) and the ``seq``/``stamp_ns`` given."""
        if isinstance(msg, Message):
            full = msg.DESCRIPTOR.full_name
            if type_name is not None and _full_name(type_name).partition("@")[0] != full:
                raise ControlError(f"publish({topic!r}): type_name {type_name!r} but the message is a {full}")
            payload, type_name = msg.SerializeToString(), type_name or full
        elif isinstance(msg, bytes | bytearray | memoryview):
            if not type_name:
                raise ControlError(f"publish({topic!r}, bytes) needs type_name (e.g. 'krabgraph.msgs.VelocityCommand')")
            payload = bytes(msg)
        else:
            raise ControlError(f"publish({topic!r}): expected a protobuf message or bytes, got {type(msg).__name__}")
        return self.request({"op": "pub", "topic": topic, "type": _full_name(type_name)}, payload)

    def estop(self, reason: str = "", reset: bool = False) -> dict[str, Any]:
        """Engage the e-stop of every safety node (latched), or with ``reset`` clear it. The reply lists
        ``safety``: each node with its ``mode`` and ``reason`` afterwards."""
        return self.request({"op": "estop", "engage": not reset, "reason": reason})

    def param_get(self, node: str, param: str) -> dict[str, Any]:
        """``{"value": ..., "dynamic": bool, ...}``: the running value of ``node.param``."""
        return self.request({"op": "param_get", "node": node, "param": param})

    def param_set(self, node: str, param: str, value: Any) -> dict[str, Any]:
        """Change a dynamic parameter; ``{"value": stored, "old": previous, ...}``."""
        return self.request({"op": "param_set", "node": node, "param": param, "value": value})

    def param_list(self, node: str) -> dict[str, Any]:
        """``{"params": {name: value}, "dynamic": [names], ...}`` of ``node``."""
        return self.request({"op": "param_list", "node": node})

    def lifecycle(self, node: str, transition: str) -> dict[str, Any]:
        """``transition``: ``activate`` or ``deactivate``; the reply has the node's ``state`` afterwards."""
        return self.request({"op": "lifecycle", "node": node, "transition": transition})

    # -- transport ------------------------------------------------------------------------------
    def graph_info(self) -> dict[str, Any]:
        """The graph's description from its tap (read once; topics, nodes, the control endpoint)."""
        if self.info is None:
            from krabgraph.launch.cli.introspect import TapClient, TapClientError

            try:
                with TapClient(
                    self.tap_endpoint, server_key=self.server_key, key=self.key, timeout_s=self.timeout_s
                ) as tap:
                    self.info = tap.graph_info()
            except TapClientError as exc:
                if str(exc).startswith("no graph answered"):
                    raise ControlError(self._silence()) from None
                raise ControlError(str(exc)) from None
        return self.info

    def request(self, request: dict[str, Any], payload: bytes | None = None) -> dict[str, Any]:
        """Send one request, wait for its answer; raises ``ControlError`` on a refusal or silence."""
        sock = self._socket()
        request = {**request, "id": next(self._ids)}
        frames = [b"", json.dumps(request).encode()] + ([payload] if payload is not None else [])
        deadline = time.monotonic() + self.timeout_s
        if not _wait(sock, zmq.POLLOUT, deadline):  # no connection (IMMEDIATE): nothing was queued
            silence = self._silence()
            self._forget()
            raise ControlError(silence)
        sock.send_multipart(frames, zmq.NOBLOCK)
        while _wait(sock, zmq.POLLIN, deadline):
            reply = _parse_reply(sock.recv_multipart(), self.endpoint)
            if reply.get("id") != request["id"]:
                continue  # the late answer to an earlier request that timed out
            if not reply.get("ok"):
                raise ControlError(str(reply.get("error") or "the graph refused the request (no reason given)"))
            return reply
        silence = self._silence()
        self._forget()
        raise ControlError(silence)

    def _forget(self) -> None:
        """After a silence, find the graph again next time (it may have been restarted on another port)."""
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock, self.info, self.endpoint = None, None, ""

    def _socket(self) -> zmq.Socket:
        if self.sock is not None:
            return self.sock
        self.endpoint = _control_address(self.tap_endpoint, self.graph_info().get("control"))
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 0
        sock.immediate = True  # queue only to a completed (authenticated) connection
        sock.maxmsgsize = MAX_REPLY
        if self._curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
        sock.connect(self.endpoint)
        self.sock = sock
        return sock

    def _silence(self) -> str:
        where = (
            self.tap_endpoint if not self.endpoint else f"{self.endpoint} (the control channel of {self.tap_endpoint})"
        )
        return f"no graph answered on {where} within {self.timeout_s:g} s (was it launched with --tap?)"

    def close(self) -> None:
        self._forget()
        self.context.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _full_name(type_name: str) -> str:
    """``VelocityCommand`` -> ``krabgraph.msgs.VelocityCommand`` (a full name or tag stays as it is)."""
    name = type_name.partition("@")[0]
    return type_name if "." in name else MSGS_PACKAGE + type_name


def _load_keys(server_key: str, key: str) -> tuple[bytes, bytes, bytes] | None:
    """(server public, own public, own secret) from certificate files, or None without CURVE."""
    if not (server_key or key):
        return None
    if not (server_key and key):
        raise ControlError("CURVE needs both --server-key (the graph's public key) and --key (yours)")
    try:
        server_public, _ = zmq.auth.load_certificate(server_key)
        public, secret = zmq.auth.load_certificate(key)
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read a CURVE certificate: {exc}") from None
    if secret is None:
        raise ControlError(f"{key} holds no secret key")
    return server_public, public, secret


def _control_address(tap_endpoint: str, described: Any) -> str:
    """Where to reach the control channel: the port the graph names, on the host this client reached
    the tap at (a graph listening on every interface names 0.0.0.0)."""
    if not isinstance(described, str) or not described:
        raise ControlError(
            f"the graph on {tap_endpoint} has no control channel: its tap is watch-only (`tap: {{control: false}}` in "
            "its graph file); relaunch it without that to act on it"
        )
    if described.startswith("tcp://") and tap_endpoint.startswith("tcp://"):
        host = tap_endpoint.removeprefix("tcp://").rpartition(":")[0]
        return f"tcp://{host}:{described.rpartition(':')[2]}"
    return described


def _wait(sock: zmq.Socket, event: int, deadline: float) -> bool:
    left = deadline - time.monotonic()
    return left > 0 and bool(sock.poll(max(1, int(left * 1000)), event))


def _parse_reply(frames: list[bytes], endpoint: str) -> dict[str, Any]:
    try:
        reply = json.loads(frames[-1])
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        raise ControlError(f"the graph on {endpoint} sent an answer that is not a JSON object")
    return reply
