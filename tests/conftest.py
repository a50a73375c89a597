"""Shared fixtures: graph files written into a temporary directory, a leak check, and ``krabgraph launch``
in a subprocess whose stderr is collected."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import krabgraph.nodes.mujoco  # noqa: F401  (chooses MuJoCo's OpenGL backend before a test imports MuJoCo)


@pytest.fixture
def write_graph(tmp_path: Path):
    """Write a graph file (dedented YAML) and return its path."""

    def write(text: str, name: str = "g.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def no_thread_leak():
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left behind: {leaked}"


class Launch:
    """``python -m krabgraph launch ...`` in a subprocess; its stderr lines gathered by a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        argv = [sys.executable, "-m", "krabgraph", "launch", *args]
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd, errors="replace"
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first stderr line matching ``pattern``, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.text[-6000:]}")

    def log(self, lines: int = 60) -> str:
        """The last ``lines`` stderr lines."""
        return "".join(self.lines[-lines:])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code, within ``timeout`` seconds (then stderr is complete)."""
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Whether ``predicate()`` held within ``timeout`` seconds (polled every 10 ms); never a pass/fail
    threshold by itself, only a bound on how long a test waits."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


STAIRS = {"start": 0.5}  # hal.terrain_params of walk_on_stairs_with_tap: the first step 0.5 m ahead


@contextlib.contextmanager
def walk_on_stairs_with_tap(endpoint: str, duration_s: float = 300.0) -> Iterator[Launch]:
    """The walk graph in lockstep at real time on stairs (first step 0.5 m ahead, inside the height
    scan from the start) with its tap on ``endpoint``; stopped with SIGTERM (killed if it hangs)."""
    run = Launch(
        "walk", "--clock", "sim:1.0", "--tap", endpoint, "--set", "hal.terrain=stairs",
        "--set", f"hal.terrain_params={json.dumps(STAIRS)}", "--duration", str(duration_s),
    )  # fmt: skip
    try:
        run.wait_for(r"tap open on", 60)
        yield run
    finally:
        run.signal(signal.SIGTERM)
        try:
            run.wait(20)
        except subprocess.TimeoutExpired:
            run.kill()


@pytest.fixture
def launch():
    """Start ``krabgraph launch`` subprocesses; any still running at the end are killed."""
    started: list[Launch] = []

    def start(*args: str, **kw) -> Launch:
        run = Launch(*args, **kw)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


@pytest.fixture
def unique():
    """``unique(prefix)``: a graph name and base_port that no other test run on this host uses now."""

    def make(prefix: str) -> tuple[str, int]:
        return f"{prefix}{os.getpid()}", 30000 + (os.getpid() * 17 + sum(map(ord, prefix)) * 101) % 20000

    return make
