"""Where a graph listens: the endpoints of topics that cross a process boundary, and the tap's.

Every process computes the same plan from the same graph file, so nothing is negotiated at run
time. A topic published in process P with a subscriber in another process is *exported* by P:
the pair (topic, P) gets an index k in the sorted list of all exported pairs, and

- ``tcp://<P's host>:<base_port + k>`` when a subscriber's process is on another host (CURVE when
  the graph has ``security: {curve: ...}``);
- ``ipc://<tmp>/krabgraph-<uid>/<stem>.<k>`` when it is on P's host, where ``<stem>`` is
  ``<graph>.<base_port>`` (``<graph>@<instance>.<base_port>`` for ``launch --instance NAME``).

Processes are on the same host when their ``host`` strings are equal (``127.0.0.1`` and
``127.0.0.2`` count as two hosts: that is how tcp is tested on one machine).

The tap's endpoint is checked here too (``check_tap``): loopback, or CURVE keys; and where its control
channel listens (``control_endpoint``: the tap's port + 1, or its ipc path + ``.control``). Binding,
instance locks and cleaning up: ``launch/runtime/transport.py``.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from krabgraph.launch.graph.keyfiles import check_curve

if TYPE_CHECKING:
    from krabgraph.launch.graph.declaration import TapSpec
    from krabgraph.launch.graph.model import Graph


@dataclass(frozen=True)
class Export:
    """One topic as published by one process, for subscribers in other processes."""

    topic: str
    process: str  # the publishing process
    index: int
    port: int
    ipc: str  # "" when no subscriber's process is on the publisher's host
    tcp: str  # "" when every subscriber's process is on the publisher's host

    def for_host(self, host: str, publisher_host: str) -> str:
        """The endpoint a subscriber on ``host`` connects to."""
        return self.ipc if host == publisher_host else self.tcp


SUN_PATH_MAX = 107  # bytes of a unix socket path on Linux (sun_path is 108, with the NUL)


def ipc_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"krabgraph-{os.getuid()}"


def stem(graph: Graph) -> str:
    """The instance's part of file names: ``<graph>.<base_port>`` or ``<graph>@<instance>.<base_port>``."""
    instance = graph.decl.instance
    return f"{graph.name}{'@' + instance if instance else ''}.{graph.decl.base_port}"


def plan(graph: Graph) -> dict[tuple[str, str], Export]:
    """(topic, publishing process) -> its cross-process endpoints; empty for a one-process graph."""
    if len(graph.processes) < 2:
        return {}
    hosts = {name: p.host for name, p in graph.processes.items()}
    pairs: dict[tuple[str, str], set[str]] = {}  # (topic, publisher process) -> subscriber hosts
    for topic, info in graph.topics.items():
        pub_procs = {graph.nodes[n].process for n, _ in info.publishers}
        sub_procs = {graph.nodes[n].process for n, _ in info.subscribers}
        for pub in pub_procs:
            others = sub_procs - {pub}
            if others:
                pairs[(topic, pub)] = {hosts[p] for p in others}
    base = graph.decl.base_port
    out = {}
    for k, (topic, pub) in enumerate(sorted(pairs)):
        host = hosts[pub]
        sub_hosts = pairs[(topic, pub)]
        ipc = f"ipc://{ipc_dir()}/{stem(graph)}.{k}" if host in sub_hosts else ""
        tcp = f"tcp://{_bracket(host)}:{base + k}" if sub_hosts - {host} else ""
        out[(topic, pub)] = Export(topic, pub, k, base + k, ipc, tcp)
    return out


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def describe(graph: Graph) -> list[str]:
    """One line per exported topic, for logs and ``krabgraph check``."""
    return [f"{e.topic} ({e.process}) -> {', '.join(x for x in (e.ipc, e.tcp) if x)}" for e in plan(graph).values()]


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


CONTROL_SUFFIX = ".control"  # an ipc tap's control channel: the same path with this suffix
MAX_PORT = 65535


def control_endpoint(tap_endpoint: str) -> str:
    """Where the control channel of a tap on ``tap_endpoint`` listens: tcp on the same host at the
    tap's port + 1 (port 0, an ephemeral tap: an ephemeral port too, named in the graph description),
    ipc at the tap's path + ``.control``. Raises ``ValueError`` for anything else."""
    scheme, sep, rest = tap_endpoint.partition("://")
    if sep and scheme == "ipc" and rest:
        return tap_endpoint + CONTROL_SUFFIX
    host, colon, port = rest.rpartition(":")
    if not (sep and scheme == "tcp" and colon and host and port.isdigit()):
        raise ValueError(f"tap endpoint {tap_endpoint!r} must look like tcp://127.0.0.1:7447 or ipc:///path")
    number = int(port)
    if number >= MAX_PORT:
        raise ValueError(f"tap port {number} leaves no port for the control channel (it listens on port + 1)")
    return f"tcp://{host}:{number + 1 if number else 0}"


def check_tap(spec: TapSpec) -> list[str]:
    """Problems with a tap configuration (and so with its control channel), each a complete line (empty if fine)."""
    where = f"{spec.loc}: tap"
    scheme, sep, rest = spec.endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc") or not rest:
        return [f"{where}: endpoint {spec.endpoint!r} must look like tcp://127.0.0.1:7447 or ipc:///path"]
    if scheme == "tcp" and not rest.rpartition(":")[2].isdigit():
        return [f"{where}: endpoint {spec.endpoint!r} needs a port, e.g. tcp://127.0.0.1:7447"]
    if scheme == "tcp" and int(rest.rpartition(":")[2]) >= MAX_PORT:
        return [f"{where}: endpoint {spec.endpoint!r}: the control channel listens on the tap's port + 1; use a "
                f"port below {MAX_PORT}"]  # fmt: skip
    if scheme == "ipc" and len((rest + CONTROL_SUFFIX).encode()) > SUN_PATH_MAX:
        return [f"{where}: endpoint {spec.endpoint!r}: the control channel's path {rest + CONTROL_SUFFIX!r} is over "
                f"the {SUN_PATH_MAX}-byte limit of a unix socket path; use a shorter path"]  # fmt: skip
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
