"""Nodes that exercise the runtime with no simulator: a fake robot and a pose holder."""

from __future__ import annotations

from typing import Any

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.api.checks import RobotUse
from krabgraph.msgs import CommandSource, JointCommand, RobotState, set_array
from krabgraph.nodes.hal import CommandParser, Hal, JointTargets, RobotSnapshot

DEFAULT_JOINTS = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]


class FakeRobot(Hal):
    """A kinematic stand-in robot: each joint moves a fixed fraction of the way to its target per tick.

    Publishes ``state`` at ``rate_hz`` and follows the position targets of ``command`` (the HAL
    contract's meaning, ``krabgraph.nodes.hal``: every joint once, by name). No physics and no
    clock of its own (no ``clock`` output): for tests and demos of the runtime only.
    """

    clock_source = "wall"  # no simulated time: it moves once per tick of the graph clock
    joints = Param(list, DEFAULT_JOINTS, "joint names", item=str)
    rate_hz = Param(float, 50.0, "state publication rate", unit="Hz", gt=0)
    gain = Param(float, 0.5, "fraction of the remaining error closed per tick", gt=0, le=1)
    status_period_s = Param(float, 0.0, "log a one-line status; 0 = off", unit="s", ge=0)
    clock = None  # a stand-in keeps no time: the graph's clock is the only one

    @classmethod
    def robot_use(cls, params: dict[str, Any]) -> RobotUse:
        """Its joints are the robot's (its rate is free: it stands in for any robot in tests)."""
        return RobotUse("joints", joints=tuple(params["joints"]), exact=True)

    def open(self) -> None:
        self.q = np.zeros(len(self.joints))
        self.q_prev = self.q.copy()
        self.target = self.q.copy()

    def control_period(self) -> float:
        return 1.0 / self.rate_hz

    def command_parser(self) -> CommandParser:
        """Its joints; no gains (it is kinematic: velocity, effort, kp and kd are checked, then unused)."""
        return CommandParser(self.joints, 0.0, 0.0, robot="fake_robot")

    def write(self, targets: JointTargets) -> None:
        self.target[:] = targets.position

    def advance(self, until_ns: int) -> None:
        self.q_prev = self.q.copy()
        self.q += self.gain * (self.target - self.q)

    def read(self) -> RobotSnapshot:
        n = len(self.joints)
        return RobotSnapshot(
            time=self.now(),
            joint_names=tuple(self.joints),
            q=self.q.copy(),
            qd=(self.q - self.q_prev) * self.rate_hz,
            tau=np.zeros(n),
            imu_quat=np.array([1.0, 0.0, 0.0, 0.0]),
            imu_gyro=np.zeros(3),
            imu_accel=np.array([0.0, 0.0, 9.81]),
            foot_names=(),
            foot_contact=np.zeros(0, dtype=bool),
            foot_force=np.zeros((0, 3)),
        )


class HoldPose(Node):
    """Answers every robot state with a constant joint-position target (a stand-in policy)."""

    kind = "policy"
    target = Param(
        list, [0.0, 0.8, -1.5] * 4, "position target per joint, in the state's joint order", unit="rad", item=float
    )
    kp = Param(float, 20.0, "position gain", unit="N·m/rad", ge=0)
    kd = Param(float, 0.5, "velocity gain", unit="N·m·s/rad", ge=0)

    state = Input(RobotState)
    joint_command = Output(JointCommand)

    def on_state(self, msg: RobotState) -> None:
        names = list(msg.joints.name)
        if len(names) != len(self.target):
            raise ValueError(f"state has {len(names)} joints, target has {len(self.target)}")
        cmd = JointCommand(name=names, observation_stamp_ns=msg.header.stamp_ns, observation_seq=msg.header.seq)
        cmd.robot_id = msg.robot_id  # the state it answers: the safety node forwards only such commands
        cmd.source = CommandSource.POLICY
        n = len(names)
        set_array(cmd.position, self.target)
        set_array(cmd.velocity, np.zeros(n))
        set_array(cmd.effort, np.zeros(n))
        set_array(cmd.kp, np.full(n, self.kp))
        set_array(cmd.kd, np.full(n, self.kd))
        self.joint_command.publish(cmd)
