"""``python -m krabgraph.launch.bench``: run the benchmarks, write Markdown and JSON tables."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from krabgraph.launch.bench import hop, sim_speed
from krabgraph.launch.bench.stats import Row, machine_info

SUITES = {"hop": hop.run, "sim": sim_speed.run}


def to_markdown(rows: list[Row], info: dict, smoke: bool) -> str:
    lines = ["# krabgraph benchmarks", ""]
    if smoke:
        lines += ["**Smoke run** (few samples): checks that every benchmark runs; the figures mean little.", ""]
    lines += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench`.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            lines += [
                "",
                f"## {group}",
                "",
                "| row | samples × repeats | p50 | p90 | p99 | max | placement | note |",
                "|---|---|---|---|---|---|---|---|",
            ]
        lines.append(
            f"| {r.name} | {r.samples} × {r.repeats} | {r.p50:.2f} | {r.p90:.2f} | {r.p99:.2f} | "
            f"{r.max:.1f} | {r.placement} | {r.note} |"
        )
    lines += [
        "",
        "Units: µs unless a row says otherwise. p50/p90/p99: median over the repeats of each repeat's "
        "percentile; max: worst sample of any repeat.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="a few samples per row, to check the suite runs")
    p.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites")
    p.add_argument("--output", default="docs/benchmarks.md", help="Markdown file; JSON goes beside it")
    p.add_argument("--cpu", type=int, default=0, help="pin the benchmark process to this core (-1: no pinning)")
    args = p.parse_args(argv)
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    count, repeats = (2_000, 1) if args.smoke else (20_000, 3)
    info = machine_info()
    rows: list[Row] = []
    for name in args.only or SUITES:
        print(f"running {name} ...", flush=True)
        rows += SUITES[name](count, repeats)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(rows, info, args.smoke))
    out.with_suffix(".json").write_text(
        json.dumps({"machine": info, "smoke": args.smoke, "rows": [r.as_dict() for r in rows]}, indent=1)
    )
    for r in rows:
        print(f"{r.group:6} {r.name:55} p50 {r.p50:8.2f} p99 {r.p99:8.2f} {r.unit} {r.note}")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
