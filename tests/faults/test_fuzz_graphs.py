"""Malformed input never crashes a node (issue 14): random, truncated, wrong-type and hostile-but-parsable
payloads, each under the topic's own type tag, on every topic of the shipped lockstep graphs (the
recorded ones included). The graph keeps running, the robot stays ACTIVE under safety, and every
drop is counted: by the executor (wire errors) or by the receiving node (rejected/problem counters).

How frames get in: every node's outputs are remapped to ``real/<topic>``; one ``Fuzzer`` node
forwards each real frame unchanged to ``<topic>`` (same graph time, same order) and, from its own
timer, publishes a fuzz frame on every topic. Seeded (numpy ``default_rng``), so a failure replays.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from krabgraph.launch import Executor, Input, Node, Output, Param, build_graph, load_graph
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.launch.runtime.wire import prefix
from krabgraph.msgs import DType, JointCommand, RobotState, SafetyStatus, VelocityCommand, set_array, to_numpy
from krabgraph.nodes.hal_io import CommandError, CommandParser
from krabgraph.nodes.policy.node import PolicyNode
from krabgraph.nodes.record.mcapio import read_recording
from krabgraph.nodes.robots import load_robot

pytest.importorskip("mujoco")

Mode = SafetyStatus.Mode
RAW_KINDS = ("random", "truncated", "wrong_type")
HOSTILE_KINDS = ("nan", "inf", "length", "dtype", "shape", "names", "huge", "empty")
HUGE = 1 << 16  # elements of a "huge" array (512 KiB of FLOAT64) and joint names


def _arrays(msg: Message) -> list[Message]:
    """Every ``Array`` sub-message set in ``msg``, depth first."""
    found = []
    for field, value in msg.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type.GetOptions().map_entry:
            continue
        for item in value if field.is_repeated else [value]:
            found += [item] if item.DESCRIPTOR.name == "Array" else _arrays(item)
    return found


def _floats(msg: Message) -> list[tuple[Message, str]]:
    """Every set scalar double field of ``msg`` and its sub-messages, as (owner, field name)."""
    found = []
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_DOUBLE and not field.is_repeated:
            found.append((msg, field.name))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            found += _floats(value)
    return found


def _names(msg: Message) -> list[Message]:
    """Every (sub-)message whose repeated string ``name`` is set (joint and foot names)."""
    found = []
    for field, value in msg.ListFields():
        if field.name == "name" and field.is_repeated:
            found.append(msg)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            found += _names(value)
    return found


def hostile(kind: str, sample: Message, rng: np.random.Generator) -> Message:
    """A message that parses, built from a real ``sample``, made invalid in one way (``kind``)."""
    msg = type(sample)()
    if kind == "empty":
        return msg
    msg.CopyFrom(sample)
    arrays, floats, names = _arrays(msg), _floats(msg), _names(msg)
    if kind in ("nan", "inf"):
        bad = math.nan if kind == "nan" else -math.inf if rng.random() < 0.5 else math.inf
        for arr in arrays:
            values = np.frombuffer(arr.data, dtype=np.uint8).copy()
            if arr.dtype in (DType.FLOAT64, DType.FLOAT32) and values.size:
                typed = values.view("<f8" if arr.dtype == DType.FLOAT64 else "<f4")
                typed[rng.integers(typed.size)] = bad
                arr.data = typed.tobytes()
        for owner, name in floats:
            if rng.random() < 0.5:
                setattr(owner, name, bad)
    elif kind == "length":  # one element more or fewer than the shape says, shape kept in step
        for arr in arrays:
            if arr.shape:
                size = np.dtype(_DT.get(arr.dtype, "u1")).itemsize
                cut = int(rng.integers(1, 3))
                arr.data = (
                    arr.data[: max(0, len(arr.data) - cut * size)]
                    if rng.random() < 0.5
                    else arr.data + bytes(cut * size)
                )
                if len(arr.shape) == 1:
                    arr.shape[0] = len(arr.data) // size
    elif kind == "dtype":  # the same bytes under another dtype (or one that does not exist)
        for arr in arrays:
            arr.dtype = int(rng.choice([DType.UINT8, DType.INT32, DType.FLOAT32, DType.UINT16, 99]))
    elif kind == "shape":
        for arr in arrays:
            del arr.shape[:]
            arr.shape.extend(int(x) for x in rng.integers(0, 2**31, size=int(rng.integers(0, 4))))
    elif kind == "names":
        for m in names:
            m.name[int(rng.integers(len(m.name)))] = f"bogus_joint_{rng.integers(1_000_000)}"
    elif kind == "huge":  # HUGE values per array, HUGE repeated joint names
        for arr in arrays:
            arr.dtype, arr.data = DType.FLOAT64, bytes(8 * HUGE)
            del arr.shape[:]
            arr.shape.append(HUGE)
        for m in names:
            m.name.extend(["FL_hip_joint"] * (HUGE - len(m.name)))
    return msg


_DT = {DType.FLOAT32: "<f4", DType.FLOAT64: "<f8", DType.UINT8: "u1", DType.UINT16: "<u2", DType.INT32: "<i4",
       DType.INT64: "<i8"}  # fmt: skip


class Fuzzer(Node):
    """Forwards ``real/<topic>`` to ``<topic>`` unchanged; every ``period_s`` of graph time from
    ``start_s`` on, publishes one fuzz frame (kinds in turn) on every topic it has seen a frame of."""

    kind = "safety"  # it forwards the safety node's commands to the HAL, and the graph checks who does
    # Declared non-triggering: it does forward on receipt, but only what the (acyclic) graph itself
    # publishes; the static loop check would see every path through this one node as a cycle.
    real = Input(AnyMessage, queue=100_000, triggers=False)
    out = Output(AnyMessage)
    seed = Param(int, 0)
    period_s = Param(float, 0.01, gt=0)
    start_s = Param(float, 0.0, ge=0)
    kinds = Param(list, list(RAW_KINDS + HOSTILE_KINDS))

    def on_configure(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.samples: dict[str, RawMessage] = {}
        self.sent: Counter[tuple[str, str]] = Counter()  # (topic, kind) -> fuzz frames sent
        self.i = 0

    def on_activate(self) -> None:
        self.create_timer(self.period_s, self.tick)

    def on_real(self, msg: RawMessage) -> None:
        topic = msg.topic.removeprefix("real/")
        self.samples[topic] = msg
        self.out.publish(RawMessage(topic, msg.msg_type, msg.frame, msg.offset))

    def tick(self) -> None:
        if self.now() < self.start_s or len(self.samples) < 2:
            return
        for topic in sorted(self.samples):
            kind = self.kinds[self.i % len(self.kinds)]
            sample = self.samples[topic]
            others = [s for t, s in sorted(self.samples.items()) if s.msg_type is not sample.msg_type]
            payload = self.payload(kind, sample, others)
            self.sent[topic, kind] += 1
            head = prefix(sample.msg_type)
            self.out.publish(RawMessage(topic, sample.msg_type, head + payload, len(head)))
        self.i += 1

    def payload(self, kind: str, sample: RawMessage, others: list[RawMessage]) -> bytes:
        real = bytes(sample.payload)
        rng = self.rng
        if kind == "random":
            return rng.bytes(int(rng.integers(0, 256)))
        if kind == "truncated":
            return real[: int(rng.integers(0, max(1, len(real))))]
        if kind == "wrong_type":
            return bytes(others[int(rng.integers(len(others)))].payload)
        return hostile(kind, sample.decode(), rng).SerializeToString()


class Probe(Node):
    """Every safety status and the base position of every (real) robot state."""

    kind = "recorder"
    status = Input(SafetyStatus, queue=1000, triggers=False)
    state = Input(RobotState, queue=1000, triggers=False)

    def on_configure(self) -> None:
        self.statuses: list[tuple[float, int, int]] = []  # t, mode, fault
        self.base: list[tuple[float, float]] = []  # t, base x

    def on_status(self, m: SafetyStatus) -> None:
        self.statuses.append((self.now(), m.mode, m.fault))

    def on_state(self, m: RobotState) -> None:
        self.base.append((self.now(), m.base.position.x))


def fuzz_graph(ref: str, tmp_path: Path, *, seed: int = 0, fuzz: bool = True) -> Executor:
    """``ref`` in lockstep, as fast as possible, every output behind one ``Fuzzer``; a ``Probe`` on
    the real safety status and robot state."""
    decl = load_graph(ref, clock="sim", sets=["hal.status_period_s=0"])
    for spec in decl.nodes.values():
        if spec.class_ref == "recorder":
            spec.params["path"] = str(tmp_path / "run.mcap")
    real, public = [], []
    for name, spec in build_graph(decl).nodes.items():
        for port, topic in spec.outputs.items():
            decl.nodes[name].outputs[port] = f"real/{topic}"
            real.append(f"real/{topic}")
            public.append(topic)
    loc = {"node": Loc("test_fuzz_graphs")}
    params = {"seed": seed, "start_s": 0.0 if fuzz else 1e9}
    fuzzer = NodeDecl("fuzz", Fuzzer, params=params, inputs={"real": real}, outputs={"out": public}, locs=loc)
    probe = NodeDecl("probe", Probe, inputs={"status": "real/safety/status", "state": "real/hal/state"}, locs=loc)
    nodes = list(decl.nodes.items())  # the fuzzer right after the command source: at a control instant
    decl.nodes = dict([*nodes[:1], ("fuzz", fuzzer), *nodes[1:], ("probe", probe)])  # its cmd_vel is the latest
    return Executor(build_graph(decl))


def _run(ref: str, tmp_path: Path, duration_s: float, fuzz: bool) -> Executor:
    ex = fuzz_graph(ref, tmp_path, fuzz=fuzz)
    ex.exit_code = ex.run(duration_s=duration_s, handle_signals=False)
    return ex


def _modes(probe: Probe) -> list[int]:
    """The sequence of safety modes, repeats folded."""
    out: list[int] = []
    for _, mode, _ in probe.statuses:
        if not out or out[-1] != mode:
            out.append(mode)
    return out


@pytest.mark.parametrize("ref", ["walk", "walk_record", "parkour"])
def test_fuzzed_graph_keeps_running_stays_active_and_counts_every_drop(ref, tmp_path, caplog):
    """Shipped single-process graphs (no GPU, no robot): 4 s of lockstep, a fuzz frame on every
    topic every 10 ms (about 36 of each of the 11 kinds per topic), against the same run unfuzzed."""
    base = _run(ref, tmp_path / "base", 4.0, fuzz=False)
    caplog.set_level(logging.INFO, logger="krabgraph")
    ex = _run(ref, tmp_path / "fuzz", 4.0, fuzz=True)
    assert base.exit_code == ex.exit_code == 0 and base.failures == ex.failures == []

    # Safety: the same modes as unfuzzed (WAITING, SOFT_START, ACTIVE, then the deactivation's
    # DAMPING), ACTIVE from the same instant to the end, never a fault; the robot walked on.
    probe, calm = ex.nodes["probe"], base.nodes["probe"]
    assert _modes(probe) == _modes(calm) == [Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE, Mode.DAMPING]
    first_active = next(t for t, mode, _ in probe.statuses if mode == Mode.ACTIVE)
    assert first_active == next(t for t, mode, _ in calm.statuses if mode == Mode.ACTIVE) == pytest.approx(2.0)
    assert {fault for _, _, fault in probe.statuses} == {SafetyStatus.Fault.FAULT_NONE}
    assert probe.base[-1][0] == pytest.approx(3.98)
    walked, calm_walked = probe.base[-1][1] - probe.base[0][1], calm.base[-1][1] - calm.base[0][1]
    assert calm_walked > 0.8 and walked > 0.6 * calm_walked  # truncated cmd_vel frames parse (as slower commands)

    # Every topic read by a node got fuzz of every kind.
    fuzz = ex.nodes["fuzz"]
    read = {s.topic for s in ex.subscriptions} & set(fuzz.samples)  # (walk_record reads hal/depth_image: none)
    assert read >= {"command/cmd_vel", "hal/state", "hal/height_scan", "policy/joint_command", "safety/joint_command"}
    assert all(fuzz.sent[t, k] >= 30 for t in read for k in RAW_KINDS + HOSTILE_KINDS)

    # Drops at the wire: every typed subscriber of a fuzzed topic counted payloads that do not parse,
    # and logged each (topic, subscriber, kind) once.
    typed = [s for s in ex.subscriptions if s.topic in read and s.node.name not in ("rec", "probe")]
    assert typed and all(s.errors.get("payload", 0) >= 30 and s.port.dropped == sum(s.errors.values()) for s in typed)
    wire = [r.getMessage() for r in caplog.records if r.name == "krabgraph.executor" and "dropped a" in r.getMessage()]
    assert len(wire) == len({(s.topic, s.node.name, k) for s in ex.subscriptions for k in s.errors}), wire

    # Drops in the nodes: what parses but is invalid is rejected, counted, logged once per kind.
    safety, hal, policy = ex.nodes["safety"], ex.nodes["hal"], ex.nodes["policy"]
    kinds = {"rejected non-finite value", "rejected malformed array", "rejected joint names", "ignored robot state: "
             "non-finite", "ignored robot state: joints", "ignored robot state: malformed", "ignored height scan: "
             "malformed", "ignored height scan: shape"}  # fmt: skip
    assert kinds <= set(safety.problems) and all(safety.problems[k] >= 30 for k in kinds)
    assert safety.rejected == sum(v for k, v in safety.problems.items() if k.startswith("rejected")) >= 250
    assert hal.rejected == sum(hal.problems.values()) >= 250
    assert set(hal.problems) == {"non-finite value", "malformed array", "joint names"}
    assert policy.rejected >= 250 and policy.problems["command non-finite"] >= 10
    # One line per kind; the HAL logs each distinct message (its contract), at most 16 per kind, then says so.
    # (Safety's clamps are warnings: a policy fed fuzzed velocity commands may step far, legitimately.)
    errors = [k for k in safety.problems if not k.startswith("clamped")]
    for logger, most in (("safety", len(errors)), ("policy", len(policy.problems)), ("hal", 3 * 17)):
        text = [r.getMessage() for r in caplog.records if r.name.endswith(logger) and r.levelno == logging.ERROR]
        assert len(text) == len(set(text)) and (len(text) == most if logger != "hal" else len(text) <= most), text
        assert all(len(line) < 2000 for line in text)  # a huge message is not echoed back whole
    assert sum("further rejected joint commands" in r.getMessage() for r in caplog.records) >= 1
    if ref == "walk_record":
        rec = ex.nodes["rec"]
        assert rec.dropped["malformed"] >= 300 and rec.dropped["write_error"] == 0 and rec.written > 3000
        assert read_recording(tmp_path / "fuzz" / "run.mcap").counts["hal/state"] >= 199


def test_a_command_naming_a_joint_many_times_is_rejected_in_one_pass_with_a_short_message():
    """It took O(n²) (``names.count`` per name): 65 536 names stopped the graph for minutes."""
    parser = CommandParser.for_robot(load_robot("go2"))
    msg = JointCommand(name=["FL_hip_joint"] * 200_000 + [f"bogus_{i}" for i in range(100_000)])
    set_array(msg.position, np.zeros(300_000))
    with pytest.raises(CommandError) as exc:
        parser.parse(msg)
    assert exc.value.kind == "joint names" and len(str(exc.value)) < 500
    assert str(exc.value).startswith("repeated joint(s) ['FL_hip_joint']; commands must name every joint")
    del msg.name[:200_000]
    with pytest.raises(CommandError) as exc:
        parser.parse(msg)
    assert "unknown joint(s) ['bogus_0', " in str(exc.value) and "(+99992 more)" in str(exc.value)
    assert len(str(exc.value)) < 1000


def test_a_non_finite_velocity_command_is_rejected_and_the_last_valid_one_kept(caplog):
    """A NaN cmd_vel that was the latest at a state stopped the policy's commands until the next one."""
    h = NodeHarness(PolicyNode, bundle="go2_walk").start()
    state = RobotState()
    state.joints.name.extend(h.node.contract.joints)
    set_array(state.joints.position, h.node.contract.default_joint_pos)
    set_array(state.joints.velocity, np.zeros(12))
    state.imu.orientation.w = 1.0
    h.feed("command", VelocityCommand(vx=0.5))
    caplog.set_level(logging.ERROR, logger="krabgraph")
    for k, bad in enumerate([math.nan, math.inf, -math.inf] * 3):
        h.feed("command", VelocityCommand(vx=bad, yaw_rate=1.0))
        state.header.seq = k + 1
        h.feed("state", state)
    assert len(h.outputs["joint_command"]) == 9
    obs = to_numpy(h.outputs["observation"][-1].data)
    labels = list(h.outputs["observation"][-1].labels)
    assert obs[labels.index("velocity_commands[vx]")] == np.float32(0.5)  # the last valid command
    assert h.node.rejected == h.node.problems["command non-finite"] == 9
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and errors[0].startswith("rejected velocity command (vx nan, vy 0.0, yaw_rate 1.0)")
