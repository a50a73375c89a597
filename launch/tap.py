"""The introspection tap: copies of topics, and a description of the graph, for outside tools.

Opt-in (``tap:`` in a graph file or ``krabgraph launch --tap``). One XPUB socket listens on the tap
endpoint (loopback TCP by default; CURVE-encrypted and client-authenticated when keys are
configured, refused off loopback without them). In a graph with one worker (no ``thread: true``
node; every lockstep graph) that socket is the worker's own. With several, a C proxy thread
(``zmq.proxy_steerable``) joins it to an inproc XSUB, to which every worker connects an XPUB of its
own, so each socket stays on one thread and no Python runs per forwarded message.

Subscriptions travel the other way: a worker reads them from its XPUB when idle and sets a
per-topic flag. Its send path checks the flag and, only when a listener wants the topic, queues a
reference to the bytes it already sent; the queue is flushed when the loop is idle, so the hop
itself pays one list append. A graph without a tap runs the unchanged send path.

Messages on the tap are two frames: the topic name, then the wire frame (``<tag> NUL <payload>``).
The topic ``_tap/graph`` carries JSON describing topics and nodes (name, class, lifecycle state,
counters), published 4 times a second while someone subscribes to it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from krabgraph.launch.errors import KrabgraphError

if TYPE_CHECKING:
    from krabgraph.launch.executor import Executor
    from krabgraph.launch.graph import TapSpec

log = logging.getLogger("krabgraph.tap")

INFO_TOPIC = "_tap/graph"
INFO_PERIOD_NS = 250_000_000
CHECK_PERIOD_NS = 10_000_000  # how often an idle worker looks for new subscriptions
BACKLOG = 4096  # tapped messages a worker holds between flushes; more are dropped (counted)
FLUSH_PERIOD_NS = 2_000_000  # an idle worker sends its tapped messages at most this often...
FLUSH_BATCH = 64  # ...or when this many are waiting: fewer wake-ups of the proxy and listeners
HWM = 10_000


class TapError(KrabgraphError):
    """The tap cannot be opened as configured."""


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.x.x.x:P``, ``tcp://[::1]:P``, ``tcp://localhost:P``, ``ipc://`` and ``inproc://``."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(spec: TapSpec) -> list[str]:
    """Problems with a tap configuration, each a complete line (empty if fine)."""
    where = f"{spec.loc}: tap"
    scheme, sep, rest = spec.endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc") or not rest:
        return [f"{where}: endpoint {spec.endpoint!r} must look like tcp://127.0.0.1:7447 or ipc:///path"]
    if scheme == "tcp" and not rest.rpartition(":")[2].isdigit():
        return [f"{where}: endpoint {spec.endpoint!r} needs a port, e.g. tcp://127.0.0.1:7447"]
    if bool(spec.secret_key) != bool(spec.clients):
        return [f"{where}: CURVE needs both secret_key (server certificate) and clients (allowed client keys)"]
    if not spec.secret_key:
        if not is_loopback(spec.endpoint):
            return [
                f"{where}: refusing to open {spec.endpoint} without encryption: off loopback the tap needs "
                "CURVE keys (tap: {endpoint: ..., secret_key: server.key_secret, clients: dir/}); "
                "or bind tcp://127.0.0.1 and tunnel"
            ]
        return []
    return check_curve(spec.secret_key, spec.clients, where)


def check_curve(secret_key: str, clients: str, where: str) -> list[str]:
    """Problems with a CURVE server configuration (certificate file, client-key directory)."""
    errors = []
    if not zmq.has("curve"):
        errors.append(f"{where}: this libzmq has no CURVE support")
    if not Path(secret_key).is_file():
        errors.append(f"{where}: secret_key {secret_key!r} is not a file (make one with zmq.auth)")
    if not Path(clients).is_dir():
        errors.append(f"{where}: clients {clients!r} is not a directory of client certificates")
    return errors


class TapFlag:
    """Whether someone listens to one topic; read by the send path of the worker that owns it."""

    __slots__ = ("on", "topic")

    def __init__(self, topic: str):
        self.topic = topic
        self.on = False


class WorkerTap:
    """One worker's side of the tap: its XPUB, the flags of its topics and the send backlog."""

    def __init__(self, sock: zmq.Socket, info: Callable[[], bytes] | None = None):
        self.sock = sock
        self.flags: dict[str, TapFlag] = {}
        self.backlog: list[tuple[bytes, bytes]] = []
        self.prefixes: set[bytes] = set()
        self.dropped = 0
        self.info = info  # the main worker also publishes the graph description
        self.info_on = False
        self._next_check = 0
        self._next_info = 0
        self._next_flush = 0

    def flag(self, topic: str) -> TapFlag:
        return self.flags.setdefault(topic, TapFlag(topic))

    def service(self) -> None:
        """Called by an idle worker loop: flush the backlog now and then, read subscriptions."""
        now = time.monotonic_ns()
        if self.backlog and (len(self.backlog) >= FLUSH_BATCH or now >= self._next_flush):
            self.flush()
            self._next_flush = now + FLUSH_PERIOD_NS
        if now < self._next_check:
            return
        self._next_check = now + CHECK_PERIOD_NS
        if self.sock.poll(0):
            self._read_subscriptions()
        if self.info_on and now >= self._next_info:
            self._next_info = now + INFO_PERIOD_NS
            self.sock.send_multipart([INFO_TOPIC.encode(), self.info()], zmq.NOBLOCK)

    def flush(self) -> None:
        send = self.sock.send
        for topic, data in self.backlog:
            send(topic, zmq.SNDMORE | zmq.NOBLOCK)
            send(data, zmq.NOBLOCK, copy=len(data) < 65536)
        self.backlog.clear()

    def _read_subscriptions(self) -> None:
        while True:
            try:
                event = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if event[:1] == b"\x01":
                self.prefixes.add(event[1:])
            elif event[:1] == b"\x00":
                self.prefixes.discard(event[1:])
        for flag in self.flags.values():
            name = flag.topic.encode()
            flag.on = any(name.startswith(p) for p in self.prefixes)
        if self.info is not None:
            on = any(INFO_TOPIC.encode().startswith(p) for p in self.prefixes)
            if on and not self.info_on:
                self._next_info = 0
            self.info_on = on


class TapHub:
    """The tap's listening socket and the proxy thread joining it to every worker."""

    def __init__(self, context: zmq.Context, spec: TapSpec, name: str, *, direct: bool = False):
        errors = check(spec)
        if errors:
            raise TapError("\n".join(errors))
        self.context = context
        self.spec = spec
        self.direct = direct  # one worker: it owns the listening socket, no proxy thread
        self.inner = f"inproc://krabgraph-tap/{name}/{id(self)}"
        self.auth: Any = None
        self.backend = context.socket(zmq.XPUB)
        self.backend.linger = 0
        self.backend.sndhwm = HWM
        self.sockets = [self.backend]
        try:
            if spec.secret_key:
                self._curve()
            self.backend.bind(spec.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise TapError(f"{spec.loc}: tap: cannot listen on {spec.endpoint}: {exc}") from None
        self.endpoint = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)
        if not direct:
            self.frontend = context.socket(zmq.XSUB)
            self.control = context.socket(zmq.PAIR)
            self._peer = context.socket(zmq.PAIR)
            self.sockets += [self.frontend, self.control, self._peer]
            for sock in self.sockets:
                sock.linger = 0
            self.frontend.bind(self.inner)
            self.control.bind(self.inner + "/control")
            self._peer.connect(self.inner + "/control")
        self.thread: threading.Thread | None = None

    def _curve(self) -> None:
        self.auth = curve_server(
            self.context, self.backend, self.spec.secret_key, self.spec.clients, where=f"{self.spec.loc}: tap"
        )

    def worker_socket(self) -> zmq.Socket:
        """An XPUB for one worker, joined to the proxy (use it on that worker's thread only)."""
        if self.direct:
            return self.backend
        sock = self.context.socket(zmq.XPUB)
        self.sockets.append(sock)
        sock.linger = 0
        sock.sndhwm = HWM
        sock.connect(self.inner)
        return sock

    def start(self) -> None:
        if not self.direct:
            self.thread = threading.Thread(target=self._run, name="krabgraph-tap", daemon=True)
            self.thread.start()
        log.info("tap open on %s", self.endpoint)

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.frontend, self.backend, None, self._peer)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("tap proxy stopped: %s", exc)

    def stop(self) -> None:
        if self.thread is not None:
            self.control.send(b"TERMINATE")
            self.thread.join(timeout=2.0)
            self.thread = None
        self.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        if self.auth is not None:
            release_auth(self.context)
            self.auth = None


class _AuthLog(logging.LoggerAdapter):
    """The ZAP authenticator's log: a refused peer (pyzmq logs "DENIED" at debug) becomes a warning."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logger, {})
        self.refused = 0

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        if text.startswith("DENIED"):
            self.refused += 1
            self.logger.warning("refused a peer: %s", text)
        else:
            self.logger.debug(msg, *args, **kwargs)


_auths: dict[int, list[Any]] = {}  # id(context) -> [ThreadAuthenticator, users]
_auths_lock = threading.Lock()


def curve_server(context: zmq.Context, sock: zmq.Socket, secret_key: str, clients: str, *, domain: str = "*",
                 where: str = "") -> Any:  # fmt: skip
    """Make ``sock`` a CURVE server that lets in only the public keys in the ``clients`` directory.

    Starts the context's ZAP authenticator (one per context, shared by the tap and the graph's
    transport, each on its own ZAP domain); call ``release_auth(context)`` once per call when done.
    Call before binding the endpoints that need CURVE. Returns the authenticator.
    """
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = zmq.auth.load_certificate(secret_key)
    if secret is None:
        raise TapError(f"{where}: {secret_key} holds no secret key")
    with _auths_lock:
        entry = _auths.get(id(context))
        if entry is None:
            auth = ThreadAuthenticator(context, log=_AuthLog(logging.getLogger("krabgraph.auth")))
            auth.start()
            entry = _auths[id(context)] = [auth, 0]
        entry[1] += 1
    entry[0].configure_curve(domain=domain, location=clients)
    if domain != "*":
        sock.zap_domain = domain.encode()
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return entry[0]


def release_auth(context: zmq.Context) -> None:
    with _auths_lock:
        entry = _auths.get(id(context))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _auths[id(context)]
    entry[0].stop()


def curve_client(sock: zmq.Socket, secret_key: str, server_public: bytes | None = None) -> None:
    """Make ``sock`` a CURVE client with the key pair in ``secret_key`` (server key: its own by default)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(secret_key)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public or public


def describe(executor: Executor) -> bytes:
    """The JSON published on ``_tap/graph``: topics and nodes with lifecycle state and counters."""
    graph = executor.graph
    out_counts: dict[str, int] = {}
    for name, spec in executor.local.items():
        node = executor.nodes[name]
        for port, topic in spec.outputs.items():
            out_counts[topic] = out_counts.get(topic, 0) + node._outputs[port].count
    topics = [
        {
            "name": t,
            "type": info.msg_type.DESCRIPTOR.full_name if info.msg_type else "",
            "publishers": [f"{n}.{p}" for n, p in info.publishers],
            "subscribers": [f"{n}.{p}" for n, p in info.subscribers],
            "published": out_counts.get(t, 0),
        }
        for t, info in graph.topics.items()
    ]
    errors: dict[str, int] = {}
    for name, *_ in list(executor.failures):
        errors[name] = errors.get(name, 0) + 1
    nodes = []
    for name, spec in executor.local.items():
        node = executor.nodes[name]
        ins, outs = list(node._inputs.values()), list(node._outputs.values())
        nodes.append(
            {
                "name": name,
                "class": f"{spec.cls.__module__}:{spec.cls.__qualname__}",
                "kind": spec.cls.kind,
                "state": node._lifecycle,
                "thread": spec.thread,
                "received": sum(p.count for p in ins),
                "published": sum(p.count for p in outs),
                "dropped": sum(p.dropped for p in ins),
                "lost": sum(p.lost for p in ins),
                "errors": errors.get(name, 0),
                "restarts": executor.restarts.get(name, 0),
                "params": json.loads(json.dumps(node._params, default=str)),  # the running values
            }
        )
    doc = {
        "graph": graph.name,
        "clock": graph.clock.mode,
        "time_ns": executor.clock.now_ns(),
        "pid": os.getpid(),
        "topics": topics,
        "nodes": nodes,
    }
    return json.dumps(doc).encode()
