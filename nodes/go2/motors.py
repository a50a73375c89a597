"""Joint names <-> Unitree motor slots, and the conversions between krabgraph messages and LowCmd/LowState.

Everything maps by name through the robot description: joint ``j`` lives in motor slot
``robot.motor_index[j]`` of ``LowCmd_.motor_cmd`` / ``LowState_.motor_state``; foot ``F`` (a name
in ``robot.foot_geoms``) lives in ``foot_force`` slot ``motor_index // 3`` of its leg's joints
(the joints named ``F_*``): Unitree orders legs FR, FL, RR, RL with 3 motors each, in both arrays.

Command semantics (Unitree's): a motor in mode ``MOTOR_ON`` (0x01, FOC) applies
``tau = tau_ff + kp (q - q_meas) + kd (dq - dq_meas)``; mode 0 is off. ``q`` = ``POS_STOP``
(2.146e9) disables the position term and ``dq`` = ``VEL_STOP`` (16000) the velocity term. Unused
slots are sent as mode 0x01 with zero gains and the stop values, as in Unitree's examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from krabgraph.nodes.hal_io import CommandError, CommandParser, JointTargets
from krabgraph.nodes.robots import RobotDescription
from krabgraph.nodes.rotations import rpy

HEAD = (0xFE, 0xEF)  # LowCmd_.head
LEVEL_LOW = 0xFF  # LowCmd_.level_flag: low-level control
MOTOR_ON = 0x01  # MotorCmd_.mode: FOC servo
POS_STOP = 2.146e9  # MotorCmd_.q meaning "no position control"
VEL_STOP = 16000.0  # MotorCmd_.dq meaning "no velocity control"
MOTORS_PER_LEG = 3


@dataclass(frozen=True)
class MotorTargets:
    """Per-slot PD targets (arrays of length ``num_motors``): rad, rad/s, N·m, N·m/rad, N·m·s/rad."""

    mode: np.ndarray
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray


class MotorMap:
    """Name-keyed mapping between a robot description and Unitree's motor and foot slots."""

    def __init__(self, robot: RobotDescription, num_motors: int = 20, num_feet: int = 4):
        self.robot = robot
        self.num_motors = num_motors
        self.joint_names = robot.joint_names
        self.parser = CommandParser.for_robot(robot)
        self.slots = np.asarray(robot.motor_index, dtype=np.intp)  # description order -> motor slot
        if self.slots.max() >= num_motors:
            raise ValueError(f"motor_index up to {self.slots.max()} does not fit {num_motors} motor slots")
        self.foot_names = robot.foot_geoms
        self.foot_slots = np.array([self._foot_slot(f) for f in robot.foot_geoms], dtype=np.intp)
        if self.foot_slots.max() >= num_feet or len(set(self.foot_slots.tolist())) != len(self.foot_slots):
            raise ValueError(f"feet {self.foot_names} map to slots {self.foot_slots.tolist()}; expected distinct 0..3")

    def _foot_slot(self, foot: str) -> int:
        legs = {int(self.robot.motor_index[i]) // MOTORS_PER_LEG for i, n in enumerate(self.joint_names)
                if n.startswith(f"{foot}_")}  # fmt: skip
        if len(legs) != 1:
            raise ValueError(
                f"foot {foot!r}: cannot find its leg "
                f"(joints named '{foot}_*' must exist and share one leg's motor slots)"
            )
        return legs.pop()

    # -- commands ---------------------------------------------------------------------------------
    def targets(
        self,
        names: Sequence[str],
        position: np.ndarray,
        velocity: np.ndarray | None = None,
        effort: np.ndarray | None = None,
        kp: np.ndarray | None = None,
        kd: np.ndarray | None = None,
    ) -> MotorTargets:
        """Per-slot targets from arrays, validated by the HAL contract's parser (``CommandParser``):
        every joint exactly once, any order; empty or None ``velocity``/``effort`` mean 0,
        ``kp``/``kd`` the description's gains. Raises ``CommandError`` naming the problem."""
        return self.slot_targets(self.parser.check(names, position, velocity, effort, kp, kd))

    def slot_targets(self, t: JointTargets) -> MotorTargets:
        """Per-slot targets of validated joint targets (description order); unused slots off (zero gains)."""
        m = self.num_motors
        out = MotorTargets(
            mode=np.full(m, MOTOR_ON, dtype=np.uint8),
            q=np.full(m, POS_STOP),
            dq=np.full(m, VEL_STOP),
            tau=np.zeros(m),
            kp=np.zeros(m),
            kd=np.zeros(m),
        )
        s = self.slots
        out.q[s], out.dq[s], out.tau[s], out.kp[s], out.kd[s] = t.position, t.velocity, t.effort, t.kp, t.kd
        return out

    def fill_low_cmd(self, cmd: object, t: MotorTargets) -> object:
        """Write targets ``t`` and the low-level header into ``LowCmd_`` sample ``cmd`` (CRC not set)."""
        cmd.head = list(HEAD)
        cmd.level_flag = LEVEL_LOW
        cmd.gpio = 0
        for i, mc in enumerate(cmd.motor_cmd):
            mc.mode = int(t.mode[i])
            mc.q, mc.dq, mc.tau = float(t.q[i]), float(t.dq[i]), float(t.tau[i])
            mc.kp, mc.kd = float(t.kp[i]), float(t.kd[i])
        return cmd

    def read_low_cmd(self, cmd: object) -> tuple[np.ndarray, ...]:
        """PD terms of ``LowCmd_`` sample ``cmd`` per joint, description order: (q, dq, kp, kd, tau).

        A motor not in mode ``MOTOR_ON`` gets zero gains and torque; a ``POS_STOP`` position zeroes
        kp, a ``VEL_STOP`` velocity zeroes kd (and the stop value itself becomes 0).
        """
        mc = [cmd.motor_cmd[int(s)] for s in self.slots]
        on = np.array([m.mode == MOTOR_ON for m in mc])
        q = np.array([m.q for m in mc], dtype=np.float64)
        dq = np.array([m.dq for m in mc], dtype=np.float64)
        kp = np.array([m.kp for m in mc], dtype=np.float64)
        kd = np.array([m.kd for m in mc], dtype=np.float64)
        tau = np.array([m.tau for m in mc], dtype=np.float64)
        pos_stop = np.abs(q) >= POS_STOP * 0.999
        vel_stop = np.abs(dq) >= VEL_STOP * 0.999
        kp[pos_stop | ~on] = 0.0
        kd[vel_stop | ~on] = 0.0
        tau[~on] = 0.0
        q[pos_stop] = 0.0
        dq[vel_stop] = 0.0
        return q, dq, kp, kd, tau

    # -- state ------------------------------------------------------------------------------------
    def read_low_state(self, state: object) -> dict[str, np.ndarray]:
        """Joint and IMU readings of ``LowState_`` sample ``state``, joints in description order.

        Keys: q (rad), dq (rad/s), tau (N·m, estimated), quat (w, x, y, z), gyro (rad/s),
        accel (m/s²), foot_force (sensor units, in ``foot_names`` order).
        """
        ms = state.motor_state
        motors = [ms[int(s)] for s in self.slots]
        imu = state.imu_state
        ff = state.foot_force
        return {
            "q": np.array([m.q for m in motors], dtype=np.float64),
            "dq": np.array([m.dq for m in motors], dtype=np.float64),
            "tau": np.array([m.tau_est for m in motors], dtype=np.float64),
            "quat": np.array(imu.quaternion, dtype=np.float64),
            "gyro": np.array(imu.gyroscope, dtype=np.float64),
            "accel": np.array(imu.accelerometer, dtype=np.float64),
            "foot_force": np.array([ff[int(s)] for s in self.foot_slots], dtype=np.float64),
        }

    def fill_state_record(
        self, record: np.ndarray, q: np.ndarray, dq: np.ndarray, tau: np.ndarray, quat: np.ndarray,
        gyro: np.ndarray, accel: np.ndarray, foot_force: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Write joint readings (description order), IMU and foot forces into a ``LOW_STATE_LAYOUT`` record."""
        record["head"] = HEAD
        record["level_flag"] = LEVEL_LOW
        ms = record["motor_state"]
        ms["mode"][self.slots] = MOTOR_ON
        ms["q"][self.slots] = q
        ms["dq"][self.slots] = dq
        ms["tau_est"][self.slots] = tau
        imu = record["imu_state"]
        imu["quaternion"] = quat
        imu["gyroscope"] = gyro
        imu["accelerometer"] = accel
        imu["rpy"] = rpy(quat)
        record["foot_force"][self.foot_slots] = np.clip(np.round(foot_force), -32768, 32767)
        return record


__all__ = [
    "HEAD",
    "LEVEL_LOW",
    "MOTOR_ON",
    "POS_STOP",
    "VEL_STOP",
    "CommandError",
    "MotorMap",
    "MotorTargets",
]
