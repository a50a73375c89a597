"""Helpers of the fault suite: the split graph (robot + safety | policy) that several cases launch."""

from __future__ import annotations

from pathlib import Path

import pytest

SPLIT_GRAPH = """\
name: {name}
clock: wall
robot: go2
base_port: {port}
processes: {{robot: {{}}, brain: {{}}}}
nodes:
  robot: {{class: fake_robot, process: robot, inputs: {{command: safety/joint_command}}}}
  policy: {{class: hold_pose, process: brain, inputs: {{state: robot/state}}}}
  safety: {{class: safety, process: robot, inputs: {{state: robot/state, command: policy/joint_command}}}}
"""


@pytest.fixture
def write_split():
    """``write_split(path, name, port)``: the fake robot and safety in process robot, hold_pose in brain."""

    def write(path: Path, name: str, port: int) -> Path:
        path.write_text(SPLIT_GRAPH.format(name=name, port=port))
        return path

    return write
