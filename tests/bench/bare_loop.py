"""The MuJoCo + policy control loop without the graph, for comparisons and policy checks.

Does what the walk graph does each control tick — read state, build the RobotState and HeightScan
messages, observation, inference, action mapping, PD targets, physics steps — in one plain loop.
The benchmark compares the graph against it; tests use it to check a bundle's facts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from krabgraph.msgs import RobotState, VelocityCommand
from krabgraph.nodes.mujoco.physics import MujocoRobotSim, fill_robot_state
from krabgraph.nodes.mujoco.sensors import HeightScanner
from krabgraph.nodes.mujoco.terrain import make_terrain
from krabgraph.nodes.policy import ObservationBuilder, load_backend, load_contract


class BareLoop:
    """One robot, one policy bundle, one velocity command; ``tick()`` advances one control period."""

    def __init__(self, bundle: str | Path = "go2_walk", terrain: str = "flat", seed: int = 0, robot: str = "go2"):
        self.sim = MujocoRobotSim(robot, make_terrain(terrain, seed=seed))
        self.sim.reset(seed=seed)
        self.scanner = HeightScanner(self.sim.scene)
        self.contract = load_contract(bundle)
        self.backend = load_backend(self.contract)
        self.builder = ObservationBuilder(self.contract)
        self.command = VelocityCommand()
        self.last_action = np.zeros(self.contract.action_dim)
        self.decimation = self.sim.robot.decimation
        self.dt_ns = round(self.sim.robot.control_dt * 1e9)
        self.ticks = 0

    def tick(self) -> None:
        stamp = self.ticks * self.dt_ns
        state = fill_robot_state(RobotState(), self.sim.read_state(), stamp_ns=stamp)
        scan = self.scanner.message(self.sim.data, stamp_ns=stamp)
        obs = self.builder.observe(state, self.command, scan, self.last_action)  # as PolicyNode does
        self.last_action, targets = self.contract.actions.process(self.backend(obs))
        self.sim.set_command(self.contract.joints, targets, kp=self.contract.kp, kd=self.contract.kd)
        self.sim.step(self.decimation)
        self.ticks += 1
