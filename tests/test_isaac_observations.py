"""Isaac Lab policy bundles: ANYmal-D rough/flat observations term by term, and the Extreme-Parkour layout.

Expected values are computed by hand from Isaac Lab 2.3.2's velocity task (isaaclab_tasks
velocity_env_cfg.py, anymal_d/*_env_cfg.py; isaaclab envs/mdp/observations.py): terms in
PolicyCfg order, no scales, height_scan = base z - hit z - 0.5 clipped to [-1, 1], joints in the
articulation order, action = default + 0.5 * raw.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import yaml

from krabgraph.msgs import HeightScan, RobotState, VelocityCommand, set_array
from krabgraph.nodes.policy import TERMS, ObservationBuilder, ObservationError, load_backend, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from krabgraph.nodes.rotations import roll_pitch

LAB_ORDER = [
    "LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA",
    "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
    "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE",
]  # fmt: skip
DEFAULT = np.array([0.0, 0.0, 0.0, 0.0, 0.4, -0.4, 0.4, -0.4, -0.8, 0.8, -0.8, 0.8])
A1_POLICY_ORDER = [f"{leg}_{part}_joint" for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")]
ROLL = 0.2


def state(names: list[str], q: dict[str, float], qd: dict[str, float]) -> RobotState:
    """A RobotState with joints in ``names`` order, rolled by ROLL about x, moving at known speeds."""
    msg = RobotState()
    msg.joints.name.extend(names)
    set_array(msg.joints.position, [q[n] for n in names])
    set_array(msg.joints.velocity, [qd[n] for n in names])
    o = msg.imu.orientation
    o.w, o.x = math.cos(ROLL / 2), math.sin(ROLL / 2)
    g = msg.imu.angular_velocity
    g.x, g.y, g.z = 0.3, -0.4, 0.9
    msg.has_base = True
    v = msg.base.linear_velocity
    v.x, v.y, v.z = 0.8, -0.15, 0.05
    return msg


def scan(values: np.ndarray, offset: float) -> HeightScan:
    msg = HeightScan(resolution=0.1, size_x=1.6, size_y=1.0, offset=offset)
    set_array(msg.heights, values.astype(np.float32))
    return msg


def anymal_inputs():
    rng = np.random.default_rng(11)
    q = {n: DEFAULT[i] + rng.uniform(-0.3, 0.3) for i, n in enumerate(LAB_ORDER)}
    qd = {n: rng.uniform(-3.0, 3.0) for n in LAB_ORDER}
    heights = rng.uniform(-1.6, 1.6, size=(11, 17))  # some beyond the [-1, 1] clip
    return q, qd, heights


def test_anymal_d_rough_contract_facts_from_isaac_lab():
    """The trainer-written contract has Isaac Lab's Isaac-Velocity-Rough-Anymal-D-v0 layout."""
    c = load_contract("anymal_d_rough")
    assert list(c.joints) == LAB_ORDER and c.robot == "anymal_d"
    np.testing.assert_array_equal(c.default_joint_pos, DEFAULT)
    assert c.control_dt == 0.02 and c.obs_dim == 235 and c.action_dim == 12 and c.obs_clip is None
    sizes = [(t.name, t.size) for t in c.observations]
    assert sizes == [
        ("base_lin_vel", 3), ("base_ang_vel", 3), ("projected_gravity", 3), ("velocity_commands", 3),
        ("joint_pos_rel", 12), ("joint_vel_rel", 12), ("last_action", 12), ("height_scan", 187),
    ]  # fmt: skip
    assert all(np.all(t.scale == 1.0) for t in c.observations)
    assert [t.clip for t in c.observations] == [None] * 7 + [(-1.0, 1.0)]
    np.testing.assert_array_equal(c.actions.scale, np.full(12, 0.5))
    np.testing.assert_array_equal(c.actions.offset, DEFAULT)
    assert c.actions.clip == (-5.0, 5.0)  # the trainer's clip (rsl_rl's default: none); both HALs apply it
    assert c.provenance["trainer"].startswith("krabgraph.train")
    assert (c.input_name, c.output_name) == ("obs", "actions")  # Isaac Lab's ONNX exporter names


def test_anymal_d_rough_observation_term_by_term_with_joints_given_in_another_order():
    c = load_contract("anymal_d_rough")
    q, qd, heights = anymal_inputs()
    builder = ObservationBuilder(c)
    last = np.linspace(-2.0, 2.0, 12)
    message_order = sorted(LAB_ORDER)  # alphabetical: LF_HAA, LF_HFE, LF_KFE, LH_HAA, ...
    obs = builder.build(
        builder.decode(
            state(message_order, q, qd), VelocityCommand(vx=0.9, vy=-0.2, yaw_rate=0.4), scan(heights, 0.5), last
        )
    )
    assert obs.shape == (235,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0:3], (0.8, -0.15, 0.05), atol=1e-7)  # root_lin_vel_b
    np.testing.assert_allclose(obs[3:6], (0.3, -0.4, 0.9), atol=1e-7)  # root_ang_vel_b
    # Gravity (0, 0, -1) seen from a body rolled by ROLL about x: (0, -sin, -cos).
    np.testing.assert_allclose(obs[6:9], (0.0, -math.sin(ROLL), -math.cos(ROLL)), atol=1e-6)
    np.testing.assert_allclose(obs[9:12], (0.9, -0.2, 0.4), atol=1e-7)
    np.testing.assert_allclose(obs[12:24], [q[n] - DEFAULT[i] for i, n in enumerate(LAB_ORDER)], atol=1e-6)
    np.testing.assert_allclose(obs[24:36], [qd[n] for n in LAB_ORDER], atol=1e-6)
    np.testing.assert_allclose(obs[36:48], last, atol=1e-7)
    np.testing.assert_allclose(obs[48:], np.clip(heights, -1.0, 1.0).reshape(-1), atol=1e-6)  # x fastest
    assert obs[48 + 17 * 3 + 5] == pytest.approx(np.clip(heights[3, 5], -1, 1), abs=1e-6)
    assert builder.labels[12] == "joint_pos_rel[LF_HAA]" and builder.labels[23] == "joint_pos_rel[RH_KFE]"
    assert builder.labels[48] == "height_scan[0,0]" and builder.labels[234] == "height_scan[10,16]"


def test_anymal_d_rough_rejects_a_scan_with_another_offset_or_grid():
    c = load_contract("anymal_d_rough")
    q, qd, heights = anymal_inputs()
    builder = ObservationBuilder(c)
    with pytest.raises(ObservationError, match=r"offset is 0\.3 m but the contract expects 0\.5 m"):
        builder.build(builder.decode(state(LAB_ORDER, q, qd), None, scan(heights, 0.3)))
    with pytest.raises(ObservationError, match=r"shape \[17, 11\]"):
        builder.build(builder.decode(state(LAB_ORDER, q, qd), None, scan(heights.T.copy(), 0.5)))


def test_anymal_d_actions_are_default_plus_half_the_raw_action_by_joint_name():
    c = load_contract("anymal_d_rough")
    raw = np.linspace(-1.5, 1.5, 12)
    action, targets = c.actions.process(raw)
    np.testing.assert_allclose(action, raw)
    np.testing.assert_allclose(targets, DEFAULT + 0.5 * raw)
    assert targets[LAB_ORDER.index("RH_KFE")] == pytest.approx(0.8 + 0.75)


def test_anymal_d_flat_is_the_rough_layout_without_the_scan():
    flat, rough = load_contract("anymal_d_flat"), load_contract("anymal_d_rough")
    assert flat.obs_dim == 48 and flat.required_inputs == frozenset({"base"})
    assert flat.observation_labels == rough.observation_labels[:48]
    assert list(flat.joints) == LAB_ORDER and flat.control_dt == 0.02
    q, qd, _ = anymal_inputs()
    builder = ObservationBuilder(flat)
    obs = builder.build(builder.decode(state(LAB_ORDER, q, qd)))  # no height scan needed
    np.testing.assert_allclose(obs[12:24], [q[n] - DEFAULT[i] for i, n in enumerate(LAB_ORDER)], atol=1e-6)


# -- Extreme Parkour teacher ---------------------------------------------------------------------


def test_extreme_parkour_teacher_layout_is_753_values_in_the_papers_blocks():
    c = load_contract("extreme_parkour_teacher")
    assert c.obs_dim == 753 and c.action_dim == 12 and list(c.joints) == A1_POLICY_ORDER
    offsets, at = {}, 0
    for term in c.observations:
        offsets.setdefault(term.name, []).append((at, term.size))
        at += term.size
    # proprio 53 | scan 132 | priv explicit 9 | priv latent 29 | history 10 x 53
    assert offsets["height_scan"] == [(53, 132)]
    assert offsets["base_lin_vel"] == [(185, 3)]
    assert offsets["constant"][-1] == (194, 29)
    assert offsets["unavailable"] == [(6, 2), (49, 4), (223, 530)]
    np.testing.assert_allclose(c.default_joint_pos, [-0.1, 0.8, -1.5, 0.1, 0.8, -1.5, -0.1, 1.0, -1.5, 0.1, 1.0, -1.5])
    np.testing.assert_array_equal(c.actions.scale, np.full(12, 0.25))
    assert c.actions.clip == (-4.8, 4.8) and c.obs_clip == (-100.0, 100.0)
    assert (float(c.kp[0]), float(c.kd[0])) == (40.0, 1.0)


def test_extreme_parkour_teacher_refuses_to_build_until_its_missing_inputs_exist():
    c = load_contract("extreme_parkour_teacher")
    rng = np.random.default_rng(2)
    q = {n: rng.uniform(-1, 1) for n in A1_POLICY_ORDER}
    builder = ObservationBuilder(c)
    inputs = builder.decode(state(A1_POLICY_ORDER, q, q), None, scan(np.zeros((11, 12)), 0.3))
    with pytest.raises(ObservationError, match=r"'goal_yaw_errors' .* waypoints"):
        builder.build(inputs)


def test_parkour_terms_by_hand():
    c = load_contract("extreme_parkour_teacher")
    terms = {t.name: t for t in c.observations}
    rng = np.random.default_rng(4)
    q = {n: rng.uniform(-1, 1) for n in A1_POLICY_ORDER}
    heights = rng.uniform(-0.5, 0.5, size=(11, 12))
    builder = ObservationBuilder(c)
    s = builder.decode(state(A1_POLICY_ORDER, q, q), VelocityCommand(vx=1.2, vy=0.3, yaw_rate=-0.2), scan(heights, 0.3))

    def compute(name, term=None):
        term = term or terms[name]
        return TERMS[name].compute(s, term.options)

    np.testing.assert_allclose(compute("imu_roll_pitch"), (ROLL, 0.0), atol=1e-9)
    np.testing.assert_allclose(compute("velocity_command_components"), [1.2])
    scan_yx = compute("height_scan", next(t for t in c.observations if t.name == "height_scan"))
    assert scan_yx[1] == pytest.approx(heights[1, 0]) and scan_yx[11] == pytest.approx(heights[0, 1])  # y fastest
    assert c.observation_labels[53 + 1] == "height_scan[1,0]"
    latent = [t for t in c.observations if t.name == "constant"][-1]
    assert latent.labels[4] == "constant[friction]" and compute("constant", latent)[4] == 1.0
    pitch = 0.4
    quat = np.array([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0])
    np.testing.assert_allclose(roll_pitch(*quat), (0.0, pitch), atol=1e-12)


def _isaac_lab_actor(obs_dim: int, hidden: list[int]) -> torch.nn.Sequential:
    """An actor shaped like rsl_rl's for Isaac Lab's ANYmal-D runner cfgs (ELU between Linear layers)."""
    torch.manual_seed(7)
    layers, last = [], obs_dim
    for width in hidden:
        layers += [torch.nn.Linear(last, width), torch.nn.ELU()]
        last = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(last, 12))


@pytest.mark.parametrize(
    ("bundle", "obs_dim", "hidden"),
    [("anymal_d_rough", 235, [512, 256, 128]), ("anymal_d_flat", 48, [128, 128, 128])],
)
def test_isaac_lab_checkpoint_and_torchscript_export_run_unchanged_through_the_bundle(
    tmp_path, bundle, obs_dim, hidden
):
    actor = _isaac_lab_actor(obs_dim, hidden)
    # rsl-rl-lib 3.0.1 (Isaac Lab 2.3.2's pin) saves the ActorCritic as model_state_dict, actor.<i>.*.
    state = {f"actor.{k}": v for k, v in actor.state_dict().items()}
    state.update({"std": torch.ones(12), "critic.0.weight": torch.zeros(1, obs_dim), "critic.0.bias": torch.zeros(1)})
    torch.save({"model_state_dict": state, "iter": 1500}, tmp_path / "model_1499.pt")
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; Isaac Lab still exports policy.pt
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(actor).save(str(tmp_path / "policy.pt"))
    raw = yaml.safe_load((BUNDLES_DIR / bundle / "contract.yaml").read_text())
    raw.pop("input"), raw.pop("output")
    obs = np.random.default_rng(0).uniform(-1, 1, obs_dim).astype(np.float32)
    with torch.no_grad():
        expected = actor(torch.from_numpy(obs)[None]).numpy()[0]
    for fmt, weights in (("rsl_rl", "model_1499.pt"), ("torchscript", "policy.pt")):
        raw.update(format=fmt, weights=weights)
        (tmp_path / "contract.yaml").write_text(yaml.safe_dump(raw))
        backend = load_backend(load_contract(tmp_path / "contract.yaml"))
        assert (backend.input_dim, backend.output_dim) == (obs_dim, 12)
        np.testing.assert_allclose(backend(obs), expected, atol=1e-5, err_msg=fmt)
