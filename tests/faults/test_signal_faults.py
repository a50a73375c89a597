"""Clean shutdown under repeated signals (issue 14, item 9): a second SIGINT/SIGTERM during
shutdown escalates (shorter waits) without a traceback, and safety still sends its last damping
command; under the supervisor, its children get the same treatment (one SIGTERM per signal).

Real ``krabgraph launch`` subprocesses on a fake robot behind safety (no simulator), one process or
split in two (ipc). A ``slow`` node takes ``SLOW_S`` to deactivate and is deactivated before safety,
so the second signal lands mid-shutdown, before the damping command goes out. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

SLOW_S = 1.0  # how long the slow node's deactivation takes
DAMPING = "krabgraph.safety: deactivated: sending a last damping command"

SLOW_NODE = """\
import time

from krabgraph.launch import Node


class SlowStop(Node):
    \"\"\"Takes a while to deactivate (a driver closing a device), so a second signal comes mid-shutdown.\"\"\"

    def on_deactivate(self) -> None:
        time.sleep({slow})
"""

GRAPH = """\
name: {name}
clock: wall
robot: go2
base_port: {port}
{processes}nodes:
  robot: {{class: fake_robot, inputs: {{command: safety/joint_command}}{robot}}}
  policy: {{class: hold_pose, inputs: {{state: robot/state}}{brain}}}
  safety: {{class: safety, inputs: {{state: robot/state, command: policy/joint_command}}{robot}}}
  slow: {{class: "slow_stop:SlowStop"{robot}}}
"""


def write_graph(tmp_path: Path, name: str, port: int, split: bool) -> tuple[Path, dict[str, str]]:
    """The graph file and the environment that lets a child import the slow node."""
    (tmp_path / "slow_stop.py").write_text(SLOW_NODE.format(slow=SLOW_S))
    text = GRAPH.format(
        name=name,
        port=port,
        processes="processes: {robot: {}, brain: {}}\n" if split else "",
        robot=", process: robot" if split else "",
        brain=", process: brain" if split else "",
    )
    path = tmp_path / "g.yaml"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return path, env


@pytest.mark.parametrize(
    ("split", "first", "second"),
    [
        (False, signal.SIGINT, signal.SIGINT),
        (False, signal.SIGTERM, signal.SIGINT),
        (True, signal.SIGINT, signal.SIGINT),
        (True, signal.SIGTERM, signal.SIGTERM),
    ],
    ids=["one-process-int-int", "one-process-term-int", "supervised-int-int", "supervised-term-term"],
)
def test_second_signal_mid_shutdown_stops_faster_without_traceback_and_damps(
    tmp_path, launch, unique, split, first, second
):
    name, port = unique(f"sig{int(split)}{first}{second}")
    path, env = write_graph(tmp_path, name, port, split)
    run = launch(str(path), "--allow-module", "slow_stop", env=env, cwd=tmp_path)
    run.wait_for(r"safety: WAITING -> SOFT_START", 30)  # the robot's state reaches safety: running
    run.signal(first)
    # The process holding safety received its stop request (from the supervisor: as SIGTERM).
    got = "SIGTERM" if split else first.name
    where = r"\[robot\] " if split else ""
    run.wait_for(rf"{where}krabgraph.executor: received {got}: shutting down", 5)
    run.signal(second)  # the slow node is still deactivating: safety has not damped yet
    code = run.wait(timeout=SLOW_S + 10)
    text = run.text
    assert code == 0, text
    assert "Traceback" not in text, text
    again = "SIGTERM" if split else second.name
    lines = text.splitlines()
    escalation = rf"{where}krabgraph.executor: received {again} again"
    (escalated,) = [i for i, ln in enumerate(lines) if re.search(escalation, ln)]
    (damped,) = [i for i, ln in enumerate(lines) if re.search(where + re.escape(DAMPING), ln)]
    assert escalated < damped, text  # the second signal came first, and the damping command still went out
    if split:
        assert f"krabgraph.supervisor: received {second.name} again" in text
        assert "exited normally" in text and "killing it" not in text
        assert "killed by signal" not in text


def test_signals_while_the_children_start_leave_no_traceback(tmp_path, launch, unique):
    """Ctrl-C twice right after the supervisor started its children (still importing): they stop
    without a KeyboardInterrupt traceback and the run exits 0."""
    name, port = unique("sigstart")
    path, env = write_graph(tmp_path, name, port, split=True)
    run = launch(str(path), "--allow-module", "slow_stop", env=env, cwd=tmp_path)
    run.wait_for(r"started process 'brain'", 30)
    run.signal(signal.SIGINT)
    run.signal(signal.SIGINT)
    code = run.wait(timeout=15)
    text = run.text
    assert code == 0, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "killing it" not in text, text
