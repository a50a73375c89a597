"""``krabgraph launch`` on a multi-process graph: one child per process on this host, supervised.

Each child is ``python -m krabgraph launch GRAPH --process NAME`` with the parent's overrides. A
child that exits non-zero or is killed is reported (name, exit code or signal); the others keep
running: a robot-side safety node then damps on its command watchdog when the policy's process
dies. SIGINT/SIGTERM are forwarded to the children; a child still running 5 s later is killed.
Processes on other hosts are not started: the command to run there is printed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from krabgraph.launch.tap import is_loopback

if TYPE_CHECKING:
    from krabgraph.launch.validate import Graph

log = logging.getLogger("krabgraph.supervisor")

POLL_S = 0.05
STOP_GRACE_S = 5.0


def is_local(host: str) -> bool:
    """True for a loopback address or a name/address of this machine."""
    if is_loopback(f"tcp://{host}:1"):
        return True
    names = {socket.gethostname(), socket.getfqdn()}
    if host in names:
        return True
    try:
        mine = {a[4][0] for n in names for a in socket.getaddrinfo(n, None)}
    except OSError:
        return False
    return host in mine


def child_args(graph_path: str, process: str, args: Any) -> list[str]:
    """The command line of one process: the same graph and overrides, plus ``--process``."""
    argv = [sys.executable, "-m", "krabgraph", "--log-level", args.log_level, "launch", graph_path]
    argv += ["--process", process]
    for item in args.set or []:
        argv += ["--set", item]
    for item in args.replace or []:
        argv += ["--replace", item]
    if args.clock:
        argv += ["--clock", args.clock]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    if args.tap is not None:
        argv += ["--tap", args.tap] if args.tap else ["--tap"]
    return argv


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies (Linux), so no process is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def supervise(graph: Graph, args: Any) -> int:
    """Start the local processes, watch them, forward signals; nonzero if any child failed."""
    path = str(graph.decl.path)
    local = {n: p for n, p in graph.processes.items() if is_local(p.host)}
    for name, proc in graph.processes.items():
        if name not in local:
            cmd = "python -m krabgraph " + shlex.join(child_args(path, name, args)[3:])
            log.warning("process %r runs on host %s: start it there with: %s", name, proc.host, cmd)
    children: dict[str, subprocess.Popen] = {}
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    restore = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: dict[str, int] = {}
    try:
        for name in local:
            children[name] = subprocess.Popen(child_args(path, name, args), preexec_fn=_die_with_parent)
            log.info("started process %r (pid %d) on %s", name, children[name].pid, local[name].host)
        running = dict(children)
        deadline = None
        while running:
            if stop["signal"] and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_S
                log.info("received %s: stopping %d processes", signal.Signals(stop["signal"]).name, len(running))
            if deadline is not None and time.monotonic() > deadline:
                for name, child in running.items():
                    log.error(
                        "process %r (pid %d) did not stop within %.0f s: killing it", name, child.pid, STOP_GRACE_S
                    )
                    child.kill()
                deadline = float("inf")
            for name, child in list(running.items()):
                code = child.poll()
                if code is None:
                    continue
                del running[name]
                if code == 0:
                    log.info("process %r (pid %d) exited normally", name, child.pid)
                else:
                    failed[name] = code
                    left = ", ".join(running) or "none"
                    log.error("process %r (pid %d) %s; still running: %s", name, child.pid, describe_exit(code), left)
            time.sleep(POLL_S)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        for sig, handler in restore.items():
            signal.signal(sig, handler)
    if failed:
        log.error("%s: %s", graph.name, "; ".join(f"{n} {describe_exit(c)}" for n, c in failed.items()))
    return 1 if failed else 0
