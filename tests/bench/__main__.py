"""``python -m tests.bench`` (from the repository root): run the benchmarks, write Markdown and JSON tables."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from . import hop, loop, pacing, peers, policy, sim_speed, tap
from .placement import CPUS
from .stats import Row, machine_info

SUITES: dict[str, Callable[[int, int], list[Row]]] = {
    "hop": hop.run,
    "tap": tap.run,
    "peers": peers.run,
    "loop": loop.run,
    "pacing": pacing.run,
    "policy": policy.run,
    "sim": sim_speed.run,
}
IN_PROCESS = ("hop", "loop", "pacing", "policy", "sim")  # no subprocesses (tap and peers start some)
METHOD = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-method.md"
DORA = peers.NAMES["dora"]
DORA_TARGET = 20.0  # hop ≥ 20× faster than dora-rs Python


def compare_with_dora(rows: list[Row]) -> None:
    """Add the dora-rs comparison (its best placement, p50 and p99) to the krabgraph hop rows."""
    for group in dict.fromkeys(r.group for r in rows if r.group.startswith("hop")):
        dora = [r for r in rows if r.group == group and r.name == DORA and r.ran]
        if not dora:
            continue
        best = min(dora, key=lambda r: r.p50)
        for r in rows:
            if r.group == group and r.name.startswith("krabgraph") and r.ran:
                f50, f99 = best.p50 / r.p50, best.p99 / r.p99
                met = f50 >= DORA_TARGET and f99 >= DORA_TARGET
                r.note += (
                    f"; {_factor(f50)}/{_factor(f99)} faster than dora-rs Python ({best.placement.split(';')[0]}; "
                    f"p50/p99), target ≥ {DORA_TARGET:.0f}×: {'met' if met else 'MISSED'}"
                )
                r.extra.update(dora_factor_p50=f50, dora_factor_p99=f99, dora_target_met=met)


def _factor(x: float) -> str:
    return f"{x:.0f}×" if x >= 10 else f"{x:.2g}×"


def _cell(x: float, digits: int) -> str:
    return "—" if x != x else f"{x:.{digits}f}"  # NaN: not measured


def to_markdown(rows: list[Row], info: dict, smoke: bool) -> str:
    lines = ["# krabgraph benchmarks", ""]
    if smoke:
        lines += ["**Smoke run** (few samples): checks that every benchmark runs; the figures mean little.", ""]
    lines += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench` "
        "(`python -m tests.bench`); how each row is measured and how to reproduce it "
        "follows the tables.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "Units: µs unless a row says otherwise. p50/p90/p99: median over the repeats of each repeat's "
        "percentile; max: worst sample of any repeat. —: not measured (the note says why).",
    ]
    for group in dict.fromkeys(r.group for r in rows):
        lines += [
            "",
            f"## {group}",
            "",
            "| row | samples × repeats | p50 | p90 | p99 | max | placement | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r.group == group):
            lines.append(
                f"| {r.name} | {r.samples} × {r.repeats} | {_cell(r.p50, 2)} | {_cell(r.p90, 2)} | "
                f"{_cell(r.p99, 2)} | {_cell(r.max, 1)} | {r.placement} | {r.note} |"
            )
    lines.append("")
    if METHOD.exists():  # the hand-written method section, kept in its own file
        lines += ["", f"<!-- copied from {METHOD.name} by the generator: edit that file -->", ""]
        lines += [f"#{ln}" if ln.startswith("#") else ln for ln in METHOD.read_text().splitlines()]  # one level down
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="a few samples per row, to check the suite runs")
    p.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites")
    p.add_argument("--output", default="docs/benchmarks.md", help="Markdown file; JSON goes beside it")
    p.add_argument(
        "--cpu",
        type=int,
        default=CPUS[0],
        help="pin the main thread to this core (default: the first allowed; -1: no pinning)",
    )
    p.add_argument("--count", type=int, help="samples per repeat (default 20,000; smoke 500)")
    p.add_argument("--pacing-s", type=float, help="seconds per pacing row (default 60; smoke 2)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    count, repeats = (500, 1) if args.smoke else (20_000, 3)
    count = args.count or count
    pacing_s = args.pacing_s or (pacing.SMOKE_S if args.smoke else pacing.FULL_S)
    suites = dict(SUITES, pacing=functools.partial(pacing.run, seconds=pacing_s))
    info = machine_info()
    rows: list[Row] = []
    for name in args.only or suites:
        print(f"running {name} ...", end=" ", flush=True)
        t0 = time.monotonic()
        rows += suites[name](count, repeats)
        print(f"{time.monotonic() - t0:.0f} s", flush=True)
    compare_with_dora(rows)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(rows, info, args.smoke))
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "smoke": args.smoke, "rows": [r.as_dict() for r in rows]}, indent=1)
    )
    for r in rows:
        print(f"{r.group:28.28} {r.name:60.60} p50 {r.p50:9.2f} p99 {r.p99:9.2f} {r.unit} {r.note}")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
