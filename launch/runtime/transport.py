"""Binding the endpoints of a multi-process graph safely: instance locks, free checks, clean-up.

The endpoints themselves (which topic crosses where, ipc or tcp) are planned from the graph file
by ``launch/graph/endpoints.py``; every process computes the same plan.

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
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.endpoints import ipc_dir, plan, stem

if TYPE_CHECKING:
    from krabgraph.launch.graph.model import Graph


log = logging.getLogger("krabgraph.transport")


class InstanceLock:
    """An flock'd file held while an instance (or one process of it) runs; the OS drops it on a crash."""

    def __init__(self, path: Path, file: TextIO):
        self.path = path
        self._file: TextIO | None = file

    @classmethod
    def try_acquire(cls, path: Path) -> InstanceLock | int:
        """The lock, or the pid of its holder (0 if unknown) when another process holds it.

        The lock's directory (the private ipc directory) is created 0700, or checked to be this
        user's, 0700 and no symlink (``security.private_dir``; else a one-line ``KeyFileError``)."""
        from krabgraph.launch.runtime.security import private_dir

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
