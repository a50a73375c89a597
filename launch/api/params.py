"""Typed node parameters: declared on the node class, validated before anything starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from krabgraph.launch.api.errors import ParamError

_REQUIRED = object()
_TYPES = (bool, int, float, str, list, dict)
# Float parameters in Hz (rates) and s (periods, timeouts) are kept to values a timer can serve:
# unit -> (smallest nonzero magnitude, default upper bound when the Param sets none).
TIME_LIMITS = {"Hz": (1e-3, 10_000.0), "s": (1e-6, 1e9)}


class Param:
    """A typed parameter of a node class, read on the instance as a plain attribute.

    ``Param(float, 50.0, "control rate", unit="Hz", gt=0)``. ``default`` omitted → required.
    ``item`` types the elements of a ``list`` parameter. Ints are accepted for floats.
    A float in ``Hz`` or ``s`` is also kept in ``TIME_LIMITS``: 0, or at least 1 mHz (1 µs) in
    magnitude, and at most 10 kHz (10⁹ s) unless ``le``/``lt`` say otherwise.
    ``dynamic=True``: the node honours a change while it runs (``krabgraph param set``, checked by
    these same rules, then by the node's ``on_param_set``); others are fixed at start. Never make a
    safety limit dynamic.
    """

    def __init__(
        self,
        type: type,
        default: Any = _REQUIRED,
        doc: str = "",
        *,
        unit: str = "",
        choices: Sequence[Any] | None = None,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        item: type | None = None,
        dynamic: bool = False,
    ):
        if type not in _TYPES:
            raise TypeError(f"Param type must be one of {[t.__name__ for t in _TYPES]}, got {type!r}")
        self.type = type
        self.doc = doc
        self.unit = unit
        self.choices = tuple(choices) if choices is not None else None
        self.bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
        self.smallest = 0.0  # nonzero values must be at least this large in magnitude
        if type is float and unit in TIME_LIMITS:
            self.smallest, upper = TIME_LIMITS[unit]
            if le is None and lt is None:
                self.bounds["le"] = upper
        self.item = item
        self.dynamic = dynamic
        self.name = ""
        self.required = default is _REQUIRED
        self.default = None if self.required else default
        if not self.required and default is not None:
            self.default = self.validate(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._params[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"parameter {self.name!r} is read-only; pass it to the constructor")

    @property
    def type_name(self) -> str:
        return f"list[{self.item.__name__}]" if self.type is list and self.item else self.type.__name__

    def describe(self) -> str:
        """One line for `krabgraph nodes`: type, default, unit, constraints, doc."""
        parts = [self.type_name]
        parts.append("required" if self.required else f"default {self.default!r}")
        if self.unit:
            parts.append(f"[{self.unit}]")
        bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        parts += [f"{bounds[k]} {v}" for k, v in self.bounds.items() if v is not None]
        if self.choices:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        if self.dynamic:
            parts.append("dynamic (krabgraph param set)")
        return f"{'; '.join(parts)}: {self.doc}" if self.doc else "; ".join(parts)

    def _check_type(self, value: Any, t: type, what: str) -> Any:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, bool):
            raise ParamError(f"{what} must be an int, got bool {value!r}")
        if not isinstance(value, t):
            raise ParamError(f"{what} must be {t.__name__}, got {type(value).__name__} {value!r}")
        return value

    def validate(self, value: Any) -> Any:
        """Return the value (ints widened to float) or raise ``ParamError`` saying what is wrong."""
        what = f"parameter {self.name!r}" if self.name else "parameter"
        value = self._check_type(value, self.type, what)
        if self.type is list and self.item is not None:
            value = [self._check_type(v, self.item, f"{what}[{i}]") for i, v in enumerate(value)]
        if self.type is float and not math.isfinite(value):
            raise ParamError(f"{what} must be finite, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{what} must be one of {list(self.choices)}, got {value!r}")
        checks = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b}
        checks["lt"] = lambda v, b: v < b
        symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        for key, bound in self.bounds.items():
            if bound is not None and not checks[key](value, bound):
                unit = f" {self.unit}" if self.unit else ""
                raise ParamError(f"{what} must be {symbols[key]} {bound:g}{unit}, got {value!r}")
        if self.smallest and 0 < abs(value) < self.smallest:
            raise ParamError(f"{what} must be 0 or at least {self.smallest:g} {self.unit} in magnitude, got {value!r}")
        return value
