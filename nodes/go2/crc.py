"""The CRC32 that a Go2 checks on every ``LowCmd_`` (and sends with every ``LowState_``).

What the robot expects (facts from Unitree's public SDK, unitree_sdk2 ``crc32_core`` and
unitree_sdk2_python ``utils/crc.py``):

- The message is laid out as the C struct of the same name: little-endian, every field at its
  natural alignment (nested structs aligned to 4), so ``LowCmd`` is 812 bytes and ``LowState``
  1180. ``LOW_CMD_LAYOUT`` / ``LOW_STATE_LAYOUT`` below are those structs as NumPy dtypes with C
  alignment (``align=True``); the Cyclone DDS wire encoding (CDR) packs differently, so the CRC is
  never taken over the wire bytes.
- The checksum runs over the struct as 32-bit words, all but the last (the ``crc`` field itself):
  202 words for ``LowCmd`` (812 / 4 - 1). Each word is fed most significant bit first into a CRC-32 with
  polynomial 0x04C11DB7, initial value 0xFFFFFFFF, no reflection and no final XOR; i.e. the
  CRC-32/MPEG-2 of the words written big-endian.

Here CRC-32/MPEG-2 is computed with ``zlib.crc32`` (CRC-32/ISO-HDLC, the reflected twin of the
same polynomial): feeding it bit-reversed bytes and bit-reversing the result gives MPEG-2.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

_MOTOR_CMD = np.dtype(
    [("mode", "u1"), ("q", "<f4"), ("dq", "<f4"), ("tau", "<f4"), ("kp", "<f4"), ("kd", "<f4"), ("reserve", "<u4", 3)],
    align=True,
)
# The fields LowCmd_ and LowState_ both start with.
_HEADER = [
    ("head", "u1", 2),
    ("level_flag", "u1"),
    ("frame_reserve", "u1"),
    ("sn", "<u4", 2),
    ("version", "<u4", 2),
    ("bandwidth", "<u2"),
]
_BMS_CMD = np.dtype([("off", "u1"), ("reserve", "u1", 3)], align=True)
LOW_CMD_LAYOUT = np.dtype(
    [
        *_HEADER,
        ("motor_cmd", _MOTOR_CMD, 20),
        ("bms_cmd", _BMS_CMD),
        ("wireless_remote", "u1", 40),
        ("led", "u1", 12),
        ("fan", "u1", 2),
        ("gpio", "u1"),
        ("reserve", "<u4"),
        ("crc", "<u4"),
    ],
    align=True,
)

_IMU = np.dtype(
    [("quaternion", "<f4", 4), ("gyroscope", "<f4", 3), ("accelerometer", "<f4", 3), ("rpy", "<f4", 3),
     ("temperature", "u1")],
    align=True,
)  # fmt: skip
_MOTOR_STATE = np.dtype(
    [("mode", "u1"), ("q", "<f4"), ("dq", "<f4"), ("ddq", "<f4"), ("tau_est", "<f4"), ("q_raw", "<f4"),
     ("dq_raw", "<f4"), ("ddq_raw", "<f4"), ("temperature", "u1"), ("lost", "<u4"), ("reserve", "<u4", 2)],
    align=True,
)  # fmt: skip
_BMS_STATE = np.dtype(
    [("version_high", "u1"), ("version_low", "u1"), ("status", "u1"), ("soc", "u1"), ("current", "<i4"),
     ("cycle", "<u2"), ("bq_ntc", "u1", 2), ("mcu_ntc", "u1", 2), ("cell_vol", "<u2", 15)],
    align=True,
)  # fmt: skip
LOW_STATE_LAYOUT = np.dtype(
    [
        *_HEADER,
        ("imu_state", _IMU),
        ("motor_state", _MOTOR_STATE, 20),
        ("bms_state", _BMS_STATE),
        ("foot_force", "<i2", 4),
        ("foot_force_est", "<i2", 4),
        ("tick", "<u4"),
        ("wireless_remote", "u1", 40),
        ("bit_flag", "u1"),
        ("adc_reel", "<f4"),
        ("temperature_ntc1", "u1"),
        ("temperature_ntc2", "u1"),
        ("power_v", "<f4"),
        ("power_a", "<f4"),
        ("fan_frequency", "<u2", 4),
        ("reserve", "<u4"),
        ("crc", "<u4"),
    ],
    align=True,
)

_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of ``data`` (poly 0x04C11DB7, init 0xFFFFFFFF, MSB first, no final XOR)."""
    reflected = zlib.crc32(data.translate(_BIT_REVERSED)) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def crc32_words(words: np.ndarray) -> int:
    """Unitree's ``crc32_core`` over 32-bit ``words``: each word most significant bit first."""
    return crc32_mpeg2(np.asarray(words, dtype=">u4").tobytes())


def _fill_struct(dst: np.ndarray, src: Any) -> None:
    """Copy the fields of IDL sample ``src`` into the 0-d structured array ``dst`` (C layout)."""
    for name in dst.dtype.names:
        value = getattr(src, name)
        field_dtype = dst.dtype.fields[name][0]
        if field_dtype.subdtype is not None and field_dtype.subdtype[0].names:  # array of structs
            items = dst[name]
            for key in field_dtype.subdtype[0].names:
                items[key] = [getattr(v, key) for v in value]
        elif field_dtype.names:  # nested struct
            _fill_struct(dst[name], value)
        elif isinstance(value, (bytes, bytearray)):  # uint8 arrays arrive from DDS as bytes
            dst[name] = np.frombuffer(value, dtype=np.uint8)
        else:
            dst[name] = value


def _assign(dst: Any, src: np.ndarray) -> None:
    """Copy the 0-d structured record ``src`` into IDL sample ``dst`` (the inverse of ``_fill_struct``)."""
    for name in src.dtype.names:
        field_dtype = src.dtype.fields[name][0]
        value = src[name]
        if field_dtype.subdtype is not None and field_dtype.subdtype[0].names:  # array of structs
            for item, rec in zip(getattr(dst, name), value, strict=True):
                _assign(item, rec)
        elif field_dtype.names:
            _assign(getattr(dst, name), value)
        else:
            setattr(dst, name, value.tolist())


def record_to_sample(record: np.ndarray, idl_type: type) -> Any:
    """A new ``idl_type`` sample with the field values of C-layout ``record``."""
    sample = idl_type()
    _assign(sample, record)
    return sample


def c_layout(msg: Any, layout: np.dtype) -> bytes:
    """The bytes of IDL sample ``msg`` laid out as Unitree's C struct ``layout``."""
    buf = np.zeros((), dtype=layout)
    _fill_struct(buf, msg)
    return buf.tobytes()


def _struct_crc(msg: Any, layout: np.dtype) -> int:
    words = np.frombuffer(c_layout(msg, layout), dtype="<u4")
    return crc32_words(words[:-1])


def low_cmd_crc(cmd: Any) -> int:
    """The ``crc`` field a Go2 expects for ``LowCmd_`` sample ``cmd`` (its own ``crc`` is ignored)."""
    return _struct_crc(cmd, LOW_CMD_LAYOUT)


def low_state_crc(state: Any) -> int:
    """The ``crc`` field of ``LowState_`` sample ``state``, computed as for ``LowCmd_``."""
    return _struct_crc(state, LOW_STATE_LAYOUT)


def record_crc(record: np.ndarray) -> int:
    """The ``crc`` of a C-layout record (a 0-d array of ``LOW_CMD_LAYOUT`` or ``LOW_STATE_LAYOUT``)."""
    return crc32_words(np.frombuffer(record.tobytes(), dtype="<u4")[:-1])


__all__ = [
    "LOW_CMD_LAYOUT",
    "LOW_STATE_LAYOUT",
    "c_layout",
    "crc32_mpeg2",
    "crc32_words",
    "low_cmd_crc",
    "low_state_crc",
    "record_crc",
    "record_to_sample",
]
