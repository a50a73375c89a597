"""The policy and safety hot paths (issue 16) give, byte for byte, what straightforward code gives.

Each optimised node runs beside a subclass whose hot path is written plainly — the policy's per-term
observation (``build(decode(...))``), ``session.run``, ``ActionMap.process`` and messages built field by
field; the safety node's checked state read and command parse, its mode chain without the steady-state
shortcut, its limits one array at a time and its output built field by field — on the same inputs, good
and bad, in a ``NodeHarness`` and in the lockstep walk graph (MuJoCo). Every published byte must match.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from krabgraph.launch import Executor, Input, Node, build_graph, load_graph
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.launch.api.ports import AnyMessage, RawMessage
from krabgraph.launch.graph.declaration import NodeDecl
from krabgraph.launch.graph.yamlloc import Loc
from krabgraph.msgs import (
    ArrayStamped,
    CommandSource,
    EStop,
    HeightScan,
    JointCommand,
    RobotState,
    VelocityCommand,
    set_array,
)
from krabgraph.nodes.hal_io import COLUMNS
from krabgraph.nodes.policy import (
    TERMS,
    ActionError,
    Contract,
    ObservationError,
    PolicyState,
    load_backend,
    load_contract,
)
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from krabgraph.nodes.policy.node import PolicyNode
from krabgraph.nodes.robots import load_robot
from krabgraph.nodes.rotations import quat_from_rpy
from krabgraph.nodes.safety import Safety, Target
from tests.bench.policy import random_mlp, write_onnx

ROBOT_ID = "hal#00112233aabb"


class PlainObservation:
    """Isaac Lab's observation pipeline term by term: compute, check, clip, scale, history (oldest first),
    concatenate, the global clip, float32."""

    def __init__(self, contract: Contract):
        self.contract = contract
        self.history: dict[int, list[np.ndarray]] = {}

    def __call__(self, state: PolicyState) -> np.ndarray:
        terms = self.contract.observations
        values = [np.asarray(TERMS[t.name].compute(state, t.options), dtype=np.float64) for t in terms]
        if not all(np.isfinite(v).all() for v in values):
            raise ObservationError("observation is not finite")
        parts = []
        for i, (term, value) in enumerate(zip(terms, values, strict=True)):
            value = (value if term.clip is None else np.clip(value, *term.clip)) * term.scale
            history = self.history.get(i)
            self.history[i] = history = [value] * term.history if history is None else [*history[1:], value]
            parts += history
        obs = np.concatenate(parts)
        clip = self.contract.obs_clip
        return (obs if clip is None else np.clip(obs, *clip)).astype(np.float32)


class ReferencePolicy(PolicyNode):
    """PolicyNode's data path written plainly: ``PlainObservation``, ``session.run``, ``ActionMap.process``,
    messages built field by field (the robot and sequence bookkeeping is PolicyNode's)."""

    def on_activate(self) -> None:
        super().on_activate()
        self.plain = PlainObservation(self.contract)

    def on_state(self, msg: RobotState) -> None:
        contract = self.contract
        try:
            state = self.builder.decode(msg, self._command, self.height_scan.latest, self.last_action)
            obs = self.plain(state)
            action, targets = contract.actions.process(self.backend(obs))
        except (ObservationError, ActionError):
            return
        self.last_action = action
        n, header = contract.action_dim, msg.header
        cmd = JointCommand(name=contract.joints, source=CommandSource.POLICY, robot_id=msg.robot_id)
        cmd.observation_stamp_ns, cmd.observation_seq = header.stamp_ns, header.seq
        for key, values in zip(COLUMNS, (targets, np.zeros(n), np.zeros(n), contract.kp, contract.kd), strict=True):
            set_array(getattr(cmd, key), values)
        self.joint_command.publish(cmd)
        debug = ArrayStamped(labels=contract.observation_labels)
        debug.header.stamp_ns = header.stamp_ns
        set_array(debug.data, obs)
        self.observation.publish(debug)


class ReferenceSafety(Safety):
    """Safety with each hot-path shortcut replaced by the plain code it stands for."""

    def on_configure(self) -> None:
        super().on_configure()
        self.parser.columns = self.parser._columns_checked  # every command through every check

    def _read_state(self, msg: RobotState, now: int) -> bool:
        return self._read_state_checked(msg, now)

    def on_height_scan(self, msg: HeightScan) -> None:
        self._scan_height_checked(msg, ())  # (teaches a grid that this node never reads)

    def _update(self, now: int | None = None) -> int | None:
        now = self.now_ns() if now is None else now
        commander = self._commander(now)
        self._evaluate(now, commander)
        return commander

    def _limit(self, t: Target) -> Target:
        r, (position, velocity, effort, kp_in, kd_in) = self.description, t.values
        kp = np.minimum(kp_in, self.kp_max)
        reach = np.where(
            kp > 0, np.minimum(self.stop_torque_fraction * r.effort_limit / np.maximum(kp, 1e-9), np.pi), 0
        )
        soft = np.stack(
            [
                np.clip(position, self.lower - reach, self.upper + reach),
                np.clip(velocity, -r.velocity_limit, r.velocity_limit),
                np.clip(effort, -r.effort_limit, r.effort_limit),
                kp,
                np.minimum(kd_in, self.kd_max),
            ]
        )
        ref = self.target.values[0] if self.target is not None else self.default
        out = soft.copy()
        out[0] = np.clip(soft[0], ref - self.max_step, ref + self.max_step)
        self._count_clamps(t, soft, out)
        return Target(out, t.source, t.observation_stamp_ns, t.observation_seq)

    def _send(self, t: Target, now: int | None = None) -> None:
        msg = JointCommand(name=self.names, source=t.source, robot_id=self.robot_id or "")
        msg.observation_stamp_ns, msg.observation_seq = t.observation_stamp_ns, t.observation_seq
        for key, row in zip(COLUMNS, t.values, strict=True):
            set_array(getattr(msg, key), row)
        self.target, self._sent_since_tick, self._sent_ns = t, True, self.now_ns()
        self.joint_command.publish(msg)


def _wire(h: NodeHarness) -> dict[str, list[bytes]]:
    """Everything ``h``'s node published so far, serialized, per output."""
    return {port: [m.SerializeToString() for m in sent] for port, sent in h.outputs.items()}


# -- the policy node -----------------------------------------------------------------------------------


def _history_bundle(tmp_path) -> str:
    """go2_walk's joints with histories, per-term clips, a whole-vector clip and a y-fastest height scan, on a
    random MLP of the right size: every step of the observation pipeline."""
    data = yaml.safe_load((BUNDLES_DIR / "go2_walk" / "contract.yaml").read_text())
    data["observations"] = {
        "clip": 3.0,
        "terms": [
            {"name": "base_lin_vel", "scale": 2.0},
            {"name": "joint_pos_rel", "history": 3, "clip": [-0.2, 0.2]},
            "projected_gravity",
            {"name": "joint_vel", "history": 2, "scale": 0.1},
            "last_action",
            "velocity_commands",
            {"name": "height_scan", "clip": 1.0, "options": {"shape": [3, 4], "offset": 0.5, "ordering": "yx"}},
        ],
    }
    data["actions"]["clip"] = 1.5
    dim = 3 + 12 * 3 + 3 + 12 * 2 + 12 + 3 + 12
    write_onnx(random_mlp((dim, 64, 12), seed=4), tmp_path / "history.onnx")
    data["weights"] = str(tmp_path / "history.onnx")
    path = tmp_path / "history.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _state(rng: np.random.Generator, names: list[str], seq: int) -> RobotState:
    """A state in one of three joint orders (one with an extra joint), now and then with a problem."""
    order = [names, names[::-1], [*names[3:], "extra_joint", *names[:3]]][seq % 3]
    msg = RobotState(robot_id=ROBOT_ID, has_base=True)
    msg.header.stamp_ns, msg.header.seq = seq * 20_000_000, seq
    msg.joints.name.extend(order)
    q, qd = rng.uniform(-1.5, 1.5, len(order)), rng.uniform(-8, 8, len(order))
    problem = rng.integers(0, 24)
    if problem == 0:
        q[2] = math.nan
    elif problem == 1:
        qd[0] = -math.inf
    elif problem == 2:
        q[1] = 1e200  # finite, but the shortcuts' sums overflow: the checked paths decide
    set_array(msg.joints.position, q, np.float32 if problem == 3 else np.float64)
    set_array(msg.joints.velocity, qd[:-1] if problem == 4 else qd)
    o = msg.imu.orientation
    o.w, o.x, o.y, o.z = (0.0, 0.0, 0.0, 0.0) if problem == 5 else quat_from_rpy(*rng.uniform(-0.4, 0.4, 3))
    g = msg.imu.angular_velocity
    g.x, g.y, g.z = rng.normal(size=3)
    v = msg.base.linear_velocity
    v.x, v.y, v.z = rng.normal(size=3)
    if problem == 6:
        msg.has_base = False
    elif problem == 7:
        del msg.joints.name[0]
    return msg


def _scan(rng: np.random.Generator, shape: tuple[int, int], offset: float) -> HeightScan:
    heights = rng.uniform(-0.8, 0.8, shape)
    problem = rng.integers(0, 20)
    if problem == 0:
        heights = heights.T
    elif problem == 1:
        heights[0, 0] = math.nan
    msg = HeightScan(offset=offset + (0.2 if problem == 2 else 0.0), resolution=0.1)
    set_array(msg.heights, heights, np.float64 if problem == 3 else np.float32)
    return msg


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # 1e200 without an obs clip, in both
@pytest.mark.parametrize("bundle", ["go2_walk", "anymal_d_rough", "history"])
def test_policy_node_publishes_what_the_plain_data_path_publishes(tmp_path, bundle):
    path = _history_bundle(tmp_path) if bundle == "history" else bundle
    fast = NodeHarness(PolicyNode, bundle=path).start()
    plain = NodeHarness(ReferencePolicy, bundle=path).start()
    contract = fast.node.contract
    scan_term = next((t for t in contract.observations if t.name == "height_scan"), None)
    rng = np.random.default_rng(16)
    for seq in range(1, 301):
        inputs = []
        if seq % 4 == 1:  # sometimes a command, now and then a non-finite one (rejected on arrival)
            vx = math.nan if seq % 36 == 1 else rng.uniform(-1, 1)
            inputs.append(("command", VelocityCommand(vx=vx, vy=rng.uniform(-1, 1), yaw_rate=rng.uniform(-1, 1))))
        if scan_term is not None and seq > 3:  # none at first: "waiting for height_scan"
            inputs.append(("height_scan", _scan(rng, scan_term.options["shape"], scan_term.options.get("offset", 0))))
        inputs.append(("state", _state(rng, list(contract.joints), seq)))
        for h in (fast, plain):
            h.advance(0.02)
            for port, msg in inputs:
                h.feed(port, msg)
        assert _wire(fast) == _wire(plain), seq
    assert 100 < len(fast.outputs["joint_command"]) < 280  # most states answered; the bad ones not
    assert len(fast.node.problems) >= 5  # every kind of problem the inputs have was met
    assert len(fast.node.builder._fast.joints.orders) == 3  # the one-pass observation took every order


def test_bound_inference_gives_what_session_run_gives():
    backend = load_backend(load_contract("go2_walk"))
    x, run = backend.bind()
    assert x.base is not None  # the binding's own input array: not the plain call's fallback
    for obs in np.random.default_rng(2).normal(0, 3, (50, x.size)).astype(np.float32):
        x[:] = obs
        assert run().tobytes() == backend(obs).tobytes()


def test_action_map_in_place_gives_what_process_gives():
    actions = load_contract("go2_walk").actions
    rng = np.random.default_rng(9)
    action, targets = np.empty(12), np.empty(12)
    for step in range(200):
        raw = rng.normal(0, 80, 12).astype(np.float32)  # clipped at 100 now and then
        if step % 7 == 0:
            raw[step % 12] = [math.nan, math.inf, -math.inf][step % 3]
        elif step % 11 == 0:
            raw = raw[:-1]
        try:
            want = actions.process(raw)
        except ActionError as exc:
            with pytest.raises(ActionError, match=f"^{exc}$".replace("[", r"\[").replace("]", r"\]")):
                actions.process_into(raw, action, targets)
            continue
        actions.process_into(raw, action, targets)
        assert (action.tobytes(), targets.tobytes()) == (want[0].tobytes(), want[1].tobytes()), step


# -- the safety node -----------------------------------------------------------------------------------

GO2 = load_robot("go2")
NAMES, N, DT = list(GO2.joint_names), GO2.num_joints, GO2.control_dt


def _command(rng: np.random.Generator, state: RobotState, step: int) -> JointCommand:
    """A policy command answering ``state``, often beyond a limit, now and then malformed or unbound."""
    order = [NAMES, NAMES[::-1]][step % 2]
    spread = [0.05, 0.4, 3.0][step % 3]
    cmd = JointCommand(name=order, source=CommandSource.POLICY, robot_id=state.robot_id)
    cmd.observation_stamp_ns, cmd.observation_seq = state.header.stamp_ns, state.header.seq
    position = GO2.default_pos + rng.uniform(-spread, spread, N)
    problem = rng.integers(0, 20)
    if problem == 0:
        position[4] = math.nan
    elif problem == 1:
        cmd.observation_seq += 7  # answers no state
    elif problem == 2:
        cmd.robot_id = "another"
    set_array(cmd.position, position)
    for key, limit in (("velocity", GO2.velocity_limit), ("effort", GO2.effort_limit), ("kp", GO2.kp), ("kd", GO2.kd)):
        if rng.random() < 0.5:
            low = 0.0 if key in ("kp", "kd") else -1.3
            set_array(getattr(cmd, key), rng.uniform(low, 1.3, N) * limit)
    if problem == 3:
        set_array(cmd.kd, -np.ones(N))
    return cmd


def test_safety_node_publishes_what_the_plain_checks_publish():
    fast, plain = (NodeHarness(cls, robot="go2", soft_start_s=0.1).start() for cls in (Safety, ReferenceSafety))
    rng = np.random.default_rng(4)
    for step in range(1, 501):
        inputs = []
        gap = 60 <= step % 200 < 66  # no state for a while: the state watchdog trips, then a recovery
        if not gap:
            state = _state(rng, NAMES, step)
            if step % 50 == 0:
                o = state.imu.orientation
                o.w, o.x, o.y, o.z = quat_from_rpy(0.0, 1.2, 0.0)  # attitude trip, latched
            inputs.append(("state", state))
            if step % 9 != 0:  # every ninth state unanswered: the command watchdog's turn
                inputs.append(("command", _command(rng, state, step)))
        if step % 50 == 20:
            inputs.append(("estop", EStop(reset=True, reason="test")))
        if step == 300:
            inputs.append(("estop", EStop(engage=True, reason="test")))
        for h in (fast, plain):
            h.advance(DT / 2)
            for port, msg in inputs:
                h.feed(port, RobotState.FromString(msg.SerializeToString()) if port == "state" else msg)
        assert _wire(fast) == _wire(plain), step
    a, b = fast.node, plain.node
    assert (a.rejected, a.clamped, a.bad_states, a.problems) == (b.rejected, b.clamped, b.bad_states, b.problems)
    assert a.clamped > 25 and a.rejected > 20 and a.bad_states > 20
    kinds = {m.mode for m in fast.outputs["status"]}
    assert len(kinds) >= 4  # waiting, soft start, active, damping and e-stop were all gone through


# -- both, in the lockstep walk graph --------------------------------------------------------------

WATCHED = ("hal/state", "policy/joint_command", "policy/observation", "safety/joint_command", "safety/status")


class Tape(Node):
    """Every frame of the watched topics, as sent but for the run's ``robot_id`` (drawn per run)."""

    kind = "recorder"
    topics = Input(AnyMessage, queue=100_000)

    def on_configure(self) -> None:
        self.frames: dict[str, list[bytes]] = {t: [] for t in WATCHED}

    def on_topics(self, msg: RawMessage) -> None:
        typed = msg.decode()
        if "robot_id" in typed.DESCRIPTOR.fields_by_name:
            typed.robot_id = ""
        self.frames[msg.topic].append(typed.SerializeToString())


def _walk(bundle: str, policy: type[Node], safety: type[Node]) -> dict[str, list[bytes]]:
    pytest.importorskip("mujoco")
    decl = load_graph("walk", clock="sim", sets=["hal.status_period_s=0", f"policy.bundle={bundle}"])
    decl.nodes["policy"].class_ref, decl.nodes["safety"].class_ref = policy, safety
    decl.nodes["tape"] = NodeDecl("tape", Tape, inputs={"topics": list(WATCHED)}, locs={"node": Loc("test")})
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=4.0, handle_signals=False) == 0  # the schedule walks from t = 2 s
    assert not ex.failures, ex.failures
    return ex.nodes["tape"].frames


@pytest.mark.parametrize("bundle", ["go2_rough", "go2_walk"])  # with the height scan, and blind
def test_walk_graph_runs_byte_for_byte_as_with_the_plain_nodes(bundle):
    fast = _walk(bundle, PolicyNode, Safety)
    assert fast == _walk(bundle, ReferencePolicy, ReferenceSafety)
    assert len(fast["safety/joint_command"]) >= 199 and len(fast["policy/observation"]) >= 150


def test_the_debug_observation_is_built_only_while_something_reads_it():
    """In the walk graph nothing reads policy/observation: the policy builds none (above, a recorder
    reads it and gets one per command)."""
    pytest.importorskip("mujoco")
    decl = load_graph("walk", clock="sim", sets=["hal.status_period_s=0", "policy.bundle=go2_walk"])
    ex = Executor(build_graph(decl))
    assert ex.run(duration_s=1.0, handle_signals=False) == 0 and not ex.failures
    policy = ex.nodes["policy"]
    assert policy.joint_command.count >= 45 and not policy.observation.wanted and policy.observation.count == 0
