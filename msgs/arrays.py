"""NumPy <-> ``krabgraph.msgs.Array`` conversion with no per-element Python work.

``set_array(msg.position, arr)`` stores raw little-endian bytes plus dtype and shape;
``to_numpy(msg.position)`` returns a read-only view over the message's bytes (copy it to modify).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod
from operator import itemgetter
from typing import Any

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
    code = _FROM_NUMPY.get(arr.dtype)  # little-endian or native: the bytes go out as they are
    if code is None:
        le = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        code = _FROM_NUMPY.get(np.dtype(le))
        if code is None:
            raise ArrayError(f"unsupported dtype {arr.dtype}; use one of {sorted(str(d) for d in _FROM_NUMPY)}")
        arr = arr.astype(le)
    field.data = arr.tobytes()  # C order, whatever the array's layout
    field.dtype = code
    field.shape[:] = arr.shape
    return field


def to_numpy(field: Array) -> np.ndarray:
    """Read-only NumPy view of an ``Array`` field, shaped as stored. Empty field → empty float64."""
    code, data, shape = field.dtype, field.data, field.shape
    dt = _TO_NUMPY.get(code)
    if dt is None:
        if code == _UNSPECIFIED and not data:
            return np.empty(tuple(shape) or (0,), dtype=np.float64)
        raise ArrayError(f"unknown dtype code {code}")
    if len(shape) == 1:  # the common case, without building a tuple
        if shape[0] * dt.itemsize != len(data):
            raise ArrayError(
                f"array of shape {tuple(shape)} and dtype {dt} needs {shape[0] * dt.itemsize} bytes, got {len(data)}"
            )
        return np.frombuffer(data, dtype=dt)
    shape = tuple(shape)
    if shape and prod(shape) * dt.itemsize != len(data):
        raise ArrayError(
            f"array of shape {shape} and dtype {dt} needs {prod(shape) * dt.itemsize} bytes, got {len(data)}"
        )
    arr = np.frombuffer(data, dtype=dt)
    return arr.reshape(shape) if len(shape) > 1 else arr


def array_message(values: np.ndarray | list | tuple, dtype: np.dtype | str | None = None) -> Array:
    """A new ``Array`` message holding ``values``."""
    return set_array(Array(), values, dtype)


# -- named FLOAT64 columns straight from the wire ---------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_LEN, _VARINT = 2, 0
_F64 = int(DType.FLOAT64)
_ARRAY_FIELDS = {f.name: f.number for f in Array.DESCRIPTOR.fields}


@dataclass(frozen=True, eq=False)
class _Order:
    """One name order: its bytes on the wire, the byte patterns of its columns, the caller's data."""

    names: tuple[str, ...]
    wire: bytes  # every ``name`` record, in order
    heads: tuple[bytes, ...]  # per column: field key, length, Array.data key and length
    tail: bytes  # Array.dtype FLOAT64 and Array.shape [n], after the data
    nbytes: int  # 8 per name
    data: Any


@dataclass(frozen=True, eq=False)
class _Layout:
    """Where everything is in a message of one order, one set of present columns and one header
    length: consecutive messages of a publisher share it, so ``read`` checks it with two slicings."""

    order: _Order
    start: int  # where the name records begin
    skeleton: Callable[[bytes], tuple[bytes, ...]]  # the bytes around the data...
    expected: tuple[bytes, ...]  # ...and what they must be
    values: Callable[[bytes], tuple[bytes, ...]]  # the data of the present columns
    spread: Callable[[tuple], tuple]  # (present data..., None) -> one entry per column
    end: int  # just after the last present column
    after: frozenset[int]  # keys of the absent columns after it: the byte at ``end`` must not be one


class NamedColumns:
    """Reads the FLOAT64 columns of a ``JointState``/``JointCommand``-like message in one pass.

    Such a message has ``repeated string name`` and ``Array`` fields (``columns``) holding one FLOAT64
    per name in shape ``[len(name)]``. Reading them field by field costs a dozen protobuf accessor
    calls; ``read`` serializes the message once and checks the bytes against patterns precomputed
    for each name order already seen valid (``learn``, at most ``MAX_ORDERS``), which protobuf's
    canonical encoding (fields in number order, packed repeated scalars) makes exact. ``read``
    returns None for anything else (an unknown order, another dtype or shape, an empty column that
    is present): the caller then takes its general path, which has the final word.
    """

    MAX_ORDERS = 4

    def __init__(self, cls: type, columns: Sequence[str]):
        fields = cls.DESCRIPTOR.fields_by_name
        self.name_key = _key(fields["name"].number, _LEN)
        self.header_key = _key(fields["header"].number, _LEN) if "header" in fields else None
        self.column_keys = tuple(_key(fields[c].number, _LEN) for c in columns)
        numbers = [fields["name"].number, *(fields[c].number for c in columns)]
        if numbers != sorted(numbers) or any(fields[c].message_type is not Array.DESCRIPTOR for c in columns):
            raise ValueError(f"{cls.__name__}: name and {list(columns)} must be Array fields in field order")
        if self.header_key is not None and fields["header"].number > numbers[0]:
            raise ValueError(f"{cls.__name__}: header must come before name")
        self.orders: list[_Order] = []
        self._layout: _Layout | None = None  # the last one read

    def can_learn(self, names: Sequence[str]) -> bool:
        """Whether ``learn`` would remember ``names``: a new, non-empty order while there is room."""
        names = tuple(names)
        return bool(names) and len(self.orders) < self.MAX_ORDERS and all(o.names != names for o in self.orders)

    def learn(self, names: Sequence[str], data: Any) -> None:
        """Remember a valid name order (the caller's ``data`` comes back from ``read``)."""
        names = tuple(names)
        if not self.can_learn(names):
            return
        n = len(names)
        wire = b"".join(self.name_key + _varint(len(u)) + u for u in (s.encode() for s in names))
        count = _varint(n)
        head = _key(_ARRAY_FIELDS["data"], _LEN) + _varint(8 * n)
        tail = (
            _key(_ARRAY_FIELDS["dtype"], _VARINT)
            + _varint(_F64)
            + _key(_ARRAY_FIELDS["shape"], _LEN)
            + _varint(len(count))
            + count
        )
        size = _varint(len(head) + 8 * n + len(tail))
        heads = tuple(key + size + head for key in self.column_keys)
        self.orders.append(_Order(names, wire, heads, tail, 8 * n, data))

    def read(self, msg: Any) -> tuple[Any, tuple[bytes | None, ...]] | None:
        """``(data of the name order, per column its 8n bytes or None when the field is absent)``,
        or None when the message is not a learned order with every present column FLOAT64 ``[n]``."""
        b = msg.SerializeToString()
        i = 0
        if self.header_key is not None and b.startswith(self.header_key):
            i, size, shift = 1, 0, 0
            while True:  # the header's length, a varint
                c = b[i]
                i += 1
                size |= (c & 0x7F) << shift
                if c < 0x80:
                    break
                shift += 7
            i += size
        lay = self._layout
        if (
            lay is not None
            and lay.start == i
            and lay.skeleton(b) == lay.expected
            and (len(b) <= lay.end or b[lay.end] not in lay.after)
        ):
            return lay.order.data, lay.spread((*lay.values(b), None))
        return self._scan(b, i)

    def _scan(self, b: bytes, start: int) -> tuple[Any, tuple[bytes | None, ...]] | None:
        """``read`` the long way; on success the message's layout becomes the one tried first."""
        for order in self.orders:
            if b.startswith(order.wire, start) and not b.startswith(self.name_key, start + len(order.wire)):
                break
        else:
            return None
        i = start + len(order.wire)
        nbytes, tail = order.nbytes, order.tail
        # skeleton: the constant bytes between the data, adjacent ones joined (names + first head...)
        skeleton, expected, values, present = [], [], [], []
        mark = start
        for k, (head, key) in enumerate(zip(order.heads, self.column_keys, strict=True)):
            if b.startswith(head, i):
                i += len(head)
                skeleton.append(slice(mark, i))
                expected.append(b[mark:i])
                values.append(slice(i, i + nbytes))
                i += nbytes
                if not b.startswith(tail, i):
                    return None
                mark = i
                i += len(tail)
                present.append(k)
            elif b.startswith(key, i):  # present in another form
                return None
        skeleton.append(slice(mark, i))
        expected.append(b[mark:i])
        if not present:
            return None
        after = frozenset(key[0] for k, key in enumerate(self.column_keys) if k > present[-1])
        where = {k: j for j, k in enumerate(present)}
        lay = self._layout = _Layout(
            order,
            start,
            tuple_getter(skeleton),
            tuple(expected),
            tuple_getter(values),
            tuple_getter([where.get(k, len(present)) for k in range(len(self.column_keys))]),
            i,
            after,
        )
        return order.data, lay.spread((*lay.values(b), None))


def tuple_getter(keys: Sequence[Any]) -> Callable[[Any], tuple]:
    """``itemgetter(*keys)``, always returning a tuple (itemgetter of one key returns the item)."""
    if len(keys) == 1:
        get = itemgetter(keys[0])
        return lambda x: (get(x),)
    return itemgetter(*keys)
