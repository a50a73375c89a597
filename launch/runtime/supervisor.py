"""``krabgraph launch`` on a multi-process graph: one child per process on this host, supervised.

Each child is ``python -m krabgraph launch GRAPH --process NAME`` with the parent's overrides. A
child that exits non-zero or is killed is reported (name, exit code or signal); the others keep
running: a robot-side safety node then damps on its command watchdog when the policy's process
dies. Each SIGINT/SIGTERM the supervisor gets is forwarded to the children as one SIGTERM (they
ignore the terminal's SIGINT, so each counts once): the first stops them in order, a second faster
(safety still damps); a child still running 5 s after the first (2 s after the second) is killed.
A second launch of a running instance is refused before any child starts (transport.claim).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krabgraph.launch.graph.endpoints import is_loopback
from krabgraph.launch.runtime.monitor import FAULT_EXIT_CODE

if TYPE_CHECKING:
    from krabgraph.launch.graph.model import Graph
    from krabgraph.launch.runtime.executor import StopSignals

log = logging.getLogger("krabgraph.supervisor")

POLL_S = 0.05
STOP_GRACE_S = 5.0  # a child still running this long after the first stop request is killed
HURRY_GRACE_S = 2.0  # ... or this long after a second signal (the child then skips its long waits)


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
    for item in getattr(args, "overlay", None) or []:
        argv += ["--overlay", str(Path(item).resolve()) if Path(item).exists() else item]
    for item in args.set or []:
        argv += ["--set", item]
    for item in args.replace or []:
        argv += ["--replace", item]
    for item in getattr(args, "allow_module", None) or []:
        argv += ["--allow-module", item]
    if getattr(args, "instance", None):
        argv += ["--instance", args.instance]
    if args.clock:
        argv += ["--clock", args.clock]
    if args.duration is not None and duration:
        argv += ["--duration", str(args.duration)]
    if args.tap is not None:
        argv += ["--tap", args.tap] if args.tap else ["--tap"]
    return argv


def _child_setup() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (Linux), so no process is left
    behind; ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the supervisor
    forwards it as SIGTERM, so it counts once, and no child gets a KeyboardInterrupt while starting)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def supervise(graph: Graph, args: Any, signals: StopSignals | None = None) -> int:
    """Start the local processes, watch them, forward signals; nonzero if any child failed:
    ``FAULT_EXIT_CODE`` when every failed child ended in a safety fault, else 1.

    ``signals``: the launch's counted SIGINT/SIGTERM (installed here when None). Each signal the
    supervisor gets becomes one SIGTERM to every child (which ignore the terminal's SIGINT), so a
    second signal makes every child stop faster as well; children still running ``STOP_GRACE_S``
    after the first (``HURRY_GRACE_S`` after the second) are killed. Refuses (one line, before any
    child starts) when this instance of the graph is running already.
    """
    from krabgraph.launch.runtime.executor import StopSignals
    from krabgraph.launch.runtime.transport import check_free, claim, clean_after

    path = str(graph.decl.path)
    local = {n: p for n, p in graph.processes.items() if is_local(p.host)}
    lock = claim(graph)  # the whole instance: a second supervisor refuses here
    try:
        check_free(graph, list(local))  # and so does one beside a `launch --process` started by hand
    except BaseException:
        lock.release()
        raise
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
    sent: dict[str, int] = {}  # SIGTERMs sent to each child
    stop = {"count": 0, "led": 0, "deadline": float("inf")}

    def on_signal(count: int, signum: int) -> None:  # in a signal handler: only record it
        stop["count"] = count
        name = signal.Signals(signum).name
        now = time.monotonic()
        if count == 1:
            log.info("received %s: stopping the processes (a second signal stops them faster)", name)
            stop["deadline"] = min(stop["deadline"], now + STOP_GRACE_S)
        elif count == 2:
            log.warning("received %s again: asking the processes to stop faster (safety still damps)", name)
            stop["deadline"] = min(stop["deadline"], now + HURRY_GRACE_S)
        else:
            log.debug("received %s (%d signals): already stopping fast", name, count)

    own = signals is None
    signals = signals or StopSignals().install()
    signals.handler = on_signal
    for count in range(1, signals.count + 1):  # signals that came before the supervisor was ready
        on_signal(count, signals.last)
    failed: dict[str, int] = {}
    try:
        for name in local:
            if stop["count"]:
                break
            argv = child_args(path, name, args, duration=not led or name in leads)
            argv.insert(argv.index("launch") + 1, "--supervised")
            children[name] = subprocess.Popen(argv, preexec_fn=_child_setup)
            sent[name] = 0
            log.info("started process %r (pid %d) on %s", name, children[name].pid, local[name].host)
        running = dict(children)
        killed = False
        while running:
            if led and not stop["led"] and not leads & running.keys():
                stop["led"] = 1
                stop["deadline"] = min(stop["deadline"], time.monotonic() + STOP_GRACE_S)
                why = f"the processes with a safety node ({', '.join(sorted(leads))}) have ended"
                log.info("%s: stopping %d processes", why, len(running))
            want = max(stop["count"], stop["led"])
            for name, child in running.items():  # one SIGTERM per stop request: the child escalates
                while sent[name] < want and child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    sent[name] += 1
            if not killed and time.monotonic() > stop["deadline"]:
                for name, child in running.items():
                    log.error("process %r (pid %d) did not stop in time: killing it", name, child.pid)
                    child.kill()
                killed = True
            for name, child in list(running.items()):
                code = child.poll()
                if code is None:
                    continue
                del running[name]
                if code == 0:
                    log.info("process %r (pid %d) exited normally", name, child.pid)
                elif code == -signal.SIGTERM and sent[name] and not killed:
                    # A child handles SIGTERM from its start-up to its exit; only one still starting
                    # (nothing active yet) or already exiting dies of the SIGTERM it was asked to stop by.
                    log.info("process %r (pid %d) stopped by the SIGTERM it was sent", name, child.pid)
                else:
                    failed[name] = code
                    left = ", ".join(running) or "none"
                    log.error("process %r (pid %d) %s; still running: %s", name, child.pid, describe_exit(code), left)
                if code < 0:  # killed: its socket files and lock are still there
                    clean_after(graph, name)
            time.sleep(POLL_S)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        signals.handler = None
        if own:
            signals.restore()
        lock.release()
    if failed:
        log.error("%s: %s", graph.name, "; ".join(f"{n} {describe_exit(c)}" for n, c in failed.items()))
    if not failed:
        return 0
    return FAULT_EXIT_CODE if set(failed.values()) == {FAULT_EXIT_CODE} else 1
