"""Instances are isolated (issue 14, item 1): a second launch of a running multi-process graph on the
same host (same name and base_port) used to bind the first copy's ipc endpoints silently, taking over
its robot. Now it refuses with one line and a nonzero exit before anything binds; ``--instance NAME``
runs another copy with its own endpoints; the socket files a crashed run left behind are removed.

Real ``krabgraph launch`` subprocesses on a fake robot behind safety, split in two processes (ipc),
loopback only; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from krabgraph.launch import build_graph, load_graph
from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.endpoints import ipc_dir, plan
from krabgraph.launch.runtime.transport import InstanceLock, claim, lock_path

RUNNING = r"\[robot\] krabgraph.safety: SOFT_START -> ACTIVE"  # the brain's commands reach safety
ERRORS = re.compile(r"^(error|Traceback)", re.M)


@pytest.fixture
def split(tmp_path, unique, write_split) -> Path:
    name, port = unique("inst")
    path = write_split(tmp_path / "split.yaml", name, port)
    yield path
    for stem in (f"{name}.{port}", f"{name}@b.{port}"):  # whatever a failed test left behind
        for leftover in ipc_dir().glob(f"{stem}.*"):
            leftover.unlink(missing_ok=True)


def stem_files(path: Path) -> list[str]:
    """The files of the graph's default instance in the private ipc directory."""
    graph = build_graph(load_graph(path))
    return sorted(p.name for p in ipc_dir().glob(f"{graph.name}.{graph.decl.base_port}.*"))


def test_second_launch_is_refused_with_one_line_and_the_first_keeps_running(split, launch):
    first = launch(str(split))
    pid = first.proc.pid
    first.wait_for(RUNNING, 30)
    second = launch(str(split))
    assert second.wait(timeout=30) == 1
    errors = ERRORS.findall(second.text)
    assert errors == ["error"], second.text  # one line, no traceback
    (line,) = [ln for ln in second.text.splitlines() if ln.startswith("error")]
    name = build_graph(load_graph(split)).name
    assert line.startswith(f"error: graph {name!r} is already running on this host (pid {pid}, lock ")
    assert "--instance NAME" in line
    assert "launching" not in second.text and "exported" not in second.text  # refused before anything
    # A process started by hand beside the running copy is refused the same way.
    hand = launch(str(split), "--process", "brain")
    assert hand.wait(timeout=30) == 1
    (line,) = [ln for ln in hand.text.splitlines() if ln.startswith("error")]
    assert line.startswith(f"error: process 'brain' of graph {name!r} is already running on this host (pid ")
    # The first copy never noticed: no safety trip, no lost brain; it stops normally.
    time.sleep(0.5)
    assert first.proc.poll() is None
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0, first.text
    assert "SAFETY TRIP" not in first.text and "exited with code" not in first.text, first.text
    assert stem_files(split) == []  # sockets and locks removed on the way out


def test_instance_runs_a_second_copy_with_its_own_endpoints(split, launch):
    first = launch(str(split))
    first.wait_for(RUNNING, 30)
    other = launch(str(split), "--instance", "b", "--duration", "1.5")
    assert other.wait(timeout=30) == 0, other.text
    name = build_graph(load_graph(split)).name
    assert re.search(rf"\[robot\] .* exported on ipc://\S+/{name}@b\.\d+\.\d+$", other.text, re.M), other.text
    assert first.proc.poll() is None  # untouched
    first.signal(signal.SIGINT)
    assert first.wait(timeout=15) == 0, first.text
    bad = launch(str(split), "--instance", "../x")
    assert bad.wait(timeout=30) == 1
    assert ERRORS.findall(bad.text) == ["error"] and "--instance '../x'" in bad.text


def test_stale_endpoints_of_a_killed_run_are_removed(split, launch):
    """Every process of a run killed with SIGKILL: its socket and lock files stay; the next launch
    takes the locks (the OS dropped them), removes the sockets, says so, and runs."""
    crashed = launch(str(split))
    pids = {m: int(crashed.wait_for(rf"started process '{m}' \(pid (\d+)\)", 30).group(1)) for m in ("robot", "brain")}
    crashed.wait_for(RUNNING, 30)
    crashed.signal(signal.SIGSTOP)  # a frozen supervisor cannot clean up after its children
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    crashed.kill()
    left = stem_files(split)
    assert sum(not n.endswith(".lock") for n in left) == 2 and sum(n.endswith(".lock") for n in left) == 3, left
    again = launch(str(split), "--duration", "1.5")
    assert again.wait(timeout=30) == 0, again.text
    for proc in ("robot", "brain"):
        removed = rf"\[{proc}\] krabgraph.transport: process {proc}: removed 1 stale ipc socket file"
        assert re.search(removed, again.text), again.text
    assert stem_files(split) == []


def test_lock_is_exclusive_across_open_files_and_released(tmp_path, split):
    """The lock itself: a second holder is told the first's pid; release frees it (and the file)."""
    graph = build_graph(load_graph(split))
    held = claim(graph, "robot")
    try:
        with pytest.raises(KrabgraphError, match=rf"process 'robot' of graph .* already running .*pid {os.getpid()}"):
            claim(graph, "robot")
        other = claim(graph, "brain")  # another process of the instance: its own lock
        other.release()
    finally:
        held.release()
    assert not lock_path(graph, "robot").exists()
    again = InstanceLock.try_acquire(lock_path(graph, "robot"))
    assert isinstance(again, InstanceLock)
    again.release()
    assert all(e.ipc.startswith(f"ipc://{ipc_dir()}/{graph.name}.") for e in plan(graph).values())


def test_supervisor_cleans_up_after_a_killed_child(split, launch):
    run = launch(str(split))
    brain = int(run.wait_for(r"started process 'brain' \(pid (\d+)\)", 30).group(1))
    run.wait_for(RUNNING, 30)
    graph = build_graph(load_graph(split))
    name, socket = graph.name, plan(graph)[("policy/joint_command", "brain")].ipc.rpartition("/")[2]
    os.kill(brain, signal.SIGKILL)
    run.wait_for(r"krabgraph.transport: process brain: removed 1 stale ipc socket file", 5)
    deadline = time.monotonic() + 2  # the lock goes just after that line
    while any(n.endswith(".brain.lock") for n in stem_files(split)) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = stem_files(split)
    assert socket not in left and not any(n.endswith(".brain.lock") for n in left), left
    assert any(n.endswith(".robot.lock") for n in left), left  # the robot still runs
    run.signal(signal.SIGTERM)
    assert run.wait(timeout=15) == 1  # the brain was killed: a failure
    assert "Traceback" not in run.text and name in run.text
    assert stem_files(split) == []
