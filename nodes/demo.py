"""Nodes that exercise the runtime with no simulator: a fake robot and a pose holder."""

from __future__ import annotations

from typing import Any

import numpy as np

from krabgraph.launch import Input, Node, Output, Param
from krabgraph.launch.checks import RobotUse
from krabgraph.msgs import CommandSource, JointCommand, RobotState, set_array, to_numpy

DEFAULT_JOINTS = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]


class FakeRobot(Node):
    """A kinematic stand-in robot: each joint moves a fixed fraction of the way to its target per tick.

    Publishes ``state`` at ``rate_hz`` and follows the position targets of ``command`` (by joint
    name). No physics: for tests and demos of the runtime only.
    """

    kind = "hal"
    joints = Param(list, DEFAULT_JOINTS, "joint names", item=str)
    rate_hz = Param(float, 50.0, "state publication rate", unit="Hz", gt=0)
    gain = Param(float, 0.5, "fraction of the remaining error closed per tick", gt=0, le=1)

    command = Input(JointCommand, triggers=False)  # stored; the timer publishes the state
    state = Output(RobotState)

    @classmethod
    def robot_use(cls, params: dict[str, Any]) -> RobotUse:
        """Its joints are the robot's (its rate is free: it stands in for any robot in tests)."""
        return RobotUse("joints", joints=tuple(params["joints"]), exact=True)

    def on_configure(self) -> None:
        self.index = {n: i for i, n in enumerate(self.joints)}
        self.q = np.zeros(len(self.joints))
        self.q_prev = self.q.copy()
        self.target = self.q.copy()
        self.rejected = 0

    def on_activate(self) -> None:
        self.create_timer(1.0 / self.rate_hz, self.tick)

    def on_command(self, msg: JointCommand) -> None:
        names = list(msg.name)
        pos = to_numpy(msg.position)
        unknown = [n for n in names if n not in self.index]
        if unknown or len(pos) != len(names) or not np.all(np.isfinite(pos)):
            self.rejected += 1
            self.log.error("rejected command: unknown joints %s or bad positions; holding last targets", unknown)
            return
        for name, value in zip(names, pos, strict=True):
            self.target[self.index[name]] = value

    def tick(self) -> None:
        self.q_prev = self.q.copy()
        self.q += self.gain * (self.target - self.q)
        msg = RobotState()
        msg.joints.name.extend(self.joints)
        set_array(msg.joints.position, self.q)
        set_array(msg.joints.velocity, (self.q - self.q_prev) * self.rate_hz)
        set_array(msg.joints.effort, np.zeros_like(self.q))
        msg.imu.orientation.w = 1.0
        msg.imu.linear_acceleration.z = 9.81
        self.state.publish(msg)


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
        cmd.source = CommandSource.POLICY
        n = len(names)
        set_array(cmd.position, self.target)
        set_array(cmd.velocity, np.zeros(n))
        set_array(cmd.effort, np.zeros(n))
        set_array(cmd.kp, np.full(n, self.kp))
        set_array(cmd.kd, np.full(n, self.kd))
        self.joint_command.publish(cmd)
