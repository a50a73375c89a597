"""IsaacHal on a STAND-IN Isaac Lab environment (no Isaac Sim here): lockstep, names, order of outputs.

``StandInIsaacHal`` is ``IsaacHal`` with ``make_adapter`` returning an ``IsaacAdapter`` over
``StandInIsaacEnv``; the node code under test is the real one. The graph test runs the real
executor and the real PolicyNode (anymal_d_rough contract, random rsl_rl weights) with a stand-in
safety node.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from krabgraph.launch import Executor, Input, Node, Output, graph_from_dict
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.launch.graph.validation import build_graph
from krabgraph.msgs import (
    ArrayStamped,
    JointCommand,
    RobotState,
    VelocityCommand,
    set_array,
    to_numpy,
)
from krabgraph.nodes.command import ScriptedVelocity
from krabgraph.nodes.isaac.adapter import IsaacAdapter, IsaacTaskError, IsaacUnavailableError, missing_isaac_modules
from krabgraph.nodes.isaac.hal import IsaacHal
from krabgraph.nodes.isaac.standin import StandInIsaacEnv
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from krabgraph.nodes.policy.node import PolicyNode
from krabgraph.nodes.robots import ROBOTS_DIR

LAB_ORDER = [
    "LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA",
    "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
    "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE",
]  # fmt: skip
DEFAULT = np.array([0.0, 0.0, 0.0, 0.0, 0.4, -0.4, 0.4, -0.4, -0.8, 0.8, -0.8, 0.8])
STEP_MS = 20_000_000


def step_terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(x > 0.35, 0.12, 0.0) + 0.02 * np.sin(3 * y)


class StandInIsaacHal(IsaacHal):
    """IsaacHal over a StandInIsaacEnv (a stand-in shaped like Isaac Lab's env; no Isaac Sim)."""

    def make_adapter(self, description):
        self.env = StandInIsaacEnv(terrain=step_terrain)
        tilt = np.array([0.995, 0.05, -0.08, 0.02])
        self.env.set_base(
            pos=(0.0, 0.0, 0.58), quat_wxyz=tuple(tilt / np.linalg.norm(tilt)), lin_vel_b=(0.3, 0.05, -0.02)
        )
        self.applied_targets: list[np.ndarray] = []
        return IsaacAdapter(
            self.env,
            feet=description.foot_geoms,
            scan_offset=self.scan_offset,
            observation_group=self.lab_observation_group,
        )

    def tick(self) -> None:
        super().tick()
        self.applied_targets.append(self.env.robot.data.joint_pos_target[0].numpy().copy())


def joint_command(names: list[str], positions: list[float], **extra) -> JointCommand:
    msg = JointCommand(name=names)
    set_array(msg.position, np.asarray(positions, dtype=np.float64))
    for key, values in extra.items():
        set_array(getattr(msg, key), np.asarray(values, dtype=np.float64))
    return msg


def targets(h: NodeHarness) -> np.ndarray:
    return h.node.env.robot.data.joint_pos_target[0].numpy().astype(np.float64)


def test_stand_in_hal_publishes_the_reset_state_on_activation_with_joints_by_name():
    h = NodeHarness(StandInIsaacHal).start()
    state = h.outputs["state"][0]
    assert list(state.joints.name) == LAB_ORDER
    np.testing.assert_allclose(to_numpy(state.joints.position), DEFAULT, atol=1e-7)
    assert state.has_base and state.base.position.z == pytest.approx(0.58)
    assert list(state.contacts.name) == ["LF_FOOT", "LH_FOOT", "RF_FOOT", "RH_FOOT"]
    assert state.imu.linear_acceleration.z > 9.0
    scan = h.outputs["height_scan"][0]
    assert list(scan.heights.shape) == [11, 17] and (scan.resolution, scan.size_x, scan.size_y) == (0.1, 1.6, 1.0)
    assert scan.offset == 0.5 and scan.header.frame_id == "base"
    assert h.outputs["clock"][0].sim_time_ns == 0
    assert len(h.outputs["lab_observation"][0].labels) == 235
    np.testing.assert_allclose(targets(h), DEFAULT, atol=1e-7)  # the task's default pose is held
    h.stop()
    assert h.node.adapter is None


def test_stand_in_hal_command_in_another_order_lands_on_the_named_joints_for_one_control_step():
    h = NodeHarness(StandInIsaacHal).start()
    names = list(reversed(LAB_ORDER))
    wanted = {name: 0.05 * i - 0.3 for i, name in enumerate(names)}
    h.feed("command", joint_command(names, [wanted[n] for n in names]))
    np.testing.assert_allclose(targets(h), DEFAULT, atol=1e-7)  # applied at the next tick, not on arrival
    h.advance(0.02)
    np.testing.assert_allclose(targets(h), [wanted[n] for n in LAB_ORDER], atol=1e-6)
    assert h.node.env.sim.steps == 4 and (h.node.applied, h.node.held) == (1, 0)
    state = h.outputs["state"][1]
    assert state.header.stamp_ns == STEP_MS and h.outputs["clock"][1].sim_time_ns == STEP_MS
    # The joints moved toward the targets: the one that was told to move most moved most.
    moved = to_numpy(state.joints.position) - DEFAULT
    assert int(np.argmax(np.abs(moved))) == int(np.argmax(np.abs(np.array([wanted[n] for n in LAB_ORDER]) - DEFAULT)))

    h.advance(0.02)  # no new command: the targets are held for the next control step
    assert (h.node.applied, h.node.held) == (1, 1) and h.node.env.sim.steps == 8
    assert h.outputs["clock"][2].sim_time_ns == 2 * STEP_MS


def test_stand_in_hal_refuses_subsets_and_invalid_commands_and_keeps_the_last_targets(caplog):
    h = NodeHarness(StandInIsaacHal).start()
    wanted = DEFAULT.copy()
    wanted[[11, 4]] = [1.0, 0.9]
    order = LAB_ORDER[::-1]  # any order: targets go by name
    h.feed("command", joint_command(order, wanted[::-1]))
    h.advance(0.02)
    np.testing.assert_allclose(targets(h), wanted, atol=1e-6)
    with caplog.at_level(logging.ERROR):
        h.feed("command", joint_command(["RH_KFE", "LF_HFE"], [0.0, 0.0]))  # a subset: refused
        h.feed("command", joint_command([*LAB_ORDER[:-1], "FR_hip_joint"], np.zeros(12)))
        h.feed("command", joint_command(LAB_ORDER, np.zeros(11)))
        h.feed("command", joint_command(LAB_ORDER, [float("nan")] * 12))
        h.feed("command", joint_command([*LAB_ORDER[:-1], "LF_HAA"], np.zeros(12)))
        h.feed("command", joint_command(LAB_ORDER, np.zeros(12), velocity=[1.0, 2.0]))
    h.advance(0.02)
    assert h.node.rejected == 6 and (h.node.applied, h.node.held) == (1, 1)
    np.testing.assert_allclose(targets(h), wanted, atol=1e-6)
    text = caplog.text
    assert "missing joint(s) ['LF_HAA', 'LH_HAA'" in text and "unknown joint(s) ['FR_hip_joint']" in text
    assert "position: expected 12 values (one per joint, in the order of `name`), got 11" in text
    assert "position of LF_HAA is nan" in text and "repeated joint(s) ['LF_HAA']" in text
    assert "velocity: expected 12 values" in text


def test_stand_in_hal_publishes_clock_scan_and_lab_observation_before_state():
    h = NodeHarness(StandInIsaacHal)
    order: list[str] = []
    for key, port in h.node.output_ports().items():
        port.bind(lambda msg, key=key: order.append(key))
    h.start()
    h.advance(0.02)
    assert order == ["clock", "height_scan", "lab_observation", "state"] * 2


def test_stand_in_hal_mirrors_velocity_command_and_ignores_gains_once(caplog):
    h = NodeHarness(StandInIsaacHal).start()
    h.feed("velocity_command", VelocityCommand(vx=0.7, vy=0.1, yaw_rate=-0.4))
    np.testing.assert_allclose(h.node.env.command_manager.get_term("base_velocity").vel_command_b[0], (0.7, 0.1, -0.4))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            h.feed("command", joint_command(LAB_ORDER, DEFAULT, kp=np.full(12, 80.0), kd=np.full(12, 2.0)))
    assert caplog.text.count("kp/kd are ignored") == 1


def test_stand_in_hal_refuses_a_robot_description_that_does_not_match_the_task(tmp_path):
    with pytest.raises(IsaacTaskError, match=r"contact sensor has no body FL, FR, RL, RR"):
        NodeHarness(StandInIsaacHal, robot="go2").start()
    text = (ROBOTS_DIR / "anymal_d.yaml").read_text().replace("RH_KFE:", "RH_KNEE:")
    (tmp_path / "renamed.yaml").write_text(text)
    with pytest.raises(
        IsaacTaskError, match=r"missing in the task: \['RH_KNEE'\]; not in the description: \['RH_KFE'\]"
    ):
        NodeHarness(StandInIsaacHal, robot=str(tmp_path / "renamed.yaml")).start()


def test_isaac_hal_without_isaac_fails_configure_with_one_clear_error():
    if not missing_isaac_modules():
        pytest.skip("Isaac Sim is installed here")
    with pytest.raises(IsaacUnavailableError) as info:
        NodeHarness(IsaacHal).start()
    text = str(info.value)
    assert text.startswith("Isaac Sim is not available here") and "Isaac Lab 2.3.2" in text and "RTX" in text


# -- the whole lockstep graph --------------------------------------------------------------------


class StandInSafety(Node):
    """Test stand-in for the safety node: forwards each command with its joints in reverse order."""

    kind = "safety"
    state = Input(RobotState)
    command = Input(JointCommand)
    joint_command = Output(JointCommand)

    def on_command(self, msg: JointCommand) -> None:
        out = JointCommand(name=list(reversed(msg.name)), source=msg.source)
        out.observation_seq, out.observation_stamp_ns = msg.observation_seq, msg.observation_stamp_ns
        for key in ("position", "velocity", "effort", "kp", "kd"):
            set_array(getattr(out, key), to_numpy(getattr(msg, key))[::-1].copy())
        self.joint_command.publish(out)


class Recorder(Node):
    kind = "recorder"
    state = Input(RobotState, queue=10_000)
    observation = Input(ArrayStamped, queue=10_000)
    lab = Input(ArrayStamped, queue=10_000)
    command = Input(JointCommand, queue=10_000)

    def on_configure(self) -> None:
        self.log_ = {"state": [], "observation": [], "lab": [], "command": []}

    def on_state(self, msg):
        self.log_["state"].append(msg)

    def on_observation(self, msg):
        self.log_["observation"].append(msg)

    def on_lab(self, msg):
        self.log_["lab"].append(msg)

    def on_command(self, msg):
        self.log_["command"].append(msg)


def random_rsl_rl_bundle(tmp_path: Path, bundle: str, obs_dim: int) -> Path:
    """A copy of ``bundle``'s contract with a random rsl_rl actor (obs_dim -> 64 -> 12) as weights."""
    gen = torch.Generator().manual_seed(3)
    state = {
        "actor.0.weight": torch.randn(64, obs_dim, generator=gen) * 0.05,
        "actor.0.bias": torch.zeros(64),
        "actor.2.weight": torch.randn(12, 64, generator=gen) * 0.2,
        "actor.2.bias": torch.zeros(12),
        "std": torch.ones(12),
    }
    torch.save({"model_state_dict": state}, tmp_path / "model.pt")
    raw = yaml.safe_load((BUNDLES_DIR / bundle / "contract.yaml").read_text())
    raw.update(weights=str(tmp_path / "model.pt"), format="rsl_rl")
    raw.pop("input"), raw.pop("output")
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_stand_in_lockstep_graph_applies_each_command_for_one_step_and_matches_isaac_labs_observation(tmp_path):
    contract = random_rsl_rl_bundle(tmp_path, "anymal_d_rough", 235)
    graph = build_graph(
        graph_from_dict(
            {
                "clock": "sim",
                "nodes": {
                    "command": {
                        "class": ScriptedVelocity,
                        "params": {"schedule": [[0.01, 0.0, 0.0, 0.0], [1.0, 0.6, -0.1, 0.3]]},
                    },
                    "hal": {
                        "class": StandInIsaacHal,
                        "inputs": {"command": "hal/command", "velocity_command": "command/cmd_vel"},
                    },
                    "policy": {
                        "class": PolicyNode,
                        "params": {"bundle": str(contract)},
                        "inputs": {
                            "state": "hal/state",
                            "command": "command/cmd_vel",
                            "height_scan": "hal/height_scan",
                        },
                    },
                    "safety": {
                        "class": StandInSafety,
                        "inputs": {"state": "hal/state", "command": "policy/joint_command"},
                        "outputs": {"joint_command": "hal/command"},
                    },
                    "rec": {
                        "class": Recorder,
                        "inputs": {
                            "state": "hal/state",
                            "observation": "policy/observation",
                            "lab": "hal/lab_observation",
                            "command": "policy/joint_command",
                        },
                    },
                },
            }
        )
    )
    ex = Executor(graph)
    assert ex.run(duration_s=0.2, handle_signals=False) == 0
    hal, log = ex.nodes["hal"], ex.nodes["rec"].log_
    ticks = len(hal.applied_targets)
    assert ticks >= 9 and hal.held == 0 and hal.applied == ticks and hal.rejected == 0
    assert hal.env.sim.steps == 4 * ticks

    # Command k answers state k and is what the HAL applied during control step k, joint by joint.
    commands = {c.observation_seq: c for c in log["command"]}
    for k, applied in enumerate(hal.applied_targets, start=1):
        cmd = commands[k]
        by_name = dict(zip(cmd.name, to_numpy(cmd.position), strict=True))
        np.testing.assert_allclose(applied, [by_name[n] for n in LAB_ORDER], atol=1e-6)
        assert cmd.observation_stamp_ns == (k - 1) * STEP_MS

    # krabgraph's observation (built from the HAL's messages) equals Isaac Lab's own, element by element.
    lab = {m.header.stamp_ns: to_numpy(m.data) for m in log["lab"]}
    assert len(log["state"]) == len(log["observation"]) == len(log["lab"]) == ticks + 1
    for msg in log["observation"]:
        mine = to_numpy(msg.data)
        assert mine.shape == (235,)
        np.testing.assert_allclose(mine, lab[msg.header.stamp_ns], atol=2e-5, err_msg=f"stamp {msg.header.stamp_ns}")
    late = to_numpy(log["observation"][-1].data)
    np.testing.assert_allclose(late[9:12], (0.6, -0.1, 0.3), atol=1e-6)  # the command reached both
    assert np.any(np.abs(late[36:48]) > 1e-3)  # last_action is live, not zeros
    assert np.ptp(late[48:]) > 0.1  # the step ahead shows in the scan
