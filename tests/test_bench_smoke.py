"""The benchmark suite runs: the in-process suites in smoke mode write a table with every row.

The peers suite (dora-rs, zenoh and zmq subprocesses) is left out: it needs the bench extra and
takes longer; ``make bench-smoke`` runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from tests.bench.__main__ import IN_PROCESS
from tests.bench.hop import SIZES

ROOT = Path(__file__).resolve().parents[1]  # `python -m tests.bench` runs from the repository root

# group -> rows, each as substrings its name contains, and how many rows it has (placements).
HOP = [
    (("raw pyzmq inproc, one thread, bytes only",), 1),
    (("raw pyzmq inproc, one thread, + protobuf",), 1),
    (("krabgraph executor, one thread",), 1),
    (("raw pyzmq inproc, two threads, + protobuf",), 2),
    (("krabgraph, subscriber on its own thread",), 2),
]
EXPECTED = {
    **{f"hop: {size}": HOP for size in SIZES},
    "loop": [(("hal → policy → Safety → hal",), 1), (("hal → policy → pass-through → hal",), 1)],
    "pacing": [((f"{rate} Hz, {kind}",), 1) for rate in (100, 1000) for kind in ("executor timer", "bare sleep")],
    "policy": [
        ((net, f", {backend}: {kind}"), 1)
        for net in ("go2_walk", "MLP 235")
        for backend in ("onnxruntime", "torch")
        for kind in ("bare inference", "PolicyNode.on_state")
    ],
    "sim": [(("bare loop",), 1), (("walk graph, lockstep",), 1)],
}


def test_smoke_run_writes_every_row(tmp_path: Path):
    out = tmp_path / "bench.md"
    cmd = [sys.executable, "-m", "tests.bench", "--smoke", "--count", "100", "--pacing-s", "0.25"]
    cmd += ["--cpu", str(min(os.sched_getaffinity(0))), "--output", str(out)]
    for suite in IN_PROCESS:
        cmd += ["--only", suite]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    data = json.loads(out.with_suffix(".json").read_text())
    assert data["smoke"] is True and data["machine"]["cpus"]
    rows = data["rows"]
    assert {r["group"] for r in rows} == set(EXPECTED)
    one_core = len(os.sched_getaffinity(0)) < 2
    for group, expected in EXPECTED.items():
        got = [r for r in rows if r["group"] == group]
        assert len(got) == sum(n for _, n in expected), [r["name"] for r in got]
        for parts, n in expected:
            hits = [r for r in got if all(p in r["name"] for p in parts)]
            assert len(hits) == n, f"{group}: {n} row(s) {parts} expected in {[r['name'] for r in got]}"
            for r in hits:
                if r["p50"] is None:  # not measured: two-core rows on a one-core machine
                    assert one_core and "only one core" in r["note"], r
                else:
                    assert 0 <= r["p50"] <= r["p99"] <= r["max"] and r["samples"] > 0, r
    targets = [r for r in rows if "target_met" in r["extra"]]
    assert targets and all(": met" in r["note"] or ": MISSED" in r["note"] for r in targets)

    text = out.read_text()
    assert "**Smoke run**" in text and "How each row is measured" in text
    for r in rows:
        assert f"| {r['name']} |" in text
