"""Keyboard teleop in real pseudo-terminals: key mapping, the deadman, terminal modes, never blocking."""

from __future__ import annotations

import os
import pty
import select
import sys
import termios
import textwrap
import threading
import time

import pytest

from krabgraph.launch import Executor, Input, Node, build_graph, graph_from_dict
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import VelocityCommand
from krabgraph.nodes.teleop.keyboard import KeyboardTeleop, parse_keys


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(slave)
    os.close(master)


def last(h: NodeHarness) -> tuple[float, float, float]:
    m = h.outputs["cmd_vel"][-1]
    assert m.source == "keyboard"
    return round(m.vx, 6), round(m.vy, 6), round(m.yaw_rate, 6)


def type_keys(h: NodeHarness, master: int, keys: bytes, dt: float = 0.02) -> None:
    os.write(master, keys)
    time.sleep(0.02)  # let the pty carry the bytes
    h.advance(dt)


def test_parse_keys_handles_arrows_and_split_escape_sequences():
    assert parse_keys(b"w\x1b[Aq ") == ([b"w", b"\x1b[A", b"q", b" "], b"")
    assert parse_keys(b"d\x1b[") == ([b"d"], b"\x1b[")
    assert parse_keys(b"\x1b[" + b"C") == ([b"\x1b[C"], b"")
    assert parse_keys(b"\x1b") == ([], b"\x1b")


def test_keys_step_the_set_point_and_the_deadman_zeroes_it(pty_pair):
    master, path = pty_pair
    h = NodeHarness(KeyboardTeleop, name="kb", tty=path, deadman_s=0.5, max_vx=0.5)
    h.start()
    try:
        mode = termios.tcgetattr(master)
        assert not mode[3] & termios.ICANON and not mode[3] & termios.ECHO  # character mode, no echo
        h.advance(0.04)
        assert last(h) == (0.0, 0.0, 0.0)  # nothing pressed: zero
        type_keys(h, master, b"ww")
        assert last(h) == (0.2, 0.0, 0.0)
        type_keys(h, master, b"qaW")  # turn left, step left, uppercase counts
        assert last(h) == (0.3, 0.1, 0.2)
        type_keys(h, master, b"\x1b[")  # an arrow split across two reads
        type_keys(h, master, b"B")
        assert last(h) == (0.2, 0.1, 0.2)
        type_keys(h, master, b"w" * 20)
        assert last(h)[0] == 0.5  # clipped to max_vx
        type_keys(h, master, b" ")
        assert last(h) == (0.0, 0.0, 0.0)
        type_keys(h, master, b"ddk")  # k: not mapped, but it is input
        h.advance(0.4)
        assert last(h) == (0.0, -0.2, 0.0)  # 0.42 s since the last key: still alive
        h.advance(0.2)
        assert last(h) == (0.0, 0.0, 0.0)  # deadman
        assert h.node.deadman_tripped
        type_keys(h, master, b"w")
        assert last(h) == (0.1, 0.0, 0.0)  # starts again from standstill, not from the old set-point
    finally:
        h.stop()
    mode = termios.tcgetattr(master)
    assert mode[3] & termios.ICANON and mode[3] & termios.ECHO  # restored


def test_not_a_terminal_is_one_clear_error(tmp_path):
    f = tmp_path / "plain"
    f.write_text("")
    with pytest.raises(RuntimeError, match="not a terminal"):
        NodeHarness(KeyboardTeleop, tty=str(f)).start()
    with pytest.raises(RuntimeError, match="cannot open terminal"):
        NodeHarness(KeyboardTeleop, tty=str(tmp_path / "missing")).start()


class Tally(Node):
    """Counts velocity commands and a 100 Hz timer of its own (to show the loop is never blocked)."""

    kind = "recorder"
    cmd = Input(VelocityCommand, queue=16)

    def on_configure(self) -> None:
        self.vx: list[float] = []
        self.ticks = 0

    def on_activate(self) -> None:
        self.create_timer(0.01, self.tick)

    def tick(self) -> None:
        self.ticks += 1

    def on_cmd(self, m: VelocityCommand) -> None:
        self.vx.append(m.vx)


def test_the_graph_keeps_running_while_the_keyboard_is_idle(pty_pair):
    master, path = pty_pair
    nodes = {
        "kb": {"class": KeyboardTeleop, "params": {"tty": path, "deadman_s": 0.3}},
        "tally": {"class": Tally, "inputs": {"cmd": "kb/cmd_vel"}},
    }
    ex = Executor(build_graph(graph_from_dict({"clock": "wall", "nodes": nodes})))

    def typist() -> None:
        time.sleep(0.3)
        for _ in range(4):
            os.write(master, b"w")
            time.sleep(0.1)

    t = threading.Thread(target=typist)
    t.start()
    assert ex.run(duration_s=1.5, handle_signals=False) == 0
    t.join()
    tally = ex.nodes["tally"]
    assert tally.ticks == pytest.approx(150, abs=8)  # its 100 Hz timer was never held up
    assert len(tally.vx) == pytest.approx(75, abs=5)  # 50 Hz of commands, with or without keys
    assert max(tally.vx) == pytest.approx(0.4)  # four presses
    assert tally.vx[:10] == [0.0] * 10 and tally.vx[-10:] == [0.0] * 10  # before the keys; after the deadman


CHILD = textwrap.dedent(
    """
    import logging, sys
    from krabgraph.launch import Executor, Input, Node, build_graph, graph_from_dict
    from krabgraph.msgs import VelocityCommand

    class Dump(Node):
        kind = "recorder"
        cmd = Input(VelocityCommand, queue=16)
        def on_configure(self):
            self.out = open(sys.argv[1], "w", buffering=1)
        def on_cmd(self, m):
            self.out.write(f"{m.vx:.3f} {m.yaw_rate:.3f}\\n")

    nodes = {"kb": {"class": "keyboard_teleop", "params": {"deadman_s": 0.5}},   # tty: the default /dev/tty
             "dump": {"class": Dump, "inputs": {"cmd": "kb/cmd_vel"}}}
    logging.basicConfig(level=logging.INFO)  # the node logs its key help on activation: the parent waits for it
    ex = Executor(build_graph(graph_from_dict({"clock": "wall", "nodes": nodes})))
    sys.exit(ex.run(duration_s=2.5, handle_signals=False))
    """
)


def test_controlling_terminal_of_a_forked_graph(tmp_path):
    """pty.fork: the graph's /dev/tty is the pty; keys typed on the master side steer it."""
    out = tmp_path / "cmds.txt"
    pid, master = pty.fork()
    if pid == 0:  # child: its controlling terminal is the pty slave
        os.execv(sys.executable, [sys.executable, "-c", CHILD, str(out)])
    try:
        seen, deadline = b"", time.monotonic() + 30.0
        while b"keyboard teleop:" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # EIO: the child is gone
                    break
        assert b"keyboard teleop:" in seen, seen.decode(errors="replace")
        time.sleep(0.1)
        os.write(master, b"wwe")
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    assert os.WEXITSTATUS(status) == 0, seen.decode(errors="replace")
    assert b"wwe" not in seen  # no echo of the keys
    rows = [tuple(map(float, line.split())) for line in out.read_text().splitlines()]
    assert (0.2, -0.2) in rows and rows[-1] == (0.0, 0.0)
