"""Core placement for the benchmarks: which cores a row's two ends run on, set with sched_setaffinity.

``CPUS`` is the set of cores this process may use, read at import (before ``__main__`` pins the
main thread), so rows that need two cores still find the second one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

CPUS: list[int] = sorted(os.sched_getaffinity(0))


def main_core() -> int:
    """The core the calling thread is pinned to (the first allowed one if it is not pinned to one)."""
    now = sorted(os.sched_getaffinity(0))
    return now[0] if len(now) == 1 else CPUS[0]


def placements() -> list[tuple[str, int, int | None]]:
    """``(label, sender core, receiver core)`` for "same core" and "different cores" (None: no second core)."""
    a = main_core()
    others = [c for c in CPUS if c != a]
    return [("same core", a, a), ("different cores", a, others[0] if others else None)]


def label(where: str, a: int, b: int | None) -> str:
    """Placement text for a table row, e.g. ``different cores (0 → 1)``."""
    return f"{where} ({a} → {b if b is not None else 'none available'})"


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """Pin the calling thread to ``cores`` for the block; restore its previous affinity after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
