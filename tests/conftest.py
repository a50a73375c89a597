"""Shared fixtures: graph files written into a temporary directory, and a leak check."""

from __future__ import annotations

import textwrap
import threading
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
