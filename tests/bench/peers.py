"""Hop latency between processes, for the peers: eclipse-zenoh, dora-rs Python nodes, raw pyzmq ipc.

Each row sends the same serialized ``ArrayStamped`` as the in-process hop rows (three sizes) from a
publisher process to a subscriber process, one message every ``hop.PERIOD_S``, and measures one
way from ``time.monotonic_ns()`` written into the header just before the send
(``peer_node.py`` is both ends). Placement: both processes on one core, or on two cores.

- raw pyzmq ipc: PUB → SUB over a Unix socket (the floor between processes; libzmq's I/O thread in
  each process is on the path).
- eclipse-zenoh: peer mode, the subscriber listening on ``tcp/127.0.0.1:<port>``, the publisher
  connecting to it, multicast and gossip scouting off (so no UDP socket at all), ``express=True``
  (no batching); the subscriber's callback runs on a zenoh thread.
- dora-rs: a two-node dataflow (``path: <this python>``, ``-m tests.bench.peer_node``, the repository
  root on ``PYTHONPATH``) started with ``dora start --attach`` on a coordinator and daemon started by
  hand, bound to 127.0.0.1 with ``--zenoh-no-multicast``; the sink input has ``queue_size: 1000`` so
  nothing is dropped. Coordinator and daemon run on the row's cores.

While each row runs, ``ss -uanp`` is sampled (0.3 s in, then every 2 s) for UDP sockets owned by the
row's processes and their children; the row's note says what was found.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from . import placement
from .hop import PERIOD_S, SIZES, lost_note, paced_row, warmup
from .stats import Row, skipped

NODE = [sys.executable, "-m", "tests.bench.peer_node"]
ROOT = Path(__file__).resolve().parents[2]  # the repository root: ``tests.bench`` imports from there
LOOPBACK = ("127.", "[::1]", "::1", "[::ffff:127.")
UNCONNECTED = ("0.0.0.0:*", "*:*", "[::]:*")
CHECK_EVERY_S = 2.0  # UDP check: seconds between samples of ss -uanp
NAMES = {
    "zmq": "raw pyzmq ipc, two processes, + protobuf",
    "zenoh": "eclipse-zenoh Python, two processes (peer, tcp loopback)",
    "dora": "dora-rs Python nodes, two processes (via the dora daemon)",
}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def dora_cli() -> str | None:
    """The ``dora`` executable beside this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "dora"
    return str(here) if here.exists() else shutil.which("dora")


def missing(transport: str) -> str | None:
    """Why a transport cannot run here (None: it can)."""
    hint = "install the bench extra: pip install -e '.[bench]' (make bench does)"
    if transport == "zenoh" and importlib.util.find_spec("zenoh") is None:
        return f"eclipse-zenoh is not installed; {hint}"
    if transport == "dora":
        if importlib.util.find_spec("dora") is None:
            return f"dora-rs is not installed; {hint}"
        if dora_cli() is None:
            return f"the dora CLI (dora-rs-cli) is not installed; {hint}"
    if shutil.which("ss") is None and transport != "zmq":
        return "ss (iproute2) is missing, so the no-UDP check cannot be made; apt-get install iproute2"
    return None


def peer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with the repository root first on ``PYTHONPATH``, so that
    ``python -m tests.bench.peer_node`` imports whatever the working directory is."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- process bookkeeping and the loopback check ------------------------------------------------------


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every live process below them (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


class UdpCheck:
    """Samples ``ss -uanp`` for UDP sockets owned by a set of processes and their children."""

    def __init__(self) -> None:
        self.samples = 0
        self.found: set[str] = set()

    def sample(self, roots: set[int]) -> None:
        pids = descendants(roots)
        out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, timeout=5, check=False).stdout
        self.samples += 1
        for line in out.splitlines():
            if any(f"pid={p}," in line for p in pids):
                self.found.add(" ".join(line.split()))

    @property
    def non_loopback(self) -> list[str]:
        """Sockets bound to a non-loopback address, or connected to one (columns: state, queues, local, peer)."""
        return [
            ln
            for ln in self.found
            if not ln.split()[3].startswith(LOOPBACK) or not ln.split()[4].startswith((*LOOPBACK, *UNCONNECTED))
        ]

    def note(self) -> str:
        if not self.samples:
            return "UDP check: not sampled (the run ended first)"
        if not self.found:
            return f"ss -uanp ({self.samples} sample{'s' * (self.samples != 1)} during the runs): no UDP socket"
        bad = self.non_loopback
        kind = f"{len(bad)} NOT on loopback: {'; '.join(sorted(bad))}" if bad else "all on loopback"
        return f"ss -uanp ({self.samples} sample{'s' * (self.samples != 1)}): {len(self.found)} UDP socket(s), {kind}"


def wait_all(procs: list[subprocess.Popen], deadline: float, check: UdpCheck | None, roots: set[int]) -> None:
    """Wait for every process to exit (or the deadline), sampling the UDP check 0.3 s in, then every 2 s.

    Sparse on purpose: a sample (``ss`` and a walk of /proc) takes CPU from the row being measured.
    """
    next_check = time.monotonic() + 0.3
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if check is not None and time.monotonic() >= next_check:
            check.sample(roots)
            next_check += CHECK_EVERY_S
        time.sleep(0.05)


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM what is still running (with its children), then SIGKILL what ignores it."""
    pids = descendants({p.pid for p in procs if p.poll() is None})
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + 3
        while time.monotonic() < end and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
        if not pids:
            break
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(1)


def _args(shape: tuple[int, ...], count: int, timeout: float) -> list[str]:
    n = count + warmup(count)
    return [
        *("--shape", "x".join(map(str, shape)), "--count", str(n), "--warmup", str(warmup(count))),
        *("--period-us", f"{PERIOD_S * 1e6:g}", "--timeout", f"{timeout:g}"),
    ]


def _result(out: Path, logs: list[Path]) -> np.ndarray:
    if not out.exists():
        lines = [ln.strip() for log in logs if log.exists() for ln in log.read_text().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        raise RuntimeError(f"the subscriber wrote no result ({(errors or lines or ['no output'])[0][:300]})")
    return np.load(out).astype(np.float64) / 1e3


# -- zenoh and zmq: two processes started here -----------------------------------------------------------


def pair_hop(
    transport: str, shape: tuple[int, ...], count: int, cores: tuple[int, int], tmp: Path, check: UdpCheck | None
) -> np.ndarray:
    """Latencies (µs) of one run between a publisher and a subscriber process started here."""
    timeout = (count + warmup(count)) * PERIOD_S * 3 + 20
    tag = f"{transport}-{time.monotonic_ns()}"
    out = tmp / f"{tag}.npy"
    endpoint = f"tcp/127.0.0.1:{free_port()}" if transport == "zenoh" else f"ipc://{tmp}/{tag}.ipc"
    common = [*_args(shape, count, timeout), "--endpoint", endpoint]
    logs = [tmp / f"{tag}-sub.log", tmp / f"{tag}-pub.log"]
    procs: list[subprocess.Popen] = []
    try:
        for role, cpu, log in (("sub", cores[1], logs[0]), ("pub", cores[0], logs[1])):
            extra = ["--out", str(out)] if role == "sub" else ["--wait-for", f"{out}.ready"]
            with log.open("w") as f, placement.pinned({cpu}):  # and --cpu pins it again before any import
                procs.append(
                    subprocess.Popen(
                        [*NODE, transport, role, *common, *extra, "--cpu", str(cpu)],
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        cwd=tmp,
                        env=peer_env(),
                    )
                )
        wait_all(procs, time.monotonic() + timeout + 10, check, {p.pid for p in procs})
    finally:
        stop(procs)
    return _result(out, logs)


# -- dora: coordinator and daemon started by hand, loopback only, no multicast ----------------------------


class DoraCluster:
    """A dora coordinator and daemon on free loopback ports, pinned to ``cores``; stopped on exit."""

    def __init__(self, tmp: Path, cores: set[int]):
        self.tmp, self.cores = tmp, cores
        self.port, self.listen = free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.cli = dora_cli() or "dora"
        self.addr = ["--coordinator-addr", "127.0.0.1", "--coordinator-port", str(self.port)]
        self.no_multicast = ["--zenoh-no-multicast", "--zenoh-listen", "127.0.0.1"]
        # dora-artifacts-* go into tmp, removed with it; the daemon's nodes inherit PYTHONPATH (the repository root)
        self.env = peer_env(dict(os.environ, TMPDIR=str(tmp)))

    @property
    def commands(self) -> list[list[str]]:
        """The coordinator and daemon command lines (docs/benchmarks-method.md shows them)."""
        return [
            [self.cli, "coordinator", "--interface", "127.0.0.1", "--port", str(self.port), "--store", "memory"],
            [self.cli, "daemon", *self.addr, "--local-listen-port", str(self.listen), *self.no_multicast],
        ]

    def __enter__(self) -> DoraCluster:
        try:
            for cmd, name in zip(self.commands, ("coordinator", "daemon"), strict=True):
                log = self.tmp / f"dora-{name}.log"
                with log.open("w") as f, placement.pinned(self.cores):  # the child inherits this thread's affinity
                    self.procs.append(
                        subprocess.Popen(  # cwd: dora writes an out/ folder of logs where it runs
                            [*cmd, "--quiet"], stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp
                        )
                    )
            self._wait_ready()
        except BaseException:
            stop(self.procs)
            raise
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for proc, name in zip(self.procs, ("coordinator", "daemon"), strict=True):
                if proc.poll() is not None:
                    log = (self.tmp / f"dora-{name}.log").read_text().strip().splitlines()
                    raise RuntimeError(f"the dora {name} exited ({log[-1] if log else 'no output'})")
            r = subprocess.run(
                [self.cli, "status", *self.addr, "-f", "json"], capture_output=True, text=True, timeout=10, check=False
            )
            with contextlib.suppress(ValueError):
                if json.loads(r.stdout[: r.stdout.rfind("}") + 1]).get("daemon", {}).get("status") == "running":
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the dora daemon did not connect to the coordinator within {timeout:.0f} s")

    def __exit__(self, *exc: object) -> None:
        stop(self.procs)

    def hop(self, shape: tuple[int, ...], count: int, cores: tuple[int, int], check: UdpCheck) -> np.ndarray:
        """Latencies (µs) of one run of a publisher → subscriber dataflow."""
        timeout = (count + warmup(count)) * PERIOD_S * 3 + 20
        tag = f"dora-{time.monotonic_ns()}"
        out = self.tmp / f"{tag}.npy"
        common = " ".join([*NODE[1:], "dora", "{role}", *_args(shape, count, timeout)])
        flow = {
            "nodes": [
                {
                    "id": "pub",
                    "path": sys.executable,
                    "args": common.format(role="pub") + f" --cpu {cores[0]} --wait-for {out}.ready",
                    "outputs": ["out"],
                    "env": {"PYTHONPATH": self.env["PYTHONPATH"]},
                },
                {
                    "id": "sub",
                    "path": sys.executable,
                    "args": common.format(role="sub") + f" --cpu {cores[1]} --out {out}",
                    "inputs": {"x": {"source": "pub/out", "queue_size": 1000}},
                    "env": {"PYTHONPATH": self.env["PYTHONPATH"]},
                },
            ]
        }
        path = self.tmp / f"{tag}.yml"
        path.write_text(yaml.safe_dump(flow, sort_keys=False))
        log = self.tmp / f"{tag}.log"
        with log.open("w") as f, placement.pinned(self.cores):
            start = subprocess.Popen(
                [self.cli, "start", str(path), *self.addr, "--attach"],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env=self.env,
            )
        try:
            wait_all([start], time.monotonic() + timeout + 20, check, {start.pid, *(p.pid for p in self.procs)})
        finally:
            stop([start])
            self._kill_nodes()
        return _result(out, [log])

    def _kill_nodes(self) -> None:
        """SIGKILL node processes a failed run left behind (children of the daemon), before the next run."""
        daemon = self.procs[1].pid
        for pid in descendants({daemon}) - {daemon}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# -- the suite -------------------------------------------------------------------------------------------


def transport_rows(transport: str, cores: tuple[int, int], where: str, count: int, repeats: int) -> list[Row]:
    """One row per message size for one transport and placement (dora: one coordinator + daemon for all)."""
    name, rows = NAMES[transport], []
    version = _version({"zenoh": "eclipse-zenoh", "dora": "dora-rs", "zmq": "pyzmq"}[transport])
    with tempfile.TemporaryDirectory(prefix="krabgraph-bench-") as tmpdir:
        tmp = Path(tmpdir)
        cluster = DoraCluster(tmp, set(cores)) if transport == "dora" else None
        with cluster or contextlib.nullcontext():
            for label, shape in SIZES.items():
                check = UdpCheck() if transport != "zmq" else None
                if cluster is not None:
                    measure = functools.partial(cluster.hop, shape, count, cores, check)
                else:
                    measure = functools.partial(pair_hop, transport, shape, count, cores, tmp, check)
                row = paced_row(f"hop: {label}", name, measure, count, repeats, placement=where)
                if row.ran:
                    row.note = f"{transport} {version}; paced at {1 / PERIOD_S:.0f} Hz"
                    if check is not None:
                        row.note += f"; {check.note()}"
                        row.extra["udp_non_loopback"] = check.non_loopback
                    lost_note(row, count)
                rows.append(row)
    return rows


def run(count: int, repeats: int) -> list[Row]:
    rows: list[Row] = []
    for where, a, b in placement.placements():
        for transport, name in NAMES.items():
            groups = [f"hop: {label}" for label in SIZES]
            text = placement.label(where, a, b)
            reason = missing(transport) or (None if b is not None else "only one core available")
            if reason:
                rows += [skipped(g, name, reason, placement=text) for g in groups]
                continue
            if transport == "dora":
                text += f"; coordinator + daemon on {', '.join(map(str, sorted({a, b})))}"
            try:
                rows += transport_rows(transport, (a, b), text, count, repeats)
            except Exception as exc:  # the dora coordinator or daemon did not start: say so on every row
                rows += [skipped(g, name, f"failed: {exc}", placement=text) for g in groups]
    return rows
