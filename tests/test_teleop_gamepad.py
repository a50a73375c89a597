"""Gamepad teleop: the stick mapping, the enable-button deadman, device loss.

This machine has no /dev/uinput (and no /dev/input), so a virtual evdev device cannot be made
here: the node is driven through a synthetic device with python-evdev's interface (absinfo,
active_keys, non-blocking reads). ``test_virtual_uinput_gamepad`` runs the same checks against a
real kernel device where /dev/uinput is available, and is skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

import pytest

evdev = pytest.importorskip("evdev")
from evdev import ecodes  # noqa: E402

from krabgraph.launch.api.harness import NodeHarness  # noqa: E402
from krabgraph.nodes.teleop import gamepad as gp  # noqa: E402
from krabgraph.nodes.teleop.gamepad import GamepadTeleop, StickMapping  # noqa: E402


@dataclass
class Info:
    value: int = 0
    min: int = -32768
    max: int = 32767


@dataclass
class FakePad:
    """A synthetic gamepad with python-evdev's interface; tests push events and hold keys."""

    path: str = "/dev/input/event99"
    name: str = "Synthetic Pad"
    events: list[tuple[int, int, int]] = field(default_factory=list)
    keys: set[int] = field(default_factory=set)
    lost: bool = False
    closed: bool = False

    def absinfo(self, code: int) -> Info:
        return Info()

    def active_keys(self) -> list[int]:
        if self.lost:
            raise OSError(errno.ENODEV, "No such device")
        return sorted(self.keys)

    def read_events(self) -> list[tuple[int, int, int]]:
        if self.lost:
            raise OSError(errno.ENODEV, "No such device")
        out, self.events = self.events, []
        return out

    def close(self) -> None:
        self.closed = True

    def stick(self, code: int, value: int) -> None:
        self.events.append((ecodes.EV_ABS, code, value))

    def button(self, code: int, down: bool) -> None:
        (self.keys.add if down else self.keys.discard)(code)
        self.events.append((ecodes.EV_KEY, code, int(down)))


@pytest.fixture
def pads(monkeypatch):
    """Every open_gamepad() returns the next FakePad of this list (the test appends them)."""
    made: list[FakePad] = [FakePad()]
    opened: list[FakePad] = []

    def fake_open(device: str = "") -> FakePad:
        if not made:
            raise RuntimeError("gamepad_teleop: no gamepad found")
        opened.append(made.pop(0))
        return opened[-1]

    monkeypatch.setattr(gp, "open_gamepad", fake_open)
    return made, opened


def last(h: NodeHarness) -> tuple[float, float, float]:
    m = h.outputs["cmd_vel"][-1]
    assert m.source == "gamepad"
    return round(m.vx, 3), round(m.vy, 3), round(m.yaw_rate, 3)


def test_stick_mapping_normalizes_inverts_and_has_a_deadzone():
    m = StickMapping((1, 0, 3), ((-100, 100), (0, 255), (-100, 100)), (True, True, False), (1.0, 0.5, 2.0), 0.1)
    assert m.command({}) == (0.0, 0.0, 0.0)  # centred (missing axes read the middle)
    assert m.command({1: -100}) == (1.0, 0.0, 0.0)  # stick up = negative ABS_Y = forward
    assert m.command({1: 5, 0: 128, 3: -9}) == (0.0, 0.0, 0.0)  # inside the deadzone
    vx, vy, wz = m.command({1: 55, 0: 0, 3: 100})
    assert vx == pytest.approx(-0.5) and vy == pytest.approx(0.5) and wz == pytest.approx(2.0)


def test_moves_only_while_the_enable_button_is_held(pads):
    _, opened = pads
    h = NodeHarness(GamepadTeleop, name="pad", max_vx=1.0, max_yaw=1.0, deadman_s=0.5)
    h.start()
    try:
        pad = opened[0]
        pad.stick(ecodes.ABS_Y, -32768)  # full forward
        pad.stick(ecodes.ABS_RX, 32767)  # full right = clockwise
        h.advance(0.02)
        assert last(h) == (0.0, 0.0, 0.0)  # enable button not held
        pad.button(ecodes.BTN_TL, True)
        h.advance(0.02)
        assert last(h) == (1.0, 0.0, -1.0)
        h.advance(2.0)  # stick held still (no events) for longer than deadman_s: the held button is input
        assert last(h) == (1.0, 0.0, -1.0)
        pad.keys.discard(ecodes.BTN_TL)  # released, even if the release event were lost
        h.advance(0.02)
        assert last(h) == (0.0, 0.0, 0.0)
    finally:
        h.stop()
    assert opened[0].closed


def test_without_an_enable_button_events_feed_the_deadman(pads):
    _, opened = pads
    h = NodeHarness(GamepadTeleop, name="pad", enable_button="", deadman_s=0.3, max_vy=0.5)
    h.start()
    try:
        pad = opened[0]
        pad.stick(ecodes.ABS_X, -32768)  # full left
        h.advance(0.02)
        assert last(h) == (0.0, 0.5, 0.0)
        h.advance(0.4)  # no events: deadman
        assert last(h) == (0.0, 0.0, 0.0)
        pad.stick(ecodes.ABS_X, -32000)
        h.advance(0.02)
        assert last(h)[1] > 0.45
    finally:
        h.stop()


def test_a_lost_device_stops_the_robot_and_is_reopened(pads):
    made, opened = pads
    h = NodeHarness(GamepadTeleop, name="pad")
    h.start()
    try:
        pad = opened[0]
        pad.button(ecodes.BTN_TL, True)
        pad.stick(ecodes.ABS_Y, -32768)
        h.advance(0.02)
        assert last(h)[0] == 1.0
        pad.lost = True
        h.advance(0.02)
        assert last(h) == (0.0, 0.0, 0.0) and pad.closed
        again = FakePad(keys={ecodes.BTN_TL})
        again.stick(ecodes.ABS_Y, 0)
        made.append(again)
        h.advance(1.1)  # retried within a second
        assert len(opened) == 2
        again.stick(ecodes.ABS_Y, -32768)
        h.advance(0.02)
        assert last(h)[0] == 1.0
    finally:
        h.stop()


def test_no_gamepad_is_one_clear_error(monkeypatch):
    def none(device: str = "") -> FakePad:
        raise RuntimeError("gamepad_teleop: no gamepad (a device with ABS_X and BTN_SOUTH) found; input devices: none")

    monkeypatch.setattr(gp, "open_gamepad", none)
    with pytest.raises(RuntimeError, match="no gamepad"):
        NodeHarness(GamepadTeleop).start()
    with pytest.raises(ValueError, match="unknown evdev code"):
        NodeHarness(GamepadTeleop, axis_vx="ABS_NOPE").start()


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="no writable /dev/uinput here: no virtual device")
def test_virtual_uinput_gamepad():
    absinfo = evdev.AbsInfo(value=0, min=-32768, max=32767, fuzz=0, flat=0, resolution=0)
    caps = {
        ecodes.EV_KEY: [ecodes.BTN_SOUTH, ecodes.BTN_TL],
        ecodes.EV_ABS: [(ecodes.ABS_X, absinfo), (ecodes.ABS_Y, absinfo), (ecodes.ABS_RX, absinfo)],
    }
    with evdev.UInput(caps, name="krabgraph test pad") as ui:
        time.sleep(0.3)  # udev creates the node
        h = NodeHarness(GamepadTeleop, name="pad", device="krabgraph test pad")
        h.start()
        try:
            ui.write(ecodes.EV_KEY, ecodes.BTN_TL, 1)
            ui.write(ecodes.EV_ABS, ecodes.ABS_Y, -32768)
            ui.syn()
            time.sleep(0.05)
            h.advance(0.02)
            assert last(h)[0] == pytest.approx(1.0)
            ui.write(ecodes.EV_KEY, ecodes.BTN_TL, 0)
            ui.syn()
            time.sleep(0.05)
            h.advance(0.02)
            assert last(h) == (0.0, 0.0, 0.0)
        finally:
            h.stop()
