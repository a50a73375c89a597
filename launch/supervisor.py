"""``krabgraph launch`` on a multi-process graph: one child per process on this host, supervised.

Each child is ``python -m krabgraph launch GRAPH --process NAME`` with the parent's overrides. A
child that exits non-zero or is killed is reported (name, exit code or signal); the others keep
running: a robot-side safety node then damps on its command watchdog when the policy's process
dies. SIGINT/SIGTERM are forwarded to the children; a child still running 5 s later is killed.
With ``--duration``, the local processes that hold a safety node get it and end the run; the other
local processes get SIGTERM once those have stopped (else a policy's process reaching its end first
would leave the safety node with stale commands, damping: a fault). Processes on other hosts are
not started: the command to run there is printed. The exit code is 0
when every child exited normally, 3 when each child that did not ended its run in a safety fault
(``FAULT_EXIT_CODE``), else 1.
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

from krabgraph.launch.monitor import FAULT_EXIT_CODE
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


def child_args(graph_path: str, process: str, args: Any, *, duration: bool = True) -> list[str]:
    """The command line of one process: the same graph and overrides (``--duration`` unless
    ``duration`` is False), plus ``--process``."""
    argv = [sys.executable, "-m", "krabgraph", "--log-level", args.log_level, "launch", graph_path]
    argv += ["--process", process]
    for item in args.set or []:
        argv += ["--set", item]
    for item in args.replace or []:
        argv += ["--replace", item]
    for item in getattr(args, "allow_module", None) or []:
        argv += ["--allow-module", item]
    if args.clock:
        argv += ["--clock", args.clock]
    if args.duration is not None and duration:
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
    if code == FAULT_EXIT_CODE:
        return f"exited with code {code} (its run ended in a safety fault)"
    return f"exited with code {code}"


def supervise(graph: Graph, args: Any) -> int:
    """Start the local processes, watch them, forward signals; nonzero if any child failed:
    ``FAULT_EXIT_CODE`` when every failed child ended in a safety fault, else 1."""
    path = str(graph.decl.path)
    local = {n: p for n, p in graph.processes.items() if is_local(p.host)}
    for name, proc in graph.processes.items():
        if name not in local:
            cmd = "python -m krabgraph " + shlex.join(child_args(path, name, args)[3:])
            log.warning("process %r runs on host %s: start it there with: %s", name, proc.host, cmd)
    # With --duration, the local processes holding a safety node end the run; the others run until
    # those have stopped and then get SIGTERM, so no safety node sees its commands stop (and damps,
    # a fault) because a process that feeds it reached its own end first.
    leads = {spec.process for spec in graph.nodes.values() if spec.cls.kind == "safety"} & set(local)
    led = args.duration is not None and bool(leads) and len(leads) < len(local)
    children: dict[str, subprocess.Popen] = {}
    stop: dict[str, Any] = {"signal": 0, "why": ""}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    restore = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: dict[str, int] = {}
    try:
        for name in local:
            argv = child_args(path, name, args, duration=not led or name in leads)
            children[name] = subprocess.Popen(argv, preexec_fn=_die_with_parent)
            log.info("started process %r (pid %d) on %s", name, children[name].pid, local[name].host)
        running = dict(children)
        deadline = None
        while running:
            if led and not stop["signal"] and running and not leads & running.keys():
                stop["why"] = f"the processes with a safety node ({', '.join(sorted(leads))}) have ended"
                on_signal(signal.SIGTERM, None)
            if stop["signal"] and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_S
                why = stop["why"] or f"received {signal.Signals(stop['signal']).name}"
                log.info("%s: stopping %d processes", why, len(running))
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
    if not failed:
        return 0
    return FAULT_EXIT_CODE if set(failed.values()) == {FAULT_EXIT_CODE} else 1
