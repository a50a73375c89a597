"""Safety's fast paths (issue 16) give what their checked references give: the wire-template send
publishes the bytes of the plain field-by-field message, for every shipped robot and on many random
targets, and a later send never changes a message already published; the height scan's learned grids
give the base height the checked path gives, NaN and inf included."""

from __future__ import annotations

import numpy as np
import pytest

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import CommandSource, HeightScan, JointCommand, set_array, to_numpy
from krabgraph.nodes.hal_io import COLUMNS
from krabgraph.nodes.safety import Safety, Target

ROBOTS = ("go2", "anymal_d")
SOURCES = (int(CommandSource.POLICY), int(CommandSource.OPERATOR), int(CommandSource.SAFETY))


def plain_message(node: Safety, t: Target) -> JointCommand:
    """What ``_send`` publishes, built field by field (header left to ``publish``)."""
    msg = JointCommand(name=node.names, source=t.source, robot_id=node.robot_id or "")
    msg.observation_stamp_ns, msg.observation_seq = t.observation_stamp_ns, t.observation_seq
    for key, row in zip(COLUMNS, t.values, strict=True):
        set_array(getattr(msg, key), row)
    return msg


def random_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[5, n]`` values of every magnitude, with signed zeros, subnormals and the largest floats."""
    values = rng.normal(size=(5, n)) * 10.0 ** rng.integers(-300, 300, size=(5, n))
    specials = np.array([0.0, -0.0, 5e-324, -5e-324, np.finfo(float).max, -np.finfo(float).max, 1.0])
    mask = rng.random((5, n)) < 0.2
    values[mask] = rng.choice(specials, size=int(mask.sum()))
    return values


def sent_after(node: Safety, h: NodeHarness, t: Target) -> JointCommand:
    node._send(t)
    return h.outputs["joint_command"][-1]


@pytest.mark.parametrize("robot", ROBOTS)
def test_template_send_publishes_the_plain_message_bytes(robot):
    h = NodeHarness(Safety, robot=robot).start()
    node: Safety = h.node
    assert node._wire_rows is not None, "the five data blocks of the template were not found"
    rng = np.random.default_rng(16)
    published: list[tuple[JointCommand, bytes]] = []
    for i in range(400):
        node.robot_id = None if i % 7 == 0 else f"hal#{i:012x}"
        t = Target(random_values(rng, node.n), SOURCES[i % 3], int(rng.integers(0, 2**62)), int(rng.integers(0, 2**63)))
        msg = sent_after(node, h, t)
        expected = plain_message(node, t)
        expected.header.CopyFrom(msg.header)  # seq and stamp: publish's
        assert msg.SerializeToString() == expected.SerializeToString(), i
        for key, row in zip(COLUMNS, t.values, strict=True):
            np.testing.assert_array_equal(to_numpy(getattr(msg, key)), row)
        published.append((msg, msg.SerializeToString()))
        assert node.target is t
    # later sends wrote into the template's buffer: none of the earlier messages changed
    assert all(msg.SerializeToString() == wire for msg, wire in published)


def test_fallback_send_gives_the_same_bytes_as_the_template_send():
    fast = NodeHarness(Safety, robot="go2").start()
    slow = NodeHarness(Safety, robot="go2").start()
    slow.node._wire, slow.node._wire_rows = None, None  # as where the template's layout is not found
    rng = np.random.default_rng(3)
    for i in range(200):
        values = random_values(rng, fast.node.n)
        for h in (fast, slow):
            h.node.robot_id = f"hal#{i % 5}"
            sent_after(h.node, h, Target(values.copy(), SOURCES[i % 3], i, 2 * i))
    wire = [[m.SerializeToString() for m in h.outputs["joint_command"]] for h in (fast, slow)]
    assert wire[0] == wire[1] and len(wire[0]) >= 200


def random_scan(rng: np.random.Generator, shape: tuple[int, int], dtype: type) -> HeightScan:
    """A scan of ``shape`` with heights of many magnitudes, some cells NaN or ±inf, a random centre."""
    heights = rng.normal(0.3, 0.2, shape) * 10.0 ** rng.integers(-3, 3, shape)
    mask = rng.random(shape) < 0.02
    heights[mask] = rng.choice([np.nan, np.inf, -np.inf], size=int(mask.sum()))
    msg = HeightScan(resolution=float(rng.choice([0.05, 0.1])), offset=float(rng.normal(0, 0.1)))
    msg.center_x, msg.center_y = (float(v) for v in rng.choice([0.0, 0.0, 0.1, -0.2, 0.4], size=2))
    set_array(msg.heights, heights, dtype)
    return msg


@pytest.mark.parametrize("ground_span", [0.0, 0.25])
def test_height_scan_fast_path_gives_the_checked_base_height(ground_span):
    """Each scan goes through on_height_scan (fast once its grid is learned) and, on a second node, through
    the checked path alone: the same base height, or none, every time, on grids of odd and even sizes."""
    fast = NodeHarness(Safety, ground_span=ground_span).start().node
    ref = NodeHarness(Safety, ground_span=ground_span).start().node
    rng = np.random.default_rng(7)
    learned = 0
    for i in range(600):
        shape = ((11, 17), (10, 16), (21, 11))[i % 3]
        msg = random_scan(rng, shape, (np.float32, np.float64)[i % 2])
        fast.scan_height = ref.scan_height = None
        learned += bool(fast._scan_cells)
        fast.on_height_scan(msg)
        ref._scan_height_checked(msg, ())
        assert fast.scan_height == ref.scan_height, i  # None (no finite centre) on both, or equal floats
    assert learned > 500, "the fast path was never taken"
