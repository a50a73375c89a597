"""Observation terms against hand-computed values; mapping by name, clip/scale order, history."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.msgs import HeightScan, RobotState, VelocityCommand, set_array
from krabgraph.nodes.policy import (
    MissingInputError,
    ObservationBuilder,
    ObservationError,
    load_contract,
)
from krabgraph.nodes.rotations import projected_gravity, quat_from_rpy

MJCF_ORDER = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]
POLICY_ORDER = [f"{leg}_{part}_joint" for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")]
Q0 = {"hip": 0.0, "thigh": 0.8, "calf": -1.5}


def robot_state(
    q: dict[str, float],
    qd: dict[str, float] | None = None,
    quat=(1.0, 0.0, 0.0, 0.0),
    gyro=(0.0, 0.0, 0.0),
    base_vel=None,
    order=None,
) -> RobotState:
    """A RobotState listing joints in ``order`` (default: dict order)."""
    names = list(order or q)
    msg = RobotState()
    msg.header.stamp_ns, msg.header.seq = 20_000_000, 1
    msg.joints.name.extend(names)
    set_array(msg.joints.position, [q[n] for n in names])
    set_array(msg.joints.velocity, [(qd or {}).get(n, 0.0) for n in names])
    o = msg.imu.orientation
    o.w, o.x, o.y, o.z = quat
    g = msg.imu.angular_velocity
    g.x, g.y, g.z = gyro
    if base_vel is not None:
        msg.has_base = True
        v = msg.base.linear_velocity
        v.x, v.y, v.z = base_vel
    return msg


def small_contract(tmp_path: Path, terms: list, clip=None, joints=("j0", "j1", "j2")):
    data = {
        "name": "t",
        "robot": "test",
        "weights": "w.onnx",
        "format": "onnx",
        "control_dt": 0.02,
        "joints": list(joints),
        "default_joint_pos": {"j0": 0.1, "j1": 0.2, "j2": 0.3},
        "observations": {"terms": terms, **({"clip": clip} if clip is not None else {})},
        "actions": {"scale": 1.0},
        "gains": {"kp": 1.0, "kd": 0.1},
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(data)))
    return load_contract(path)


# -- individual terms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quat", "expected"),
    [
        ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
        (quat_from_rpy(math.radians(30), 0, 0), (0.0, -0.5, -math.sqrt(3) / 2)),  # rolled 30° left side up
        (quat_from_rpy(0, math.radians(90), 0), (1.0, 0.0, 0.0)),  # pitched nose down: gravity along +x
        (quat_from_rpy(0, 0, math.radians(70)), (0.0, 0.0, -1.0)),  # yaw does not change it
        (quat_from_rpy(math.radians(30), 0, 1.2), (0.0, -0.5, -math.sqrt(3) / 2)),  # rolled, then turned
    ],
)
def test_projected_gravity_for_known_tilts(quat, expected):
    np.testing.assert_allclose(projected_gravity(np.array(quat)), expected, atol=1e-12)


def test_projected_gravity_term_normalises_the_imu_quaternion(tmp_path):
    c = small_contract(tmp_path, ["projected_gravity"])
    b = ObservationBuilder(c)
    q = 2.0 * quat_from_rpy(math.radians(30), 0, 0)  # not unit length
    obs = b.build(b.decode(robot_state({"j0": 0, "j1": 0, "j2": 0}, quat=tuple(q))))
    np.testing.assert_allclose(obs, [0.0, -0.5, -math.sqrt(3) / 2], atol=1e-6)
    with pytest.raises(ObservationError, match=r"imu\.orientation is all zero"):
        b.decode(robot_state({"j0": 0, "j1": 0, "j2": 0}, quat=(0, 0, 0, 0)))


def test_joint_terms_map_a_shuffled_message_by_name():
    c = load_contract("go2_walk")
    b = ObservationBuilder(c)
    q = {n: 0.01 * i + Q0[n.split("_")[1]] for i, n in enumerate(MJCF_ORDER)}  # q - q0 = 0.01 * MJCF index
    qd = {n: float(i) for i, n in enumerate(MJCF_ORDER)}
    shuffled = [*reversed(MJCF_ORDER), "head_joint"]  # extra joints are ignored
    q["head_joint"] = 9.0
    s = b.decode(robot_state(q, qd, order=shuffled))
    mjcf_index = [MJCF_ORDER.index(n) for n in POLICY_ORDER]  # FR_hip is MJCF joint 3, ...
    assert mjcf_index[:4] == [3, 4, 5, 0]
    np.testing.assert_allclose(s.joint_pos - s.default_joint_pos, 0.01 * np.array(mjcf_index), atol=1e-12)
    np.testing.assert_allclose(s.joint_vel, mjcf_index)
    obs = b.build(s)
    labels = b.labels
    assert obs[labels.index("joint_pos_rel[FR_hip_joint]")] == pytest.approx(0.03)
    assert obs[labels.index("joint_pos_rel[FL_calf_joint]")] == pytest.approx(0.02)
    assert obs[labels.index("joint_vel_rel[RL_thigh_joint]")] == pytest.approx(0.05 * 7)  # scaled by 0.05


def test_missing_or_duplicated_joints_are_named():
    b = ObservationBuilder(load_contract("go2_walk"))
    q = {n: 0.0 for n in MJCF_ORDER if n != "RR_calf_joint"}
    with pytest.raises(ObservationError, match="lacks joint\\(s\\) the policy needs: RR_calf_joint"):
        b.decode(robot_state(q))
    q = {n: 0.0 for n in MJCF_ORDER}
    with pytest.raises(ObservationError, match="lists 'FL_hip_joint' twice"):
        b.decode(robot_state(q, order=[*MJCF_ORDER, "FL_hip_joint"]))


def test_velocity_and_command_terms(tmp_path):
    c = small_contract(tmp_path, ["base_lin_vel", "base_ang_vel", "velocity_commands", "last_action"])
    b = ObservationBuilder(c)
    q = {"j0": 0.0, "j1": 0.0, "j2": 0.0}
    state = robot_state(q, gyro=(0.1, -0.2, 0.3), base_vel=(1.0, 2.0, 3.0))
    obs = b.build(b.decode(state, None, None, np.array([0.5, -0.5, 2.0])))
    np.testing.assert_allclose(obs, [1, 2, 3, 0.1, -0.2, 0.3, 0, 0, 0, 0.5, -0.5, 2.0], atol=1e-7)
    cmd = VelocityCommand(vx=0.7, vy=-0.1, yaw_rate=0.4)
    obs = b.build(b.decode(state, cmd))
    np.testing.assert_allclose(obs[6:], [0.7, -0.1, 0.4, 0, 0, 0], atol=1e-7)


def test_base_lin_vel_needs_ground_truth(tmp_path):
    b = ObservationBuilder(small_contract(tmp_path, ["base_lin_vel"]))
    with pytest.raises(MissingInputError, match=r"RobotState\.has_base is false") as info:
        b.build(b.decode(robot_state({"j0": 0.0, "j1": 0.0, "j2": 0.0})))
    assert info.value.input == "base"


def height_scan(values: np.ndarray, offset: float = 0.5) -> HeightScan:
    msg = HeightScan(resolution=0.1, offset=offset)
    set_array(msg.heights, values.astype(np.float32))
    return msg


def test_height_scan_is_flattened_x_fastest_clipped_and_checked(tmp_path):
    term = {"name": "height_scan", "clip": 1.0, "options": {"shape": [2, 3], "offset": 0.5}}
    b = ObservationBuilder(small_contract(tmp_path, [term]))
    state = robot_state({"j0": 0.0, "j1": 0.0, "j2": 0.0})
    grid = np.array([[0.1, 0.2, 0.3], [0.4, 2.5, -3.0]])  # [n_y, n_x]
    obs = b.build(b.decode(state, height_scan=height_scan(grid)))
    np.testing.assert_allclose(obs, [0.1, 0.2, 0.3, 0.4, 1.0, -1.0], atol=1e-6)
    assert b.labels[1] == "height_scan[0,1]" and b.labels[3] == "height_scan[1,0]"
    with pytest.raises(MissingInputError, match="needs a HeightScan message") as info:
        b.build(b.decode(state))
    assert info.value.input == "height_scan"
    with pytest.raises(ObservationError, match=r"shape \[3, 2\] but the contract expects \[2, 3\]"):
        b.build(b.decode(state, height_scan=height_scan(grid.T)))
    with pytest.raises(ObservationError, match=r"offset is 0\.0 m but the contract expects 0\.5 m"):
        b.build(b.decode(state, height_scan=height_scan(grid, offset=0.0)))


# -- pipeline: clip, scale, history, global clip --------------------------------------------


def test_term_clip_applies_before_scale_and_global_clip_last(tmp_path):
    terms = [{"name": "base_ang_vel", "clip": [-1.0, 1.0], "scale": 2.0}, {"name": "last_action", "scale": 10.0}]
    b = ObservationBuilder(small_contract(tmp_path, terms, clip=100.0))
    state = robot_state({"j0": 0.0, "j1": 0.0, "j2": 0.0}, gyro=(5.0, -0.25, -5.0))
    obs = b.build(b.decode(state, last_action=np.array([3.0, 20.0, -50.0])))
    # clip then scale: 5 -> 1 -> 2 (scale then clip would give 1); global clip ±100 after scale.
    np.testing.assert_allclose(obs, [2.0, -0.5, -2.0, 30.0, 100.0, -100.0])
    assert obs.dtype == np.float32


def test_per_element_scale(tmp_path):
    b = ObservationBuilder(small_contract(tmp_path, [{"name": "velocity_commands", "scale": [2.0, 2.0, 0.25]}]))
    state = robot_state({"j0": 0.0, "j1": 0.0, "j2": 0.0})
    obs = b.build(b.decode(state, VelocityCommand(vx=1.0, vy=0.5, yaw_rate=2.0)))
    np.testing.assert_allclose(obs, [2.0, 1.0, 0.5])


def test_history_is_oldest_first_per_term_and_refills_after_reset(tmp_path):
    terms = [{"name": "joint_pos_rel", "history": 3, "scale": 10.0}, "velocity_commands"]
    b = ObservationBuilder(small_contract(tmp_path, terms))
    q0 = np.array([0.1, 0.2, 0.3])

    def tick(k: float) -> np.ndarray:
        q = dict(zip(("j0", "j1", "j2"), q0 + k * np.array([1.0, 2.0, 3.0]), strict=True))
        return b.build(b.decode(robot_state(q), VelocityCommand(vx=k)))

    first = tick(1.0)  # the first observation fills the whole history
    np.testing.assert_allclose(first, [10, 20, 30] * 3 + [1, 0, 0], rtol=1e-6)
    tick(2.0)
    third = tick(3.0)
    np.testing.assert_allclose(third, [10, 20, 30, 20, 40, 60, 30, 60, 90, 3, 0, 0], rtol=1e-6)
    fourth = tick(4.0)
    np.testing.assert_allclose(fourth[:9], [20, 40, 60, 30, 60, 90, 40, 80, 120], rtol=1e-6)
    b.reset()
    np.testing.assert_allclose(tick(5.0)[:9], [50, 100, 150] * 3, rtol=1e-6)


def test_non_finite_input_is_refused_by_label_and_leaves_history_untouched(tmp_path):
    b = ObservationBuilder(small_contract(tmp_path, [{"name": "joint_pos_rel", "history": 2}]))
    ok = b.build(b.decode(robot_state({"j0": 0.1, "j1": 0.2, "j2": 0.3})))
    np.testing.assert_allclose(ok, np.zeros(6), atol=1e-7)
    with pytest.raises(ObservationError, match=r"not finite at joint_pos_rel\[j1\]@t"):
        b.build(b.decode(robot_state({"j0": 0.1, "j1": float("nan"), "j2": 0.3})))
    after = b.build(b.decode(robot_state({"j0": 1.1, "j1": 0.2, "j2": 0.3})))
    np.testing.assert_allclose(after, [0, 0, 0, 1, 0, 0], atol=1e-6)


# -- the go2 bundle, end to end --------------------------------------------------------------


def test_go2_walk_observation_vector_by_hand():
    c = load_contract("go2_walk")
    b = ObservationBuilder(c)
    rng = np.random.default_rng(7)
    q = {n: Q0[n.split("_")[1]] + rng.uniform(-0.3, 0.3) for n in MJCF_ORDER}
    qd = {n: rng.uniform(-5, 5) for n in MJCF_ORDER}
    quat = quat_from_rpy(0, 0.2, 0.4)
    last = rng.uniform(-150, 150, size=12)  # the node passes the clipped action; the obs clip still holds
    cmd = VelocityCommand(vx=0.8, vy=-0.2, yaw_rate=0.5)
    obs = b.build(b.decode(robot_state(q, qd, quat, gyro=(0.4, -0.8, 1.2), order=MJCF_ORDER), cmd, None, last))
    q_pol = np.array([q[n] for n in POLICY_ORDER])
    qd_pol = np.array([qd[n] for n in POLICY_ORDER])
    gravity = (math.sin(0.2), 0.0, -math.cos(0.2))  # pitch 0.2 rad; yaw irrelevant
    expected = np.concatenate(
        [
            np.array([0.4, -0.8, 1.2]) * 0.25,
            gravity,
            [0.8, -0.2, 0.5],
            q_pol - np.array([0.0, 0.8, -1.5] * 4),
            qd_pol * 0.05,
            np.clip(last, -100, 100),
        ]
    )
    assert obs.shape == (45,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)


# -- observe(): the one-pass path gives build(decode(...)) exactly -------------------------------------


def _outcome(fn):
    """``fn()``'s float32 bytes, or the type and text of what it raised."""
    try:
        return ("ok", fn().tobytes())
    except Exception as exc:  # compared, not hidden: both paths must raise the same
        return (type(exc).__name__, str(exc))


def _random_state(rng: np.random.Generator, names: list[str], step: int) -> RobotState:
    """Mostly well-formed states in a few joint orders, with the occasional problem of every kind."""
    order = [names, names[::-1], [*names[3:], *names[:3], "extra_joint"]][step % 3]
    q = {n: float(rng.uniform(-1, 1)) for n in order}
    qd = {n: float(rng.uniform(-5, 5)) for n in order}
    quat = tuple(rng.normal(size=4))
    problem = rng.integers(0, 14)
    if problem == 0:
        q[order[2]] = math.nan
    elif problem == 1:
        qd[order[0]] = math.inf
    elif problem == 2:
        quat = (0.0, 0.0, 0.0, 0.0)
    elif problem == 3:
        q[order[1]] = 1e200  # finite; its square overflows: the fast path's test is only a shortcut
    elif problem == 4:
        q[order[1]] = -0.0
    msg = robot_state(q, qd, quat=quat, gyro=tuple(rng.normal(size=3)), order=order)
    msg.header.stamp_ns = int(rng.integers(0, 2**40)) if problem != 5 else 0
    if problem != 6:
        msg.has_base = True
        v = msg.base.linear_velocity
        v.x, v.y, v.z = rng.normal(size=3)
    if problem == 7:
        set_array(msg.joints.velocity, [0.0] * (len(order) - 1))  # one value short
    elif problem == 8:
        set_array(msg.joints.position, np.array([q[n] for n in order], dtype=np.float32))
    elif problem == 9:
        msg.joints.position.shape[:] = [1, len(order)]
    elif problem == 10:
        del msg.joints.name[-1]
    return msg


def _random_scan(rng: np.random.Generator, shape: tuple[int, int], offset: float) -> HeightScan | None:
    problem = rng.integers(0, 10)
    if problem == 0:
        return None
    grid = (shape[1], shape[0]) if problem == 1 else shape
    heights = rng.uniform(-1.5, 1.5, grid)
    if problem == 2:
        heights[0, 1] = math.nan
    msg = HeightScan(offset=offset + (0.1 if problem == 3 else 0.0))
    msg.center_x = 0.2 if problem == 4 else 0.0
    set_array(msg.heights, heights, np.float64 if problem == 5 else np.float32)
    return msg


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # 1e200 without an obs clip, on both paths
@pytest.mark.parametrize("bundle", ["go2_walk", "anymal_d_rough", "history"])
def test_observe_gives_exactly_what_build_of_decode_gives(tmp_path, bundle):
    if bundle == "history":
        contract = small_contract(
            tmp_path,
            [
                {"name": "joint_pos_rel", "history": 3, "clip": [-0.5, 0.5]},
                {"name": "projected_gravity", "scale": 2.0},
                {"name": "joint_vel", "history": 2, "scale": 0.1},
                "last_action",
                "velocity_commands",
                {"name": "height_scan", "options": {"shape": [3, 4], "offset": 0.5, "ordering": "yx"}},
            ],
            clip=3.0,
        )
    else:
        contract = load_contract(bundle)
    fast, slow = ObservationBuilder(contract), ObservationBuilder(contract)
    assert fast._fast is not None
    scan_term = next((t for t in contract.observations if t.name == "height_scan"), None)
    rng = np.random.default_rng(7)
    names = list(contract.joints)
    outcomes = []
    for step in range(300):
        state = _random_state(rng, names, step)
        command = None if step % 5 == 0 else VelocityCommand(vx=rng.normal(), vy=rng.normal(), yaw_rate=rng.normal())
        scan = None
        if scan_term is not None:
            scan = _random_scan(rng, scan_term.options["shape"], scan_term.options.get("offset", 0.0))
        action = rng.normal(size=len(names)) if step % 7 else None
        inputs = (state, command, scan, action)
        got = _outcome(lambda inputs=inputs: fast.observe(*inputs))
        want = _outcome(lambda inputs=inputs: slow.build(slow.decode(*inputs)))
        assert got == want, step
        outcomes.append(got[0])
        if step == 150:
            fast.reset()
            slow.reset()
    assert outcomes.count("ok") > 50 and len(set(outcomes)) >= 2  # results and errors both compared
    assert len(fast._fast.joints.orders) == 3  # the three joint orders took the fast path


def test_malformed_arrays_are_observation_errors_on_both_paths():
    """A bad dtype code or a scan that is not 2-D is an ObservationError (the policy node reports it and
    publishes nothing), never an exception that stops the node; a scan no term reads is still checked."""
    builder = ObservationBuilder(load_contract("go2_walk"))  # no height_scan term
    q = {n: Q0[n.split("_")[1]] for n in POLICY_ORDER}
    good = robot_state(q, base_vel=(0.0, 0.0, 0.0))
    builder.observe(good)  # learns the joint order: the one-pass path from here on
    bad_dtype = robot_state(q, base_vel=(0.0, 0.0, 0.0))
    bad_dtype.joints.position.dtype = 99
    flat_scan = HeightScan()
    set_array(flat_scan.heights, np.zeros(6, dtype=np.float32))
    for args, text in [
        ((bad_dtype,), "RobotState.joints.position: unknown dtype code 99"),
        ((good, None, flat_scan), "HeightScan.heights must have shape [n_y, n_x]"),
    ]:
        for observe in (builder.observe, lambda *a: builder.build(builder.decode(*a))):
            with pytest.raises(ObservationError, match=re.escape(text)):
                observe(*args)
