"""Endpoints for topics that cross a process boundary (multi-process graphs, ``processes:``).

Every process computes the same plan from the same graph file, so nothing is negotiated at run
time. A topic published in process P with a subscriber in another process is *exported* by P:
the pair (topic, P) gets an index k in the sorted list of all exported pairs, and

- ``tcp://<P's host>:<base_port + k>`` when a subscriber's process is on another host (CURVE when
  the graph has ``security: {curve: ...}``);
- ``ipc://<tmp>/krabgraph-<uid>/<stem>.<k>`` when it is on P's host, where ``<stem>`` is
  ``<graph>.<base_port>`` (``<graph>@<instance>.<base_port>`` for ``launch --instance NAME``).

Processes are on the same host when their ``host`` strings are equal (``127.0.0.1`` and
``127.0.0.2`` count as two hosts: that is how tcp is tested on one machine).

Instances are isolated by locks: a running multi-process graph holds ``<stem>.lock`` (the
supervisor) and ``<stem>.<process>.lock`` (each process), flock'd files in the private ipc
directory. A second launch of the same instance finds a lock held and refuses before anything
binds (binding an ipc path silently takes it over from its owner); the OS drops the locks of a
crashed process, so the next launch gets them and removes the socket files that run left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from krabgraph.launch.errors import KrabgraphError

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


log = logging.getLogger("krabgraph.transport")


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


class InstanceLock:
    """An flock'd file held while an instance (or one process of it) runs; the OS drops it on a crash."""

    def __init__(self, path: Path, file: TextIO):
        self.path = path
        self._file: TextIO | None = file

    @classmethod
    def try_acquire(cls, path: Path) -> InstanceLock | int:
        """The lock, or the pid of its holder (0 if unknown) when another process holds it.

        The lock's directory (the private ipc directory) is created 0700, or checked to be this
        user's, 0700 and no symlink (``keys.private_dir``; else a one-line ``KeyFileError``)."""
        from krabgraph.launch.keys import private_dir

        private_dir(path.parent)
        for _ in range(10):  # the holder may unlink the file between our open and flock: retry
            file = open(path, "a+")  # noqa: SIM115  # held open for the life of the lock
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                text = file.read().strip()
                file.close()
                return int(text) if text.isdigit() else 0
            try:
                same = os.fstat(file.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                file.truncate(0)
                file.write(f"{os.getpid()}\n")
                file.flush()
                return cls(path, file)
            file.close()  # locked an unlinked file: its holder released it meanwhile
        return 0

    def release(self) -> None:
        """Remove the file and drop the lock (idempotent)."""
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._file.close()
        self._file = None


def lock_path(graph: Graph, process: str | None = None) -> Path:
    """The lock of a whole instance (``process`` None: the supervisor's) or of one of its processes."""
    return ipc_dir() / f"{stem(graph)}{'.' + process if process else ''}.lock"


def already_running(graph: Graph, process: str | None, pid: int) -> KrabgraphError:
    """The one-line refusal of a second launch of a running instance."""
    what = f"graph {graph.name!r}" + (f" (instance {graph.decl.instance!r})" if graph.decl.instance else "")
    if process is not None:
        what = f"process {process!r} of {what}"
    holder = f"pid {pid}" if pid else "pid unknown"
    return KrabgraphError(
        f"{what} is already running on this host ({holder}, lock {lock_path(graph, process)}); "
        "stop it, or run another copy with `krabgraph launch ... --instance NAME`"
        + (" and its own base_port (tcp endpoints)" if any(e.tcp for e in plan(graph).values()) else "")
    )


def claim(graph: Graph, process: str | None = None) -> InstanceLock:
    """Lock this instance (``process`` None) or one of its processes; raise a one-line error when
    another launch holds it. A process that gets its lock removes the ipc socket files of its own
    exports that a crashed run left behind (nobody else binds them)."""
    got = InstanceLock.try_acquire(lock_path(graph, process))
    if not isinstance(got, InstanceLock):
        raise already_running(graph, process, got)
    if process is not None:
        stale = [Path(e.ipc.removeprefix("ipc://")) for e in plan(graph).values() if e.process == process and e.ipc]
        removed = 0
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        if removed:
            log.info(
                "process %s: removed %d stale ipc socket file(s) of an earlier run that did not stop cleanly (in %s)",
                process,
                removed,
                ipc_dir(),
            )
    return got


def check_free(graph: Graph, processes: list[str | None]) -> None:
    """Raise the one-line refusal if any of ``processes`` of this instance (None: its supervisor) is
    running already (a probe: the supervisor's children then take their own locks)."""
    for process in processes:
        got = InstanceLock.try_acquire(lock_path(graph, process))
        if not isinstance(got, InstanceLock):
            raise already_running(graph, process, got)
        got.release()


def clean_after(graph: Graph, process: str) -> None:
    """Remove what a process that died without shutting down left behind (its ipc socket files and
    lock), unless another copy of it holds the lock by now."""
    with contextlib.suppress(KrabgraphError, OSError):
        claim(graph, process).release()
