"""Gamepad teleop: sticks to velocity through Linux evdev (``/dev/input/event*``), headless.

Uses python-evdev (the ``robot`` extra; Linux only; built from source, it needs a C compiler and
the Linux headers). The device is read non-blocking on the publishing timer.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Protocol

from krabgraph.launch import Param
from krabgraph.nodes.teleop.base import TeleopNode

EV_KEY, EV_ABS = 0x01, 0x03  # Linux input event types (linux/input-event-codes.h)
EVDEV_HINT = "gamepad_teleop needs python-evdev (Linux): pip install 'evdev>=1.7' (builds with gcc and Linux headers)"


class Gamepad(Protocol):
    """What the node needs from a device (python-evdev's ``InputDevice`` or a test double)."""

    path: str
    name: str

    def absinfo(self, code: int) -> Any: ...  # has .min and .max
    def active_keys(self) -> list[int]: ...
    def read_events(self) -> list[tuple[int, int, int]]: ...  # (type, code, value), never blocks
    def close(self) -> None: ...


@dataclass
class StickMapping:
    """Maps raw axis values and held buttons to (vx, vy, yaw rate); pure, no device.

    Axes are normalized to [-1, 1] from their ``(min, max)`` range, a ``deadzone`` around the
    centre reads 0 (the rest is rescaled to stay continuous), an axis in ``inverted`` is negated,
    and the result is scaled by ``scale`` (m/s, m/s, rad/s). Evdev's convention: stick up and left
    give negative ABS_Y / ABS_X, so forward/left/counter-clockwise need inversion.
    """

    axes: tuple[int, int, int]  # evdev codes for vx, vy, yaw
    ranges: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    inverted: tuple[bool, bool, bool]
    scale: tuple[float, float, float]
    deadzone: float = 0.1

    def normalize(self, value: int, lo: int, hi: int) -> float:
        if hi <= lo:
            return 0.0
        x = max(-1.0, min(1.0, 2.0 * (value - lo) / (hi - lo) - 1.0))
        if abs(x) <= self.deadzone:
            return 0.0
        return (abs(x) - self.deadzone) / (1.0 - self.deadzone) * (1.0 if x > 0 else -1.0)

    def command(self, values: dict[int, int]) -> tuple[float, float, float]:
        """(vx m/s, vy m/s, yaw rad/s) for the latest raw value of each axis (missing = centred)."""
        out = []
        for code, (lo, hi), inv, s in zip(self.axes, self.ranges, self.inverted, self.scale, strict=True):
            x = self.normalize(values.get(code, (lo + hi) // 2), lo, hi)
            out.append((-x if inv else x) * s)
        return out[0], out[1], out[2]


class _EvdevPad:
    """python-evdev ``InputDevice`` behind the ``Gamepad`` protocol."""

    def __init__(self, device: Any):
        self.dev = device
        self.path, self.name = device.path, device.name

    def absinfo(self, code: int) -> Any:
        return self.dev.absinfo(code)

    def active_keys(self) -> list[int]:
        return list(self.dev.active_keys())

    def read_events(self) -> list[tuple[int, int, int]]:
        try:
            return [(e.type, e.code, e.value) for e in self.dev.read()]
        except BlockingIOError:
            return []

    def close(self) -> None:
        self.dev.close()


def _ecodes() -> Any:
    try:
        from evdev import ecodes
    except ImportError as exc:
        raise ImportError(f"{EVDEV_HINT} ({exc})") from None
    return ecodes


def code_of(name: str) -> int:
    """The evdev code of an axis or button name such as ``ABS_Y`` or ``BTN_TL``."""
    codes = _ecodes().ecodes
    if name not in codes:
        raise ValueError(f"unknown evdev code {name!r} (e.g. ABS_X, ABS_Y, ABS_RX, ABS_RY, BTN_TL, BTN_SOUTH)")
    return int(codes[name])


def _is_gamepad(dev: Any, ecodes: Any) -> bool:
    caps = dev.capabilities()
    axes = {c[0] if isinstance(c, tuple) else c for c in caps.get(ecodes.EV_ABS, [])}
    return ecodes.ABS_X in axes and ecodes.BTN_SOUTH in caps.get(ecodes.EV_KEY, [])


def open_gamepad(device: str = "") -> Gamepad:
    """Open ``device`` (a /dev/input path or part of a device name; "" = the first gamepad found)."""
    ecodes = _ecodes()
    import evdev

    if device.startswith("/"):
        return _EvdevPad(evdev.InputDevice(device))
    seen = []
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except OSError:
            continue
        if (device in dev.name) if device else _is_gamepad(dev, ecodes):
            for other in seen:
                other.close()
            return _EvdevPad(dev)
        seen.append(dev)
    names = ", ".join(f"{d.path} ({d.name})" for d in seen) or "none readable"
    for d in seen:
        d.close()
    what = f"input device named like {device!r}" if device else "gamepad (a device with ABS_X and BTN_SOUTH)"
    raise RuntimeError(f"gamepad_teleop: no {what} found; input devices: {names}")


class GamepadTeleop(TeleopNode):
    """Velocity from a gamepad's sticks, with a hold-to-enable deadman button.

    Default mapping (Linux xpad-style pads): left stick up/down -> vx, left/right -> vy, right
    stick left/right -> yaw rate, each scaled to ``max_vx``/``max_vy``/``max_yaw`` with a
    ``deadzone``. With ``enable_button`` set (default ``BTN_TL``, the left shoulder button) the
    robot moves only while it is held: its state is asked from the kernel on every tick and each
    tick it is held counts as operator input; release it and the command is zero at once. With
    ``enable_button: ""`` any event counts as input, so a stick held still for ``deadman_s``
    (which sends no events) stops the robot. A device that disappears gives zero velocity; the
    node tries to reopen it every second.
    """

    source_name = "gamepad"
    device = Param(str, "", "/dev/input/event* path or part of the device name; empty = first gamepad")
    axis_vx = Param(str, "ABS_Y", "evdev axis for forward speed")
    axis_vy = Param(str, "ABS_X", "evdev axis for sideways speed")
    axis_yaw = Param(str, "ABS_RX", "evdev axis for yaw rate")
    invert = Param(list, [True, True, True], "negate vx, vy, yaw (evdev: up and left are negative)", item=bool)
    enable_button = Param(str, "BTN_TL", "hold-to-move deadman button; empty = none")
    deadzone = Param(float, 0.1, "fraction of the stick range around the centre that reads zero", ge=0, lt=1)

    def on_configure(self) -> None:
        if len(self.invert) != 3:
            raise ValueError(f"invert needs 3 booleans (vx, vy, yaw), got {self.invert!r}")
        self.axis_codes = (code_of(self.axis_vx), code_of(self.axis_vy), code_of(self.axis_yaw))
        self.enable_code = code_of(self.enable_button) if self.enable_button else None
        self.pad: Gamepad | None = None
        self._open()
        if self.pad is None:
            raise RuntimeError(self._open_error)

    def _open(self) -> None:
        try:
            pad = open_gamepad(self.device)
        except (OSError, RuntimeError) as exc:
            self._open_error = str(exc)
            return
        ranges = []
        for code in self.axis_codes:
            info = pad.absinfo(code)
            ranges.append((int(info.min), int(info.max)))
        self.pad = pad
        self.mapping = StickMapping(
            self.axis_codes, tuple(ranges), tuple(bool(v) for v in self.invert),
            (self.max_vx, self.max_vy, self.max_yaw), self.deadzone,
        )  # fmt: skip
        self.values: dict[int, int] = {code: int(pad.absinfo(code).value) for code in self.axis_codes}
        self.log.info("gamepad %s (%s)%s", pad.path, pad.name,
                      f"; hold {self.enable_button} to move" if self.enable_code is not None else "")  # fmt: skip

    def on_activate(self) -> None:
        super().on_activate()
        self._retry_ns = 0

    def _read(self) -> tuple[list[tuple[int, int, int]], bool] | None:
        """Pending events and whether the enable button is held; None if the device was lost."""
        try:
            events = self.pad.read_events()
            enabled = self.enable_code is None or self.enable_code in self.pad.active_keys()
        except OSError as exc:
            if exc.errno not in (errno.ENODEV, errno.EIO, errno.EBADF):
                raise
            self.log.error("gamepad %s lost (%s): velocity zero until it is back", self.pad.path, exc.strerror)
            self.pad.close()
            self.pad = None
            return None
        return events, enabled

    def poll(self) -> None:
        if self.pad is None and self.now_ns() >= self._retry_ns:
            self._retry_ns = self.now_ns() + 1_000_000_000
            self._open()
        got = self._read() if self.pad is not None else None
        if got is None:
            self.target, self.last_input_ns = (0.0, 0.0, 0.0), None
            return
        events, enabled = got
        for ev_type, code, value in events:
            if ev_type == EV_ABS:
                self.values[code] = value
        if not enabled:  # released: stop now, not after deadman_s
            self.target, self.last_input_ns = (0.0, 0.0, 0.0), None
            return
        if self.enable_code is not None or events:
            self.touch()
        self.target = self.mapping.command(self.values)

    def on_shutdown(self) -> None:
        if getattr(self, "pad", None) is not None:
            self.pad.close()
            self.pad = None


__all__ = ["EVDEV_HINT", "Gamepad", "GamepadTeleop", "StickMapping", "code_of", "open_gamepad"]
