"""The control channel: act on a running graph from outside (``krabgraph topic pub``, ``krabgraph estop``,
``krabgraph param``, ``krabgraph node activate|deactivate``; the client is ``launch/cli/control_client.py``).

Opened together with the tap and under its rules: the same opt-in, the same CURVE server key and
client directory when the tap has keys, refused off loopback without them (``check_tap``). A ROUTER
listens on ``control_endpoint(tap endpoint)`` (tcp: the tap's port + 1; ipc: its path + ``.control``;
an ephemeral tap on port 0: an ephemeral port, named as ``control`` in the ``_tap/graph`` description).

Requests are ``[JSON, optional payload]`` (after ZeroMQ's routing envelope), answered with one JSON
frame ``{"ok": true, ...}`` or ``{"ok": false, "error": "<one line>"}`` that echoes the request's
``id``. Bounded: ``MAX_JSON`` bytes of JSON, ``MAX_PAYLOAD`` bytes of payload (ZeroMQ drops a peer
sending a frame over ``HARD_MAX``), ``REQUESTS_PER_SERVICE`` requests and ``BYTES_PER_SERVICE`` bytes
handled per service call, ``MAX_PENDING`` requests waiting for another thread. A malformed request
gets one error reply and is counted; nothing a client sends raises in the graph.

Threads: the main worker services the socket when its loop is idle (as it services the tap), so the
operations run on the executor's own thread; an operation on a node of a ``thread: true`` worker is
queued in that worker's ``Inbox``, which its loop drains when idle, and answered once it ran.

Operations: ``pub`` (a message on a topic, through the topic's own publishing path: a local
publisher's output port, or an inproc PUB at an ``external`` topic's endpoint), ``estop`` (an
``EStop`` to the ``estop`` input of every safety node), ``param_get``/``param_set``/``param_list``
(``Param(dynamic=True)`` only for set), ``lifecycle`` (activate/deactivate; never a safety node or a
HAL). Robot commands are refused: the safety node stays in charge.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import zmq
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from krabgraph.launch.api.errors import KrabgraphError, ParamError
from krabgraph.launch.api.ports import RawMessage
from krabgraph.launch.graph.endpoints import control_endpoint, is_loopback
from krabgraph.launch.runtime.security import curve_server, release_auth
from krabgraph.launch.runtime.tap import BACKLOG as TAP_BACKLOG
from krabgraph.launch.runtime.wire import prefix as wire_prefix
from krabgraph.msgs import EStop, SafetyStatus, VelocityCommand
from krabgraph.msgs.schema import message_class, schema_version

if TYPE_CHECKING:
    from krabgraph.launch.api.node import Node
    from krabgraph.launch.api.ports import OutputPort
    from krabgraph.launch.graph.model import Graph, NodeSpec, TopicInfo
    from krabgraph.launch.runtime.tap import WorkerTap

log = logging.getLogger("krabgraph.control")

MAX_JSON = 64 << 10  # bytes of a request's JSON frame
MAX_PAYLOAD = 4 << 20  # bytes of a message to publish
HARD_MAX = 8 << 20  # a frame over this makes ZeroMQ drop its sender (no reply: it is not read at all)
RCVHWM = 64  # requests ZeroMQ queues per client
REQUESTS_PER_SERVICE = 16  # requests read per service call...
BYTES_PER_SERVICE = MAX_PAYLOAD  # ...or this many bytes, whichever comes first; the rest waits
CHECK_PERIOD_NS = 1_000_000  # an idle main loop looks at the socket at most this often
MAX_PENDING = 64  # requests waiting for a node's own thread; more are refused
PENDING_TIMEOUT_S = 2.0  # a request a node's thread has not started by then is answered with an error
MAX_REASON = 200  # characters of an e-stop reason
MAX_LISTED = 12  # names listed in an error line
HEADER = "krabgraph.msgs.Header"
ROBOT_COMMAND_OK = {VelocityCommand.DESCRIPTOR.full_name}  # HAL inputs that only show a command (status line)


class ControlSetupError(KrabgraphError):
    """The control channel cannot be opened as configured."""


class Refused(Exception):
    """A request the graph does not carry out; the message is the one line sent back."""


class Malformed(Refused):
    """A request that is not one (bad framing, not JSON, a field missing); counted."""


class Controlled(Protocol):
    """What the control channel needs of the executor (a protocol: executor.py imports this module)."""

    graph: Graph
    process: str | None
    nodes: dict[str, Node]
    local: dict[str, NodeSpec]
    workers: list[Any]  # Worker: .index, .tap
    worker_of: dict[str, Any]
    clock: Any  # has now_ns()
    context: zmq.Context

    def node_failed(self, node: Node, where: str, exc: BaseException) -> None: ...


@dataclass(eq=False)
class Job:
    """One operation to run on a node's own thread; ``result`` is its reply (``ok`` or ``error``)."""

    run: Callable[[], dict[str, Any]]
    what: str  # for the error line when it never ran
    result: dict[str, Any] | None = None
    state: str = "queued"  # queued -> running -> done, or expired (never ran)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def execute(self) -> None:
        """Run on the owning worker's thread (unless it expired meanwhile)."""
        with self.lock:
            if self.state != "queued":
                return
            self.state = "running"
        try:
            result = self.run()
        except Refused as exc:
            result = error(str(exc))
        except Exception as exc:  # a bug in an operation: one line back, the graph runs on
            log.exception("control: %s failed", self.what)
            result = error(f"{self.what} failed: {type(exc).__name__}: {exc}")
        self.result = result
        with self.lock:
            self.state = "done"

    def expire(self) -> bool:
        """Give up on a job that has not started; False if it has."""
        with self.lock:
            if self.state != "queued":
                return False
            self.state = "expired"
        self.result = error(
            f"{self.what}: the node's thread did not take the request within {PENDING_TIMEOUT_S:g} s "
            "(a callback blocking it?); nothing was done"
        )
        return True


class Inbox:
    """A worker's queue of control jobs for its nodes; its own loop drains it when idle."""

    def __init__(self) -> None:
        self.jobs: deque[Job] = deque()

    def service(self) -> None:
        jobs = self.jobs
        while jobs:
            jobs.popleft().execute()


@dataclass(eq=False)
class Pending:
    """A request whose jobs run on other threads: answered when all are done (or expired)."""

    envelope: list[bytes]
    request_id: Any
    jobs: list[Job]
    combine: Callable[[list[dict[str, Any]]], dict[str, Any]]
    deadline: float


def error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


def listed(names: Any) -> str:
    """``a, b, c`` for an error line, at most ``MAX_LISTED`` names then ``(+N more)``."""
    names = sorted(names)
    more = f" (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return (", ".join(names[:MAX_LISTED]) or "none") + more


@dataclass(eq=False)
class Route:
    """How a message reaches a topic from here: a local publisher's output port, or the external PUB."""

    topic: str
    node: Node | None = None  # the publishing node (its output port's path); None: external
    port: OutputPort | None = None
    send: Callable[[bytes], Any] | None = None  # external: the inproc PUB's send
    tap: WorkerTap | None = None  # external: the main worker's tap (listeners see what is sent)

    @property
    def via(self) -> str:
        return f"{self.node.name}.{self.port.spec.name}" if self.node is not None else "external"


class ControlChannel:
    """The ROUTER socket, its routes and pending requests; ``service()`` runs on the main worker."""

    def __init__(self, executor: Controlled, spec: Any, external: Callable[[str], str]):
        """``spec``: the tap's ``TapSpec`` (endpoint, CURVE keys, where it was configured); ``external``:
        the inproc endpoint where an external topic's subscribers listen for it."""
        self.ex = executor
        self.external_endpoint = external
        self.spec = spec
        self.auth: Any = None
        self.sockets: list[zmq.Socket] = []
        self.pending: list[Pending] = []
        self.counts = {"handled": 0, "refused": 0, "malformed": 0, "unsent": 0}
        self._logged: set[str] = set()
        self._next_check = 0
        try:
            self.endpoint = self._bind(spec)
            self.routes, self.unroutable = self._routes()
        except BaseException:
            self.close()
            raise
        self.inboxes: dict[int, Inbox] = {}
        for worker in executor.workers:
            if worker.index == 0:
                worker.control = self
            else:
                worker.control = self.inboxes.setdefault(worker.index, Inbox())
        log.info("control channel open on %s", self.endpoint)

    # -- setup --------------------------------------------------------------------------------
    def _bind(self, spec: Any) -> str:
        where = f"{spec.loc}: tap"
        endpoint = control_endpoint(spec.endpoint)
        if not spec.secret_key and not is_loopback(endpoint):
            raise ControlSetupError(f"{where}: refusing to open the control channel on {endpoint} without CURVE keys")
        sock = self.ex.context.socket(zmq.ROUTER)
        self.sockets.append(sock)
        sock.linger = 0
        sock.maxmsgsize = HARD_MAX
        sock.rcvhwm = RCVHWM
        sock.sndhwm = RCVHWM
        if spec.secret_key:
            self.auth = curve_server(self.ex.context, sock, spec.secret_key, spec.clients, where=where)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ControlSetupError(
                f"{where}: cannot open the control channel on {endpoint} (the tap's port + 1): {exc}; "
                "choose another tap port"
            ) from None
        self.sock = sock
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _routes(self) -> tuple[dict[str, Route], dict[str, str]]:
        """Each topic's way in from here; and for the others, why there is none."""
        ex, routes, unroutable = self.ex, {}, {}
        for topic, info in ex.graph.topics.items():
            local = [(n, p) for n, p in info.publishers if n in ex.nodes]
            if local:
                n, p = min(local, key=lambda np_: ex.worker_of[np_[0]].index)  # the main worker's first
                routes[topic] = Route(topic, ex.nodes[n], ex.nodes[n].output_ports()[p])
            elif info.external:
                route = self._external(topic)
                if route is not None:
                    routes[topic] = route
                else:
                    unroutable[topic] = "its external endpoint is in use by another publisher in this process"
            else:
                procs = sorted({ex.graph.nodes[n].process for n, _ in info.publishers})
                unroutable[topic] = (
                    f"it is published in process {', '.join(map(repr, procs))}, not in this one "
                    f"({ex.process or 'main'!r}); use that process's tap"
                    if procs
                    else "nothing in this process publishes it"
                )
        return routes, unroutable

    def _external(self, topic: str) -> Route | None:
        """An inproc PUB at an external topic's endpoint, for messages sent from here."""
        sock = self.ex.context.socket(zmq.PUB)
        self.sockets.append(sock)
        sock.linger = 0
        try:
            sock.bind(self.external_endpoint(topic))
        except zmq.ZMQError as exc:
            log.warning("control: no `pub` on external topic %s: %s", topic, exc)
            return None
        tap = self.ex.workers[0].tap
        if tap is not None:
            tap.flag(topic)  # listeners of the tap may ask for it
        return Route(topic, send=sock.send, tap=tap)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.sockets = []
        if self.auth is not None:
            release_auth(self.ex.context)
            self.auth = None

    # -- the main loop's side -------------------------------------------------------------------
    def service(self) -> None:
        """Called by the idle main loop: answer finished requests, then read new ones (bounded)."""
        if self.pending:
            self._answer_pending()
        now = time.monotonic_ns()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_PERIOD_NS
        sock, budget = self.sock, BYTES_PER_SERVICE
        for _ in range(REQUESTS_PER_SERVICE):
            if budget <= 0 or not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = sock.recv_multipart(zmq.NOBLOCK)
            budget -= sum(len(f) for f in frames)
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        """One request: split off the envelope, parse, run or queue, answer."""
        n = 2 if len(frames) > 1 and frames[1] == b"" else 1  # a REQ client's empty delimiter
        envelope, body = frames[:n], frames[n:]
        request_id = None
        try:
            request, payload = parse_request(body)
            request_id = request.get("id")
            outcome = self._run(request, payload)
        except Malformed as exc:
            self.counts["malformed"] += 1
            self._log_once(str(exc)[:40], "control: malformed request (%s); further ones are counted", exc)
            outcome = error(f"malformed request: {exc}")
        except Refused as exc:
            outcome = error(str(exc))
        except Exception as exc:  # a bug here must not stop the graph: log it, answer, run on
            log.exception("control: a request failed")
            outcome = error(f"the graph could not handle the request: {type(exc).__name__}: {exc}")
        if isinstance(outcome, Pending):
            outcome.envelope, outcome.request_id = envelope, request_id
            self.pending.append(outcome)
            return
        self._reply(envelope, request_id, outcome)

    def _reply(self, envelope: list[bytes], request_id: Any, outcome: dict[str, Any]) -> None:
        self.counts["handled" if outcome.get("ok") else "refused"] += 1
        if request_id is not None:
            outcome = {**outcome, "id": request_id}
        try:
            self.sock.send_multipart([*envelope, json.dumps(outcome, default=str).encode()], zmq.NOBLOCK)
        except zmq.ZMQError:  # the client's queue is full, or it is gone: nothing to do
            self.counts["unsent"] += 1

    def _answer_pending(self) -> None:
        now, still = time.monotonic(), []
        for req in self.pending:
            if now > req.deadline:
                for job in req.jobs:
                    job.expire()
            if all(job.state in ("done", "expired") for job in req.jobs):
                self._reply(req.envelope, req.request_id, req.combine([job.result for job in req.jobs]))
            else:
                still.append(req)
        self.pending = still

    def _log_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._logged and len(self._logged) < 100:
            self._logged.add(key)
            log.warning(msg, *args)

    # -- running operations -------------------------------------------------------------------
    def _run(self, request: dict[str, Any], payload: bytes | None) -> dict[str, Any] | Pending:
        op = request["op"]
        ops: dict[str, Callable[..., dict[str, Any] | Pending]] = {
            "pub": self._pub,
            "estop": self._estop,
            "param_get": self._param_get,
            "param_set": self._param_set,
            "param_list": self._param_list,
            "lifecycle": self._lifecycle,
        }
        handler = ops.get(op)
        if handler is None:
            raise Malformed(f"unknown op {op[:40]!r}; ops: {', '.join(ops)}")
        if op != "pub" and payload is not None:
            raise Malformed(f"{op} takes no payload frame")
        return handler(request, payload) if op == "pub" else handler(request)

    def _on_threads(
        self, jobs: list[tuple[str, Job]], combine: Callable[[list[dict[str, Any]]], dict[str, Any]]
    ) -> dict[str, Any] | Pending:
        """Run each ``(node name, job)`` on its node's thread: now for the main worker's, else queued."""
        index = {name: self.ex.worker_of[name].index for name, _ in jobs}
        if any(index.values()) and len(self.pending) >= MAX_PENDING:
            raise Refused(f"busy: {MAX_PENDING} requests are waiting for node threads already; try again")
        for name, job in jobs:
            if index[name] == 0:
                job.execute()
            else:
                self.inboxes[index[name]].jobs.append(job)
        if not any(index.values()):
            return combine([job.result for _, job in jobs])
        return Pending([], None, [job for _, job in jobs], combine, time.monotonic() + PENDING_TIMEOUT_S)

    def _node(self, request: dict[str, Any]) -> tuple[str, Node]:
        name = text(request, "node")
        node = self.ex.nodes.get(name)
        if node is not None:
            return name, node
        graph = self.ex.graph
        if name in graph.nodes:
            proc = graph.nodes[name].process
            raise Refused(f"node {name!r} runs in process {proc!r}, not in this one; use that process's tap")
        raise Refused(f"graph {graph.name!r} has no node {name!r}; nodes: {listed(self.ex.nodes)}")

    # -- pub ----------------------------------------------------------------------------------
    def _pub(self, request: dict[str, Any], payload: bytes | None) -> dict[str, Any] | Pending:
        topic, type_name = text(request, "topic"), text(request, "type")
        if payload is None:
            raise Malformed("pub needs the message's serialized bytes as a second frame")
        graph = self.ex.graph
        info = graph.topics.get(topic)
        if info is None:
            raise Refused(f"graph {graph.name!r} has no topic {topic!r}; topics: {listed(graph.topics)}")
        self._refuse_robot_command(topic, info)
        route = self.routes.get(topic)
        if route is None:
            raise Refused(f"cannot publish on topic {topic!r} from here: {self.unroutable.get(topic, 'no route')}")
        cls = topic_class(topic, info, type_name)
        msg = parse_payload(cls, payload, topic)
        self._log_once(f"pub {topic}", "control: publishing on %s from outside the graph (further ones not logged)",
                       topic)  # fmt: skip
        if route.node is None:
            return self._send_external(route, msg)
        job = Job(lambda: self._send_through_port(route, msg), f"pub on {topic}")
        return self._on_threads([(route.node.name, job)], lambda results: results[0])

    def _refuse_robot_command(self, topic: str, info: TopicInfo) -> None:
        """Refuse a topic a HAL reads (its commands come only from the safety node), but for the velocity
        command a HAL only shows on its status line."""
        graph = self.ex.graph
        for name, port in info.subscribers:
            spec = graph.nodes[name]
            if spec.cls.kind != "hal":
                continue
            msg_type = spec.cls.inputs()[port].msg_type
            if getattr(msg_type, "DESCRIPTOR", None) is not None and msg_type.DESCRIPTOR.full_name in ROBOT_COMMAND_OK:
                continue
            raise Refused(
                f"refusing to publish on topic {topic!r}: HAL node {name!r} reads it ({name}.{port}); robot "
                "commands come only from the safety node: publish a velocity command for the policy, or use "
                "`krabgraph estop`"
            )

    def _send_through_port(self, route: Route, msg: Message) -> dict[str, Any]:
        """On the publisher's thread: the topic's own path (counted, tapped, seen by recorders)."""
        port = route.port
        stamp(msg, self.ex.clock.now_ns())
        if port.spec.raw:
            head = wire_prefix(type(msg))
            port.publish(RawMessage(route.topic, type(msg), head + msg.SerializeToString(), len(head)))
        else:
            port.publish(msg)
        return published(route, msg)

    def _send_external(self, route: Route, msg: Message) -> dict[str, Any]:
        """On the main thread: the external topic's inproc PUB (its subscribers are polled), tapped too."""
        stamp(msg, self.ex.clock.now_ns())
        data = wire_prefix(type(msg)) + msg.SerializeToString()
        route.send(data)
        tap = route.tap
        if tap is not None and tap.flags[route.topic].on:
            if len(tap.backlog) < TAP_BACKLOG:
                tap.backlog.append((route.topic.encode(), data))
            else:
                tap.dropped += 1
        return published(route, msg)

    # -- estop --------------------------------------------------------------------------------
    def _estop(self, request: dict[str, Any]) -> dict[str, Any] | Pending:
        engage = flag(request, "engage", True)
        reason = request.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise Malformed(f"'reason' must be a string of at most {MAX_REASON} characters")
        graph = self.ex.graph
        names = [n for n, s in self.ex.local.items() if s.cls.kind == "safety"]
        if not names:
            elsewhere = sorted({s.process for s in graph.nodes.values() if s.cls.kind == "safety"})
            where = ": nothing here can take an e-stop; stop the graph instead (Ctrl-C)"
            if elsewhere:
                where = f"; safety nodes run in process {', '.join(map(repr, elsewhere))}: use that process's tap"
            raise Refused(f"graph {graph.name!r} has no safety node in this process{where}")
        log.warning("control: e-stop %s requested (%s)", "ENGAGE" if engage else "RESET", reason or "no reason given")
        jobs = [(n, Job(self._estop_job(n, engage, reason), f"e-stop of {n!r}")) for n in names]
        return self._on_threads(jobs, lambda results: estop_reply(engage, results))

    def _estop_job(self, name: str, engage: bool, reason: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            node = self.ex.nodes[name]
            port = node.input_ports().get("estop")
            if port is None or port.spec.msg_type is not EStop:
                raise Refused(f"safety node {name!r} ({type(node).__name__}) has no `estop` input of type EStop")
            if node.lifecycle != "active":
                raise Refused(f"safety node {name!r} is {node.lifecycle}, not active: it takes no e-stop")
            before = safety_mode(node)
            msg = EStop(engage=engage, reset=not engage, reason=reason or "krabgraph estop")
            msg.header.stamp_ns = self.ex.clock.now_ns()
            try:
                port.deliver(msg)
            except Exception as exc:
                self.ex.node_failed(node, "input estop (control channel)", exc)
                raise Refused(f"safety node {name!r} raised on the e-stop: {type(exc).__name__}: {exc}") from None
            after = safety_mode(node)
            if not engage and after[0] in ("DAMPING", "ESTOP") and after == before:
                raise Refused(
                    f"safety node {name!r} is still {after[0]} after the reset ({after[1]}): a reset clears the "
                    "latches only with a fresh robot state within the attitude limit (see the graph's log)"
                )
            return {"ok": True, "node": name, "mode": after[0], "reason": after[1]}

        return run

    # -- parameters ---------------------------------------------------------------------------
    def _param_get(self, request: dict[str, Any]) -> dict[str, Any] | Pending:
        name, node = self._node(request)
        param = text(request, "param")

        def run() -> dict[str, Any]:
            values = node.param_values()
            if param not in values:
                raise Refused(f"node {name!r} ({type(node).__name__}) has no parameter {param!r}; "
                              f"parameters: {listed(values)}")  # fmt: skip
            dynamic = param in type(node).dynamic_params()
            return {"ok": True, "node": name, "param": param, "value": values[param], "dynamic": dynamic}

        return self._on_threads([(name, Job(run, f"param_get {name}.{param}"))], lambda results: results[0])

    def _param_list(self, request: dict[str, Any]) -> dict[str, Any] | Pending:
        name, node = self._node(request)

        def run() -> dict[str, Any]:
            return {"ok": True, "node": name, "params": node.param_values(), "dynamic": type(node).dynamic_params()}

        return self._on_threads([(name, Job(run, f"param_list {name}"))], lambda results: results[0])

    def _param_set(self, request: dict[str, Any]) -> dict[str, Any] | Pending:
        name, node = self._node(request)
        param = text(request, "param")
        if "value" not in request:
            raise Malformed("param_set needs a 'value'")
        value = request["value"]

        def run() -> dict[str, Any]:
            old = node.param_values().get(param)
            try:
                new = node.set_param(param, value)
            except ParamError as exc:
                raise Refused(str(exc) if name in str(exc) else f"node {name!r}: {exc}") from None
            log.warning("control: %s.%s set to %r (was %r)", name, param, new, old)
            return {"ok": True, "node": name, "param": param, "value": new, "old": old}

        return self._on_threads([(name, Job(run, f"param_set {name}.{param}"))], lambda results: results[0])

    # -- lifecycle ----------------------------------------------------------------------------
    def _lifecycle(self, request: dict[str, Any]) -> dict[str, Any] | Pending:
        name, node = self._node(request)
        transition = text(request, "transition")
        if transition not in ("activate", "deactivate"):
            raise Refused(f"unknown transition {transition[:40]!r}: use activate or deactivate")
        kind = type(node).kind
        if transition == "deactivate" and kind in ("safety", "hal"):
            left = "without its guard" if kind == "safety" else "without its driver"
            raise Refused(
                f"refusing to deactivate {kind} node {name!r}: the robot would be left {left}; stop the graph "
                "instead (Ctrl-C: every node is deactivated in order, the safety node damping)"
            )
        job = Job(lambda: self._transition(name, node, transition), f"{transition} {name!r}")
        return self._on_threads([(name, job)], lambda results: results[0])

    def _transition(self, name: str, node: Node, transition: str) -> dict[str, Any]:
        needs = "inactive" if transition == "activate" else "active"
        if node.lifecycle != needs:
            raise Refused(f"node {name!r} is {node.lifecycle}; {transition} needs it {needs}")
        log.warning("control: %s node %s", "activating" if transition == "activate" else "deactivating", name)
        try:
            node.activate() if transition == "activate" else node.deactivate()
        except Exception as exc:
            log.error("control: %s of node %r raised: %s", transition, name, exc)
            raise Refused(
                f"node {name!r}: on_{transition} raised {type(exc).__name__}: {exc}; it is {node.lifecycle} now"
            ) from None
        return {"ok": True, "node": name, "transition": transition, "state": node.lifecycle}

    def stats(self) -> dict[str, int]:
        """Requests handled, refused, malformed; replies that could not be sent; requests waiting."""
        return {**self.counts, "pending": len(self.pending)}


# -- requests and messages ----------------------------------------------------------------------
def parse_request(body: list[bytes]) -> tuple[dict[str, Any], bytes | None]:
    """The JSON object and the payload (or None) of a request's frames; ``Malformed`` if not one."""
    if not 1 <= len(body) <= 2:
        raise Malformed(f"{len(body)} frames; a request is one JSON frame and at most one payload frame")
    if len(body[0]) > MAX_JSON:
        raise Malformed(f"JSON frame of {len(body[0])} bytes, over {MAX_JSON}")
    if len(body) == 2 and len(body[1]) > MAX_PAYLOAD:
        raise Malformed(f"payload of {len(body[1])} bytes, over {MAX_PAYLOAD}")
    try:
        request = json.loads(body[0])
    except RecursionError:
        raise Malformed("JSON nested too deeply") from None
    except ValueError as exc:
        raise Malformed(f"not JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise Malformed('expected a JSON object with an "op"')
    return request, body[1] if len(body) == 2 else None


def text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise Malformed(f"{request['op']} needs {key!r}: a non-empty string")
    return value


def flag(request: dict[str, Any], key: str, default: bool) -> bool:
    value = request.get(key, default)
    if not isinstance(value, bool):
        raise Malformed(f"{request['op']}: {key!r} must be true or false")
    return value


def topic_class(topic: str, info: TopicInfo, type_name: str) -> type[Message]:
    """The class to parse a ``pub`` payload with: the topic's type, which ``type_name`` must name
    (``full.Name`` or the wire tag ``full.Name@version``)."""
    name, _, version = type_name.partition("@")
    cls = info.msg_type
    if cls is None:  # a topic of raw ports only: a krabgraph message type, named by the request
        try:
            cls = message_class(name) if name.startswith("krabgraph.msgs.") else None
        except (KeyError, ImportError, AttributeError):
            cls = None
        if cls is None:
            raise Refused(f"topic {topic!r} has no fixed type; send a krabgraph.msgs type, not {name[:80]!r}")
    elif cls.DESCRIPTOR.full_name != name:
        raise Refused(
            f"type mismatch on topic {topic!r}: it carries {cls.DESCRIPTOR.full_name}, the request sends "
            f"{name[:80]}; send a {cls.DESCRIPTOR.name}"
        )
    if version and version != str(schema_version(cls)):
        raise Refused(
            f"schema version mismatch on topic {topic!r}: the graph reads {cls.DESCRIPTOR.full_name}"
            f"@{schema_version(cls)}, the request sends @{version[:20]}"
        )
    return cls


def parse_payload(cls: type[Message], payload: bytes, topic: str) -> Message:
    """``payload`` parsed as ``cls``; refused if it does not parse or holds fields ``cls`` lacks."""
    full = cls.DESCRIPTOR.full_name
    try:
        msg = cls.FromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise Refused(f"payload for topic {topic!r} does not parse as {full}: {exc or type(exc).__name__}") from None
    unknown = unknown_fields(msg)
    if unknown:
        raise Refused(
            f"payload for topic {topic!r} has fields {full} does not have (numbers {', '.join(unknown[:8])}): "
            f"is it another message type? send a {cls.DESCRIPTOR.name}"
        )
    return msg


def unknown_fields(msg: Message, path: str = "") -> list[str]:
    """Field numbers in ``msg`` (and the messages in it) that its type does not declare, as ``a.b.7``."""
    found = [f"{path}{f.field_number}" for f in UnknownFieldSet(msg)]
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            value_field = fd.message_type.fields_by_name["value"]
            items = list(value.values()) if value_field.message_type is not None else []
        elif fd.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            found += unknown_fields(item, f"{path}{fd.name}.")
    return found


def stamp(msg: Message, now_ns: int) -> None:
    """Stamp a message's ``header`` with the graph clock when its stamp is 0."""
    fd = msg.DESCRIPTOR.fields_by_name.get("header")
    is_header = fd is not None and fd.message_type is not None and fd.message_type.full_name == HEADER
    if is_header and not msg.header.stamp_ns:
        msg.header.stamp_ns = now_ns


def published(route: Route, msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, "topic": route.topic, "type": msg.DESCRIPTOR.full_name, "via": route.via}
    if "header" in msg.DESCRIPTOR.fields_by_name:
        out["seq"], out["stamp_ns"] = msg.header.seq, msg.header.stamp_ns
    return out


def safety_mode(node: Node) -> tuple[str, str]:
    """A safety node's mode name and reason (as its ``SafetyStatus`` says them)."""
    mode = getattr(node, "mode", None)
    names = SafetyStatus.Mode
    name = names.Name(mode) if isinstance(mode, int) and mode in names.values() else str(mode)
    return name, str(getattr(node, "reason", ""))


def estop_reply(engage: bool, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One reply for every safety node: ok when each took it."""
    errors = [r["error"] for r in results if not r.get("ok")]
    if errors:
        return error("; ".join(errors))
    safety = [{k: r[k] for k in ("node", "mode", "reason")} for r in results]
    return {"ok": True, "action": "engage" if engage else "reset", "safety": safety}
