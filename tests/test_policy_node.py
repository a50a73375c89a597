"""PolicyNode: state in, name-keyed joint targets out; missing inputs publish nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import CommandSource, HeightScan, RobotState, VelocityCommand, set_array, to_numpy
from krabgraph.nodes.policy import load_backend, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from krabgraph.nodes.policy.node import PolicyNode

MJCF_ORDER = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]
POLICY_ORDER = [f"{leg}_{part}_joint" for leg in ("FR", "FL", "RR", "RL") for part in ("hip", "thigh", "calf")]
Q0 = {"hip": 0.0, "thigh": 0.8, "calf": -1.5}


def go2_state(seq: int, q: dict[str, float], qd: dict[str, float], gyro=(0.1, -0.2, 0.05)) -> RobotState:
    msg = RobotState()
    msg.header.stamp_ns, msg.header.seq = seq * 20_000_000, seq
    msg.joints.name.extend(MJCF_ORDER)
    set_array(msg.joints.position, [q[n] for n in MJCF_ORDER])
    set_array(msg.joints.velocity, [qd[n] for n in MJCF_ORDER])
    msg.imu.orientation.w = 1.0
    msg.imu.angular_velocity.x, msg.imu.angular_velocity.y, msg.imu.angular_velocity.z = gyro
    return msg


def random_joints(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
    q = {n: Q0[n.split("_")[1]] + rng.uniform(-0.2, 0.2) for n in MJCF_ORDER}
    qd = {n: rng.uniform(-2, 2) for n in MJCF_ORDER}
    return q, qd


def test_go2_walk_commands_joints_by_name_with_contract_gains():
    h = NodeHarness(PolicyNode).start()
    rng = np.random.default_rng(5)
    q, qd = random_joints(rng)
    h.feed("command", VelocityCommand(vx=0.5, vy=0.0, yaw_rate=0.2))
    h.feed("state", go2_state(7, q, qd))
    assert len(h.outputs["joint_command"]) == 1 and len(h.outputs["observation"]) == 1
    cmd = h.outputs["joint_command"][0]
    assert list(cmd.name) == POLICY_ORDER
    assert cmd.source == CommandSource.POLICY
    assert (cmd.observation_stamp_ns, cmd.observation_seq) == (7 * 20_000_000, 7)
    np.testing.assert_array_equal(to_numpy(cmd.kp), np.full(12, 20.0))
    np.testing.assert_array_equal(to_numpy(cmd.kd), np.full(12, 0.5))
    np.testing.assert_array_equal(to_numpy(cmd.velocity), np.zeros(12))
    np.testing.assert_array_equal(to_numpy(cmd.effort), np.zeros(12))

    # Independent recomputation of the 45 observations and the targets, in the policy's joint order.
    q_pol = np.array([q[n] for n in POLICY_ORDER])
    qd_pol = np.array([qd[n] for n in POLICY_ORDER])
    q0 = np.array([0.0, 0.8, -1.5] * 4)
    obs = np.concatenate(
        [np.array([0.1, -0.2, 0.05]) * 0.25, [0, 0, -1], [0.5, 0.0, 0.2], q_pol - q0, qd_pol * 0.05, np.zeros(12)]
    ).astype(np.float32)
    debug = h.outputs["observation"][0]
    np.testing.assert_allclose(to_numpy(debug.data), obs, atol=1e-6)
    assert len(debug.labels) == 45 and debug.labels[9] == "joint_pos_rel[FR_hip_joint]"
    raw = load_backend(load_contract("go2_walk"))(obs)
    expected = q0 + np.array([0.125, 0.25, 0.25] * 4) * np.clip(raw, -100, 100)
    np.testing.assert_allclose(to_numpy(cmd.position), expected, atol=1e-5)

    # The next observation carries this action as last_action.
    h.feed("state", go2_state(8, q, qd))
    second = to_numpy(h.outputs["observation"][1].data)
    np.testing.assert_allclose(second[33:45], raw, atol=1e-5)


def test_zero_command_until_one_arrives():
    h = NodeHarness(PolicyNode).start()
    q, qd = random_joints(np.random.default_rng(1))
    h.feed("state", go2_state(1, q, qd))
    np.testing.assert_array_equal(to_numpy(h.outputs["observation"][0].data)[6:9], [0, 0, 0])
    h.feed("command", VelocityCommand(vx=1.0, vy=-0.3, yaw_rate=0.4))
    h.feed("state", go2_state(2, q, qd))
    np.testing.assert_allclose(to_numpy(h.outputs["observation"][1].data)[6:9], [1.0, -0.3, 0.4], atol=1e-6)


def scan_bundle(tmp_path: Path) -> Path:
    """go2_walk plus a 2x3 height scan (the go2 network is replaced by a matching ONNX file)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    data = yaml.safe_load((BUNDLES_DIR / "go2_walk" / "contract.yaml").read_text())
    data["observations"]["terms"].append({"name": "height_scan", "clip": 1.0, "options": {"shape": [2, 3]}})
    data["weights"] = "scan_policy.onnx"
    weight = helper.make_tensor("W", TensorProto.FLOAT, [51, 12], np.full(51 * 12, 0.01, dtype=np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["actions"])],
        "scan_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 51])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, 12])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "scan_policy.onnx")
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_missing_height_scan_logs_one_error_and_publishes_nothing(tmp_path, caplog):
    h = NodeHarness(PolicyNode, bundle=str(scan_bundle(tmp_path))).start()
    q, qd = random_joints(np.random.default_rng(2))
    with caplog.at_level(logging.ERROR, logger="krabgraph"):
        for seq in range(1, 6):
            h.feed("state", go2_state(seq, q, qd))
    assert h.outputs["joint_command"] == [] and h.outputs["observation"] == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "waiting for height_scan: term height_scan needs a HeightScan message" in errors[0].getMessage()
    scan = HeightScan(offset=0.0)
    set_array(scan.heights, np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 2.0]], dtype=np.float32))
    h.feed("height_scan", scan)
    h.feed("state", go2_state(6, q, qd))
    assert len(h.outputs["joint_command"]) == 1
    obs = to_numpy(h.outputs["observation"][0].data)
    np.testing.assert_allclose(obs[45:], [0.1, 0.2, 0.3, 0.4, 0.5, 1.0], atol=1e-6)


def test_scan_grid_centred_elsewhere_than_the_contract_says_is_refused(tmp_path, caplog):
    """A look-ahead contract (``center: [0.4, 0]``) fed a base-centred scan: one error naming both
    centres and the HAL parameter, no command; the matching scan then drives the policy."""
    path = scan_bundle(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["observations"]["terms"][-1]["options"]["center"] = [0.4, 0.0]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    h = NodeHarness(PolicyNode, bundle=str(path)).start()
    q, qd = random_joints(np.random.default_rng(3))
    scan = HeightScan(offset=0.0)
    set_array(scan.heights, np.zeros((2, 3), dtype=np.float32))
    with caplog.at_level(logging.ERROR, logger="krabgraph"):
        for seq in range(1, 4):
            h.feed("height_scan", scan)
            h.feed("state", go2_state(seq, q, qd))
    assert h.outputs["joint_command"] == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "centred at [0.0, 0.0] m but the contract expects [0.4, 0.0] m" in errors[0] and "scan_center" in errors[0]
    scan.center_x = 0.4
    h.feed("height_scan", scan)
    h.feed("state", go2_state(4, q, qd))
    assert len(h.outputs["joint_command"]) == 1


def test_state_without_the_policy_joints_publishes_nothing(caplog):
    h = NodeHarness(PolicyNode).start()
    msg = RobotState()
    msg.joints.name.extend(["FL_hip_joint"])
    set_array(msg.joints.position, [0.0])
    set_array(msg.joints.velocity, [0.0])
    msg.imu.orientation.w = 1.0
    with caplog.at_level(logging.ERROR, logger="krabgraph"):
        h.feed("state", msg)
        h.feed("state", msg)
    assert h.outputs["joint_command"] == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "lacks joint(s) the policy needs: FR_hip_joint" in errors[0]


def test_state_rate_other_than_control_dt_is_warned_once(caplog):
    h = NodeHarness(PolicyNode).start()
    q, qd = random_joints(np.random.default_rng(3))
    with caplog.at_level(logging.WARNING, logger="krabgraph"):
        for seq in range(1, 30):
            msg = go2_state(seq, q, qd)
            msg.header.stamp_ns = seq * 2_500_000  # 400 Hz instead of 50 Hz
            h.feed("state", msg)
    warnings = [r.getMessage() for r in caplog.records if "control_dt" in r.getMessage()]
    assert warnings == [
        "states arrive every 0.0025 s but policy go2_walk was trained at control_dt 0.0200 s; "
        "publish RobotState at the policy rate"
    ]


def test_unknown_bundle_fails_configure():
    from krabgraph.nodes.policy import ContractError

    node = PolicyNode(bundle="no_such_bundle")
    with pytest.raises(ContractError, match="unknown policy bundle 'no_such_bundle'"):
        node.configure()
