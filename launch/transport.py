"""Endpoints for topics that cross a process boundary (multi-process graphs, ``processes:``).

Every process computes the same plan from the same graph file, so nothing is negotiated at run
time. A topic published in process P with a subscriber in another process is *exported* by P:
the pair (topic, P) gets an index k in the sorted list of all exported pairs, and

- ``tcp://<P's host>:<base_port + k>`` when a subscriber's process is on another host (CURVE when
  the graph has ``security: {curve: ...}``);
- ``ipc://<tmp>/krabgraph-<uid>/<graph>.<base_port>.<k>`` when it is on P's host.

Processes are on the same host when their ``host`` strings are equal (``127.0.0.1`` and
``127.0.0.2`` count as two hosts: that is how tcp is tested on one machine).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from krabgraph.launch.validate import Graph


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
        ipc = f"ipc://{ipc_dir()}/{graph.name}.{base}.{k}" if host in sub_hosts else ""
        tcp = f"tcp://{_bracket(host)}:{base + k}" if sub_hosts - {host} else ""
        out[(topic, pub)] = Export(topic, pub, k, base + k, ipc, tcp)
    return out


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def describe(graph: Graph) -> list[str]:
    """One line per exported topic, for logs and ``krabgraph check``."""
    return [f"{e.topic} ({e.process}) -> {', '.join(x for x in (e.ipc, e.tcp) if x)}" for e in plan(graph).values()]
