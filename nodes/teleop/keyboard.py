"""Keyboard teleop: velocity set-points from a terminal, read without blocking the graph."""

from __future__ import annotations

import errno
import os
import termios

from krabgraph.launch import Param
from krabgraph.nodes.teleop.base import TeleopNode

# key -> (axis, sign); axis 0 = vx, 1 = vy, 2 = yaw rate
KEYS: dict[bytes, tuple[int, int]] = {
    b"w": (0, +1), b"s": (0, -1), b"a": (1, +1), b"d": (1, -1), b"q": (2, +1), b"e": (2, -1),
    b"\x1b[A": (0, +1), b"\x1b[B": (0, -1), b"\x1b[D": (2, +1), b"\x1b[C": (2, -1),  # arrows
    b"\x1bOA": (0, +1), b"\x1bOB": (0, -1), b"\x1bOD": (2, +1), b"\x1bOC": (2, -1),  # arrows, application mode
}  # fmt: skip
STOP_KEYS = (b" ", b"x")
HELP = (
    "keyboard teleop: w/s (or up/down) forward/back, a/d left/right, q/e (or left/right) turn, "
    "space or x stop; keep pressing or hold any key (e.g. k) to keep moving: "
    "{deadman:.1f} s without a key stops the robot"
)


def parse_keys(buf: bytes) -> tuple[list[bytes], bytes]:
    """Split terminal input into keys (single bytes or arrow escape sequences); returns (keys, rest).

    ``rest`` is an incomplete escape sequence at the end of ``buf``, to be completed by later input.
    """
    keys, i = [], 0
    while i < len(buf):
        if buf[i : i + 1] == b"\x1b":
            seq = buf[i : i + 3]
            if len(seq) < 3 and (seq in (b"\x1b", b"\x1b[", b"\x1bO")):
                return keys, buf[i:]
            if seq[1:2] in (b"[", b"O"):
                keys.append(seq)
                i += 3
                continue
        keys.append(buf[i : i + 1])
        i += 1
    return keys, b""


class KeyboardTeleop(TeleopNode):
    """Velocity set-points from key presses in a terminal (character mode, no echo, non-blocking).

    Keys: ``w``/``s`` (or up/down arrows) change the forward speed by ``vx_step``, ``a``/``d`` the
    sideways speed by ``vy_step``, ``q``/``e`` (or left/right arrows) the yaw rate by ``yaw_step``
    (each clipped to its maximum); space or ``x`` zero all three. Every key, mapped or not,
    refreshes the deadman: hold one (terminal autorepeat) or keep tapping to keep moving; after
    ``deadman_s`` without a key the command and the set-point go to zero.

    The terminal ``tty`` (default: the controlling terminal) is opened non-blocking and put into
    character mode (no line buffering, no echo, ``VMIN = VTIME = 0``) on activation; its settings
    are restored on deactivation. Ctrl-C still interrupts the graph (signals stay enabled). Reads
    happen on the publishing timer and return at once, so the graph is never blocked.
    """

    source_name = "keyboard"
    tty = Param(str, "/dev/tty", "terminal to read keys from (a tty or pty device)")
    vx_step = Param(float, 0.1, "forward speed change per key press", unit="m/s", gt=0)
    vy_step = Param(float, 0.1, "sideways speed change per key press", unit="m/s", gt=0)
    yaw_step = Param(float, 0.2, "yaw rate change per key press", unit="rad/s", gt=0)

    def on_configure(self) -> None:
        try:
            self.fd = os.open(self.tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise RuntimeError(f"keyboard_teleop: cannot open terminal {self.tty!r}: {exc.strerror}") from None
        if not os.isatty(self.fd):
            os.close(self.fd)
            raise RuntimeError(f"keyboard_teleop: {self.tty!r} is not a terminal")
        self._saved: list | None = None
        self._pending = b""
        self.keys_seen = 0

    def on_activate(self) -> None:
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: character mode, no echo; ISIG stays on
        mode[6][termios.VMIN] = 0
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        termios.tcflush(self.fd, termios.TCIFLUSH)  # keys typed before activation do not count
        super().on_activate()
        self.log.info(HELP.format(deadman=self.deadman_s))

    def _read(self) -> bytes:
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 1024)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def poll(self) -> None:
        data = self._read()
        if not data:
            return
        keys, self._pending = parse_keys(self._pending + data)
        for key in keys:
            self.press(key.lower() if len(key) == 1 else key)

    def press(self, key: bytes) -> None:
        """Apply one key (see the class docstring)."""
        self.keys_seen += 1
        if not self.alive:
            self.target = (0.0, 0.0, 0.0)  # after a deadman trip, start again from standstill
        self.touch()
        if key in STOP_KEYS:
            self.target = (0.0, 0.0, 0.0)
            return
        if key not in KEYS:
            return
        axis, sign = KEYS[key]
        step = (self.vx_step, self.vy_step, self.yaw_step)[axis]
        target = list(self.target)
        target[axis] += sign * step
        self.target = self.clip(*(round(v, 9) for v in target))

    def _restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error as exc:
                self.log.warning("could not restore the terminal settings of %s: %s", self.tty, exc)
            self._saved = None

    def on_deactivate(self) -> None:
        super().on_deactivate()
        self._restore()

    def on_shutdown(self) -> None:
        self._restore()
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)
            self.fd = None


__all__ = ["KEYS", "KeyboardTeleop", "parse_keys"]
