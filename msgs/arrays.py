"""NumPy <-> ``krabgraph.msgs.Array`` conversion with no per-element Python work.

``set_array(msg.position, arr)`` stores raw little-endian bytes plus dtype and shape;
``to_numpy(msg.position)`` returns a read-only view over the message's bytes (copy it to modify).
"""

from __future__ import annotations

import numpy as np

from krabgraph.msgs.common_pb2 import Array, DType

_TO_NUMPY: dict[int, np.dtype] = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT64: np.dtype("<f8"),
    DType.UINT8: np.dtype("u1"),
    DType.UINT16: np.dtype("<u2"),
    DType.INT32: np.dtype("<i4"),
    DType.INT64: np.dtype("<i8"),
}
_FROM_NUMPY: dict[np.dtype, int] = {v: k for k, v in _TO_NUMPY.items()}


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
    if field.dtype == DType.DTYPE_UNSPECIFIED and not field.data:
        return np.empty(tuple(field.shape) or (0,), dtype=np.float64)
    dt = _TO_NUMPY.get(field.dtype)
    if dt is None:
        raise ArrayError(f"unknown dtype code {field.dtype}")
    shape = tuple(field.shape)
    expected = int(np.prod(shape)) * dt.itemsize if shape else None
    if expected is not None and expected != len(field.data):
        raise ArrayError(f"array of shape {shape} and dtype {dt} needs {expected} bytes, got {len(field.data)}")
    arr = np.frombuffer(field.data, dtype=dt)
    return arr.reshape(shape) if shape else arr


def array_message(values: np.ndarray | list | tuple, dtype: np.dtype | str | None = None) -> Array:
    """A new ``Array`` message holding ``values``."""
    return set_array(Array(), values, dtype)
