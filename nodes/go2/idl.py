# ruff: noqa: RUF009  (`_zeros(n)` returns a `dataclasses.field` with a default factory)
"""Unitree Go2 low-level DDS types (``unitree_go::msg::dds_``), as Cyclone DDS Python dataclasses.

Field names, types, array sizes, order and extensibility (``@final``, sequential member ids)
follow Unitree's public IDL (``LowCmd_``, ``LowState_``, ``MotorCmd_``, ``MotorState_``,
``BmsCmd_``, ``BmsState_``, ``IMUState_``) so that the DDS type names
(``unitree_go::msg::dds_::LowCmd_`` ...) and type hashes match the robot's. Every field has a
default (zeros), so ``LowCmd_()`` is a valid sample. Units are Unitree's: rad, rad/s, N·m,
N·m/rad, N·m·s/rad, m/s² (accelerometer), quaternion scalar first (w, x, y, z).

Importing this module needs ``cyclonedds`` (the ``robot`` extra); see ``krabgraph.nodes.go2.dds``.
No ``from __future__ import annotations`` here: Cyclone DDS reads the annotations as types.
"""

from dataclasses import dataclass, field
from typing import Any

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

NUM_MOTORS = 20  # motor slots in LowCmd_/LowState_ (the Go2 uses 0..11)
NUM_LEGS = 4  # foot_force slots: FR, FL, RR, RL


def _zeros(n: int, value: float = 0) -> Any:
    """A dataclass field defaulting to a fresh list of ``n`` copies of ``value``."""
    return field(default_factory=lambda: [value] * n)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorCmd_"):
    mode: types.uint8 = 0  # 0x01 = FOC (servo), 0x00 = stop
    q: types.float32 = 0.0  # rad
    dq: types.float32 = 0.0  # rad/s
    tau: types.float32 = 0.0  # N·m feed-forward
    kp: types.float32 = 0.0  # N·m/rad
    kd: types.float32 = 0.0  # N·m·s/rad
    reserve: types.array[types.uint32, 3] = _zeros(3)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class BmsCmd_(idl.IdlStruct, typename="unitree_go.msg.dds_.BmsCmd_"):
    off: types.uint8 = 0
    reserve: types.array[types.uint8, 3] = _zeros(3)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowCmd_(idl.IdlStruct, typename="unitree_go.msg.dds_.LowCmd_"):
    head: types.array[types.uint8, 2] = _zeros(2)
    level_flag: types.uint8 = 0
    frame_reserve: types.uint8 = 0
    sn: types.array[types.uint32, 2] = _zeros(2)
    version: types.array[types.uint32, 2] = _zeros(2)
    bandwidth: types.uint16 = 0
    motor_cmd: types.array[MotorCmd_, NUM_MOTORS] = field(
        default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTORS)]
    )
    bms_cmd: BmsCmd_ = field(default_factory=BmsCmd_)
    wireless_remote: types.array[types.uint8, 40] = _zeros(40)
    led: types.array[types.uint8, 12] = _zeros(12)
    fan: types.array[types.uint8, 2] = _zeros(2)
    gpio: types.uint8 = 0
    reserve: types.uint32 = 0
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_go.msg.dds_.MotorState_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0  # rad
    dq: types.float32 = 0.0  # rad/s
    ddq: types.float32 = 0.0  # rad/s²
    tau_est: types.float32 = 0.0  # N·m
    q_raw: types.float32 = 0.0
    dq_raw: types.float32 = 0.0
    ddq_raw: types.float32 = 0.0
    temperature: types.uint8 = 0  # °C
    lost: types.uint32 = 0
    reserve: types.array[types.uint32, 2] = _zeros(2)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_go.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0])  # w, x, y, z
    gyroscope: types.array[types.float32, 3] = _zeros(3, 0.0)  # rad/s, body frame
    accelerometer: types.array[types.float32, 3] = _zeros(3, 0.0)  # m/s², body frame
    rpy: types.array[types.float32, 3] = _zeros(3, 0.0)  # rad
    temperature: types.uint8 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class BmsState_(idl.IdlStruct, typename="unitree_go.msg.dds_.BmsState_"):
    version_high: types.uint8 = 0
    version_low: types.uint8 = 0
    status: types.uint8 = 0
    soc: types.uint8 = 0  # %
    current: types.int32 = 0  # mA
    cycle: types.uint16 = 0
    bq_ntc: types.array[types.uint8, 2] = _zeros(2)
    mcu_ntc: types.array[types.uint8, 2] = _zeros(2)
    cell_vol: types.array[types.uint16, 15] = _zeros(15)  # mV


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_go.msg.dds_.LowState_"):
    head: types.array[types.uint8, 2] = _zeros(2)
    level_flag: types.uint8 = 0
    frame_reserve: types.uint8 = 0
    sn: types.array[types.uint32, 2] = _zeros(2)
    version: types.array[types.uint32, 2] = _zeros(2)
    bandwidth: types.uint16 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, NUM_MOTORS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTORS)]
    )
    bms_state: BmsState_ = field(default_factory=BmsState_)
    foot_force: types.array[types.int16, NUM_LEGS] = _zeros(NUM_LEGS)  # sensor units (see go2 docs)
    foot_force_est: types.array[types.int16, NUM_LEGS] = _zeros(NUM_LEGS)
    tick: types.uint32 = 0  # ms
    wireless_remote: types.array[types.uint8, 40] = _zeros(40)
    bit_flag: types.uint8 = 0
    adc_reel: types.float32 = 0.0
    temperature_ntc1: types.uint8 = 0
    temperature_ntc2: types.uint8 = 0
    power_v: types.float32 = 0.0  # V
    power_a: types.float32 = 0.0  # A
    fan_frequency: types.array[types.uint16, 4] = _zeros(4)
    reserve: types.uint32 = 0
    crc: types.uint32 = 0


__all__ = [
    "NUM_LEGS",
    "NUM_MOTORS",
    "BmsCmd_",
    "BmsState_",
    "IMUState_",
    "LowCmd_",
    "LowState_",
    "MotorCmd_",
    "MotorState_",
]
