"""What a Foxglove client may send to a running graph: Teleop twists and the e-stop, nothing else.

The WebSocket server calls ``ClientEvents`` on its own threads; the events wait in a bounded queue
(a flooding client loses the excess, counted) until the main loop hands them to ``Controls``, which
owns the graph's control client (``launch/cli/control_client.py``: ``publish`` and ``estop``) so every
request leaves from one thread.

- **Teleop** (``teleop_topic`` set): a JSON client channel on that topic (with or without a leading
  ``/``), messages as Foxglove's Teleop panel sends them, ``{"linear": {"x", "y", "z"}, "angular":
  {"x", "y", "z"}}`` (geometry_msgs/Twist), become ``VelocityCommand(vx=linear.x, vy=linear.y,
  yaw_rate=angular.z, source="foxglove")``, each clamped to ``max_speed`` / ``max_yaw_rate``. Of the
  twists that arrive between two loop passes only the newest is sent. A teleop that moved the robot
  and then sends nothing for ``deadman_s`` gets one zero command.
- **E-stop** (``estop`` on): a JSON client channel ``/estop``, ``{"engage": true|false, "reason": "..."}``,
  engages or resets the graph's e-stop.
- Anything else (another topic, an encoding other than JSON, a message that does not parse, numbers
  that are not finite) is refused: one log line per kind, then counted in ``refused``.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from foxglove.websocket import ServerListener

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.msgs import VelocityCommand

log = logging.getLogger("krabgraph.foxglove")

ESTOP_TOPIC = "/estop"
DEADMAN_S = 0.5
EVENT_QUEUE = 1024  # client events waiting for the main loop; a flood beyond that is dropped (counted)
MAX_MESSAGE = 64 << 10  # bytes of a client message; a larger one is refused


class Controller(Protocol):
    """The graph's control client (``ControlClient``): what ``Controls`` uses of it."""

    def publish(self, topic: str, msg: Any, type_name: str | None = None) -> dict: ...

    def estop(self, reason: str = "", reset: bool = False) -> dict: ...


@dataclass(frozen=True)
class ClientChannel:
    """A channel a client advertised: (client id, channel id), its topic and encoding."""

    client: int
    channel: int
    topic: str
    encoding: str


class ClientEvents(ServerListener):
    """foxglove-sdk's server callbacks, queued (bounded) for the main loop as tuples:
    ``("subscribe", topic)``, ``("advertise", ClientChannel)``, ``("unadvertise", client, channel)``,
    ``("data", client, channel, bytes)``."""

    def __init__(self, maxsize: int = EVENT_QUEUE):
        self.queue: queue.Queue[tuple] = queue.Queue(maxsize)
        self.dropped = 0

    def _put(self, event: tuple) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def on_subscribe(self, client: Any, channel: Any) -> None:
        self._put(("subscribe", channel.topic))

    def on_client_advertise(self, client: Any, channel: Any) -> None:
        self._put(("advertise", ClientChannel(client.id, channel.id, channel.topic, channel.encoding)))

    def on_client_unadvertise(self, client: Any, client_channel_id: int) -> None:
        self._put(("unadvertise", client.id, client_channel_id))

    def on_message_data(self, client: Any, client_channel_id: int, data: bytes) -> None:
        self._put(("data", client.id, client_channel_id, bytes(data[: MAX_MESSAGE + 1])))

    def drain(self) -> list[tuple]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out


class Refused(ValueError):
    """A client message that is not what its channel accepts."""


def parse_twist(data: bytes) -> tuple[float, float, float]:
    """(linear.x, linear.y, angular.z) of a JSON Twist; missing axes are 0; raises ``Refused``."""
    doc = _json_object(data, "a Twist")
    out = []
    for part, axis in (("linear", "x"), ("linear", "y"), ("angular", "z")):
        section = doc.get(part, {})
        if not isinstance(section, dict):
            raise Refused(f"{part} is not an object")
        value = section.get(axis, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Refused(f"{part}.{axis} is {value!r}, not a finite number")
        out.append(float(value))
    return out[0], out[1], out[2]


def parse_estop(data: bytes) -> tuple[bool, str]:
    """(engage, reason) of ``{"engage": bool, "reason": str}``; raises ``Refused``."""
    doc = _json_object(data, '{"engage": true|false, "reason": "..."}')
    engage, reason = doc.get("engage"), doc.get("reason", "")
    if not isinstance(engage, bool):
        raise Refused(f"engage is {engage!r}, not true or false")
    if not isinstance(reason, str):
        raise Refused(f"reason is {reason!r}, not a string")
    return engage, reason[:200]


def _json_object(data: bytes, what: str) -> dict:
    if len(data) > MAX_MESSAGE:
        raise Refused(f"over {MAX_MESSAGE} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise Refused(f"not JSON; expected {what}") from None
    if not isinstance(doc, dict):
        raise Refused(f"a JSON {type(doc).__name__}; expected {what}")
    return doc


def clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


class Controls:
    """Client channels and messages from Foxglove, forwarded through ``controller`` (see the module
    docstring). Call ``handle`` with the events of ``ClientEvents.drain`` and ``tick`` every loop pass."""

    def __init__(
        self,
        controller: Controller | None,
        *,
        teleop_topic: str = "",
        estop: bool = False,
        max_speed: float = 1.0,
        max_yaw_rate: float = 1.0,
        deadman_s: float = DEADMAN_S,
        errors: tuple[type[Exception], ...] = (KrabgraphError,),
        clock: Callable[[], float] = time.monotonic,
    ):
        self.controller = controller
        self.teleop_topic = teleop_topic
        self.estop_on = estop or bool(teleop_topic)
        self.max_speed, self.max_yaw_rate, self.deadman_s = max_speed, max_yaw_rate, deadman_s
        self.errors, self.clock = errors, clock
        self.channels: dict[tuple[int, int], str] = {}  # (client, channel) -> "teleop" | "estop"
        self.refused: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.sent = 0  # velocity commands forwarded (deadman zeros included)
        self.zeros = 0  # deadman zeros
        self.estops = 0
        self.last_twist: float | None = None
        self.moving = False

    @property
    def accepted(self) -> list[str]:
        topics = [f"/{self.teleop_topic.lstrip('/')}"] if self.teleop_topic else []
        return topics + ([ESTOP_TOPIC] if self.estop_on else [])

    def _kind(self, topic: str) -> str:
        name = topic.strip("/")
        if self.teleop_topic and name == self.teleop_topic.strip("/"):
            return "teleop"
        if self.estop_on and name == ESTOP_TOPIC.strip("/"):
            return "estop"
        return ""

    def refuse(self, kind: str, text: str) -> None:
        """Count a refusal; the first of each kind is logged (one line)."""
        if kind not in self.refused:
            log.warning("Foxglove: refused %s (further ones of this kind are counted)", text)
        self.refused[kind] = self.refused.get(kind, 0) + 1

    # -- events ---------------------------------------------------------------------------------
    def handle(self, events: list[tuple]) -> None:
        """Client channels and messages in arrival order; of the teleop twists only the newest is sent."""
        newest: tuple[int, int, bytes] | None = None
        for event in events:
            if event[0] == "advertise":
                self.advertise(event[1])
            elif event[0] == "unadvertise":
                self.channels.pop((event[1], event[2]), None)
            elif event[0] == "data":
                _, client, channel, data = event
                if self.channels.get((client, channel)) == "teleop":
                    newest = (client, channel, data)
                else:
                    self.data(client, channel, data)
        if newest is not None:
            self.data(*newest)

    def advertise(self, channel: ClientChannel) -> None:
        kind = self._kind(channel.topic)
        who = f"client {channel.client}"
        if not kind:
            accepted = ", ".join(self.accepted) or "none: start krabgraph foxglove with --teleop TOPIC or --estop"
            self.refuse(f"topic {channel.topic}", f"{who}'s channel {channel.topic!r} (accepted: {accepted})")
        elif channel.encoding != "json":
            self.refuse(
                f"encoding {channel.encoding}",
                f"{who}'s channel {channel.topic!r}: encoding {channel.encoding!r}, only json is accepted",
            )
        else:
            self.channels[(channel.client, channel.channel)] = kind
            log.info(
                "Foxglove: %s publishes %s on %s",
                who,
                "velocity commands" if kind == "teleop" else "e-stops",
                channel.topic,
            )

    def data(self, client: int, channel: int, data: bytes) -> None:
        kind = self.channels.get((client, channel))
        if kind is None:
            self.refuse("data", f"a message from client {client} on channel {channel}, which was not accepted")
            return
        try:
            if kind == "teleop":
                self._teleop(*parse_twist(data))
            else:
                self._estop(*parse_estop(data))
        except Refused as exc:
            self.refuse(f"{kind} message", f"a {kind} message from client {client}: {exc}")

    def _teleop(self, vx: float, vy: float, yaw_rate: float) -> None:
        cmd = VelocityCommand(
            vx=clamp(vx, self.max_speed),
            vy=clamp(vy, self.max_speed),
            yaw_rate=clamp(yaw_rate, self.max_yaw_rate),
            source="foxglove",
        )
        self.last_twist = self.clock()
        if self._send(cmd):
            self.moving = any((cmd.vx, cmd.vy, cmd.yaw_rate))

    def _send(self, cmd: VelocityCommand) -> bool:
        try:
            self.controller.publish(self.teleop_topic, cmd)
        except self.errors as exc:
            self._failed(f"velocity command on {self.teleop_topic}", exc)
            return False
        self.sent += 1
        return True

    def _estop(self, engage: bool, reason: str) -> None:
        reason = reason or "from Foxglove"
        try:
            reply = self.controller.estop(reason=reason, reset=not engage)
        except self.errors as exc:
            self._failed("e-stop", exc)
            return
        self.estops += 1
        safety = ", ".join(f"{s.get('node')}: {s.get('mode')}" for s in reply.get("safety", []) if isinstance(s, dict))
        log.warning(
            "Foxglove: e-stop %s (%s)%s",
            "engaged" if engage else "reset",
            reason,
            f"; safety {safety}" if safety else "",
        )

    def _failed(self, what: str, exc: Exception) -> None:
        text = str(exc)
        if text not in self.failed:
            log.error("Foxglove: %s not delivered: %s (further failures like it are counted)", what, text)
        self.failed[text] = self.failed.get(text, 0) + 1

    def tick(self) -> None:
        """The deadman: a teleop that moved the robot and has been silent for ``deadman_s`` gets one zero."""
        if self.moving and self.last_twist is not None and self.clock() - self.last_twist >= self.deadman_s:
            self.moving = False
            if self._send(VelocityCommand(source="foxglove")):
                self.zeros += 1
                log.info("Foxglove teleop: nothing for %.1f s: sent a zero velocity command", self.deadman_s)


__all__ = ["ESTOP_TOPIC", "ClientChannel", "ClientEvents", "Controller", "Controls", "parse_estop", "parse_twist"]
