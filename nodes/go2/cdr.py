"""Fast publishing of a fixed-size DDS struct from its C layout (the emulator's 500 Hz LowState).

Cyclone DDS's Python serializer walks the sample field by field (~0.3 ms for a ``LowState_``).
For a ``@final`` struct made only of fixed-size primitives and arrays, the CDR encoding holds the
same bytes as the C struct, only padded differently (CDR aligns each primitive to its size from
the start of the payload; C also aligns nested structs). ``CdrPacker`` maps the bytes of a
NumPy C-layout record (``krabgraph.nodes.go2.crc``) to the CDR payload with one index
operation, and checks itself against Cyclone's serializer before it is used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("krabgraph.go2.cdr")


def _primitives(dtype: np.dtype, base: int = 0) -> list[tuple[int, int]]:
    """(C offset, size) of every primitive element of ``dtype``, in declaration order."""
    out: list[tuple[int, int]] = []
    if dtype.names:
        for name in dtype.names:
            sub, offset = dtype.fields[name][:2]
            out += _primitives(sub, base + offset)
    elif dtype.subdtype is not None:
        item, shape = dtype.subdtype
        for k in range(int(np.prod(shape))):
            out += _primitives(item, base + k * item.itemsize)
    else:
        out.append((base, dtype.itemsize))
    return out


def cdr_map(layout: np.dtype) -> tuple[np.ndarray, np.ndarray, int]:
    """Byte maps (C-layout indices, CDR payload indices) and the CDR payload size of ``layout``."""
    src, dst, pos = [], [], 0
    for c_off, size in _primitives(layout):
        pos = (pos + size - 1) // size * size  # CDR: each primitive aligned to its size (all <= 4 here)
        src += range(c_off, c_off + size)
        dst += range(pos, pos + size)
        pos += size
    return np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp), pos


class CdrPacker:
    """Writes C-layout records of ``layout`` to a Cyclone ``writer`` of IDL type ``idl_type``.

    ``pack(record)`` gives the exact bytes ``writer.write(sample)`` would send for the sample with
    the same field values; ``write(record)`` sends them. If the self-check against Cyclone's own
    serializer fails (another Cyclone version, another type), ``ok`` is False and ``write``
    falls back to building the IDL sample.
    """

    def __init__(self, writer: Any, idl_type: type, layout: np.dtype, to_sample: Any):
        self.writer = writer
        self.layout = layout
        self.to_sample = to_sample  # record -> IDL sample (fallback and self-check)
        self.src, self.dst, size = cdr_map(layout)
        version_2 = getattr(writer, "_use_version_2", None)
        reference = idl_type().serialize(use_version_2=version_2)
        self.header = reference[:4]
        self.total = (len(reference) + 3) & ~3  # Cyclone pads what it sends to a multiple of 4
        self.size = size
        self._buf = np.zeros(self.total - 4, dtype=np.uint8)
        self._write = None
        try:
            from cyclonedds._clayer import ddspy_write

            self._write = ddspy_write
        except ImportError:
            pass
        self.ok = self._write is not None and self._self_check(idl_type, version_2)
        if not self.ok:
            log.warning("fast CDR packing unavailable for %s; using Cyclone's serializer", idl_type.__name__)

    def _self_check(self, idl_type: type, version_2: bool | None) -> bool:
        rng = np.random.default_rng(0)
        raw = rng.integers(0, 256, self.layout.itemsize, dtype=np.uint8)
        record = np.frombuffer(raw.tobytes(), dtype=self.layout).copy().reshape(())
        for name in _float_paths(self.layout):  # keep floats finite so values compare
            _set_path(record, name, 0.5)
        sample = self.to_sample(record)
        expected = sample.serialize(use_version_2=version_2)
        expected = expected.ljust((len(expected) + 3) & ~3, b"\0")
        return self.pack(record) == expected and isinstance(sample, idl_type)

    def pack(self, record: np.ndarray) -> bytes:
        """The serialized sample (header + CDR payload + padding) for C-layout ``record``."""
        raw = np.frombuffer(record.tobytes(), dtype=np.uint8)
        self._buf[self.dst] = raw[self.src]
        return self.header + self._buf.tobytes()

    def write(self, record: np.ndarray) -> None:
        if not self.ok:
            self.writer.write(self.to_sample(record))
            return
        ret = self._write(self.writer._ref, self.pack(record))
        if ret < 0:
            from cyclonedds.core import DDSException

            raise DDSException(ret, "Occurred while writing a packed sample")


def _float_paths(dtype: np.dtype, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name in dtype.names or ():
        sub = dtype.fields[name][0]
        base = sub.subdtype[0] if sub.subdtype is not None else sub
        if base.names:
            out += _float_paths(base, (*prefix, name))
        elif base.kind == "f":
            out.append((*prefix, name))
    return out


def _set_path(record: np.ndarray, path: tuple[str, ...], value: float) -> None:
    view = record
    for name in path[:-1]:
        view = view[name]
    view[path[-1]] = value


__all__ = ["CdrPacker", "cdr_map"]
