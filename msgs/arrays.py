"""NumPy <-> ``krabgraph.msgs.Array`` conversion with no per-element Python work.

``set_array(msg.position, arr)`` stores raw little-endian bytes plus dtype and shape;
``to_numpy(msg.position)`` returns a read-only view over the message's bytes (copy it to modify).
"""

from __future__ import annotations

from math import prod

import numpy as np

from krabgraph.msgs.common_pb2 import Array, DType

# Plain ints: enum attribute lookups on the protobuf wrapper cost ~0.7 µs each on the hot path.
_TO_NUMPY: dict[int, np.dtype] = {
    int(DType.FLOAT32): np.dtype("<f4"),
    int(DType.FLOAT64): np.dtype("<f8"),
    int(DType.UINT8): np.dtype("u1"),
    int(DType.UINT16): np.dtype("<u2"),
    int(DType.INT32): np.dtype("<i4"),
    int(DType.INT64): np.dtype("<i8"),
}
_FROM_NUMPY: dict[np.dtype, int] = {v: k for k, v in _TO_NUMPY.items()}
_UNSPECIFIED = int(DType.DTYPE_UNSPECIFIED)


class ArrayError(ValueError):
    """An Array message whose bytes do not match its dtype and shape."""


def set_array(field: Array, values: np.ndarray | list | tuple, dtype: np.dtype | str | None = None) -> Array:
    """Fill an ``Array`` message field from array-like ``values``; return the field.

    ``dtype`` converts first (e.g. ``np.float32`` to halve the bytes); by default the array's own
    dtype is kept (lists become float64).
    """
    arr = np.asarray(values, dtype=dtype)
    le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = _FROM_NUMPY.get(np.dtype(le))
    if code is None:
        raise ArrayError(f"unsupported dtype {arr.dtype}; use one of {sorted(str(d) for d in _FROM_NUMPY)}")
    field.data = np.ascontiguousarray(arr, dtype=le).tobytes()
    field.dtype = code
    del field.shape[:]
    field.shape.extend(arr.shape)
    return field


def to_numpy(field: Array) -> np.ndarray:
    """Read-only NumPy view of an ``Array`` field, shaped as stored. Empty field → empty float64."""
    code, data, shape = field.dtype, field.data, tuple(field.shape)
    dt = _TO_NUMPY.get(code)
    if dt is None:
        if code == _UNSPECIFIED and not data:
            return np.empty(shape or (0,), dtype=np.float64)
        raise ArrayError(f"unknown dtype code {code}")
    if shape and prod(shape) * dt.itemsize != len(data):
        raise ArrayError(
            f"array of shape {shape} and dtype {dt} needs {prod(shape) * dt.itemsize} bytes, got {len(data)}"
        )
    arr = np.frombuffer(data, dtype=dt)
    return arr.reshape(shape) if len(shape) > 1 else arr


def array_message(values: np.ndarray | list | tuple, dtype: np.dtype | str | None = None) -> Array:
    """A new ``Array`` message holding ``values``."""
    return set_array(Array(), values, dtype)
