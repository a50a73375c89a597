"""Percentiles over repeated runs and the machine facts printed with every table."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

import numpy as np

from .placement import CPUS

T = TypeVar("T")


@dataclass
class Row:
    """One benchmark row: percentiles (µs unless ``unit`` says otherwise) over ``repeats`` runs."""

    group: str
    name: str
    samples: int
    repeats: int
    p50: float
    p90: float
    p99: float
    max: float
    unit: str = "µs"
    placement: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain data for JSON: NaN (a row that could not run) becomes None."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}

    @property
    def ran(self) -> bool:
        return not math.isnan(self.p50)


def interleaved(measures: dict[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """``repeats`` runs of each measure, taken in turn (a, b, a, b, ...) rather than all of one first:
    the sides of a ratio then share the machine's slow drift (a shared VM's speed wanders over minutes)."""
    runs: dict[str, list[T]] = {k: [] for k in measures}
    for _ in range(repeats):
        for key, measure in measures.items():
            runs[key].append(measure())
    return runs


def summarize(group: str, name: str, runs: list[np.ndarray], **kw) -> Row:
    """Median over repeats of each run's p50/p90/p99; the worst max of any run."""
    pct = np.array([np.percentile(r, [50, 90, 99]) for r in runs])
    med = np.median(pct, axis=0)
    return Row(
        group,
        name,
        int(min(len(r) for r in runs)),
        len(runs),
        float(med[0]),
        float(med[1]),
        float(med[2]),
        float(max(r.max() for r in runs)),
        **kw,
    )


def skipped(group: str, name: str, reason: str, **kw) -> Row:
    """A row that could not be measured here: no figures, and a note saying why."""
    nan = float("nan")
    return Row(group, name, 0, 0, nan, nan, nan, nan, note=f"not measured: {reason}", **kw)


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "main thread on cores": sorted(os.sched_getaffinity(0)),
    }
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        info["cpu"] = model[0] if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    info["cores available"] = CPUS
    try:
        import zmq

        info["libzmq"] = zmq.zmq_version()
    except ImportError:
        pass
    for dist in ("pyzmq", "protobuf", "numpy", "onnxruntime", "torch", "mujoco", "eclipse-zenoh", "dora-rs"):
        with contextlib.suppress(PackageNotFoundError):
            info[dist] = version(dist)
    with contextlib.suppress(OSError):
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return info
