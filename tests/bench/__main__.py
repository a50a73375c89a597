"""``python -m tests.bench`` (from the repository root): run the benchmarks, write Markdown and JSON tables."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from .placement import CPUS
from .policy_gpu import GROUP as GPU_GROUP
from .policy_gpu import SAME_BAND
from .stats import Row, machine_info

# suite -> its module in tests/bench/, imported only when the suite runs (the GPU machine has no pyzmq,
# which hop, tap and peers need; policy-gpu does not)
SUITES: dict[str, str] = {
    "hop": "hop",
    "tap": "tap",
    "peers": "peers",
    "loop": "loop",
    "pacing": "pacing",
    "policy": "policy",
    "policy-gpu": "policy_gpu",
    "sim": "sim_speed",
}
IN_PROCESS = ("hop", "loop", "pacing", "policy", "sim")  # no subprocesses (tap and peers start some)
DOCS = Path(__file__).resolve().parents[2] / "docs"
METHOD = DOCS / "benchmarks-method.md"
GPU_JSON = DOCS / "benchmarks-gpu.json"  # the policy-gpu rows of a run on a GPU machine (tests/bench/device_gpu.sh)
DORA_TARGET = 20.0  # hop ≥ 20× faster than dora-rs Python


def suite_module(name: str) -> ModuleType:
    """The module of suite ``name`` (imported now: each suite pulls in only what it measures)."""
    return importlib.import_module(f".{SUITES[name]}", __package__)


def compare_with_dora(rows: list[Row]) -> None:
    """Add the dora-rs comparison (its best placement, p50 and p99) to the krabgraph hop rows."""
    groups = dict.fromkeys(r.group for r in rows if r.group.startswith("hop"))
    if not groups:
        return
    dora_name = suite_module("peers").NAMES["dora"]
    for group in groups:
        dora = [r for r in rows if r.group == group and r.name == dora_name and r.ran]
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


def _table(rows: list[dict]) -> list[str]:
    """A group's Markdown table from row dicts (``Row.as_dict``: None for not measured)."""
    lines = [
        "| row | samples × repeats | p50 | p90 | p99 | max | placement | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in rows:
        p50, p90, p99, top = (nan if r[k] is None else r[k] for k in ("p50", "p90", "p99", "max"))
        lines.append(
            f"| {r['name']} | {r['samples']} × {r['repeats']} | {_cell(p50, 2)} | {_cell(p90, 2)} | "
            f"{_cell(p99, 2)} | {_cell(top, 1)} | {r['placement']} | {r['note']} |"
        )
    return lines


def _fastest(rows: list[dict], network: str, kind: str, device: str) -> dict | None:
    pick = [
        r for r in rows if (r["extra"]["network"], r["extra"]["kind"], r["extra"]["device"]) == (network, kind, device)
    ]
    return min(pick, key=lambda r: r["p50"], default=None)


def gpu_summary(rows: list[dict]) -> list[str]:
    """Per network and kind, the fastest cuda row against the fastest cpu row (p50), and what that means."""
    measured = [r for r in rows if r["p50"] is not None and "device" in r.get("extra", {})]
    lines: list[str] = []
    verdicts: dict[str, list[str]] = {"slower": [], "about as fast": [], "faster": []}
    for net in dict.fromkeys(r["extra"]["network"] for r in measured):
        parts = []
        for kind in dict.fromkeys(r["extra"]["kind"] for r in measured):
            cpu, cuda = (_fastest(measured, net, kind, dev) for dev in ("cpu", "cuda"))
            if cpu is None or cuda is None:
                continue
            ratio = cuda["p50"] / cpu["p50"]
            word = "slower" if ratio > 1 + SAME_BAND else "faster" if ratio < 1 - SAME_BAND else "about as fast"
            verdicts[word].append(f"{net.split(' (')[0]} {kind}")
            parts.append(
                f"{kind} {cuda['p50']:.0f} µs on cuda ({cuda['extra']['backend']}) vs {cpu['p50']:.0f} µs on cpu "
                f"({cpu['extra']['backend']}): {ratio:.1f}×"
            )
        if parts:
            lines.append(f"- {net}: " + "; ".join(parts) + ".")
    if not lines:
        return []
    others = "; ".join(f"{w} for {', '.join(v)}" for w, v in verdicts.items() if v and w != "slower")
    if verdicts["slower"] and not others:
        verdict = "**At batch 1 the GPU is slower than the CPU for every network and row measured.** "
    elif verdicts["slower"]:
        verdict = f"**At batch 1 the GPU is slower than the CPU for {', '.join(verdicts['slower'])}** ({others}). "
    else:
        verdict = f"At batch 1 the GPU is not slower than the CPU for any network measured ({others}). "
    meaning = (
        "Each tick the node copies one observation to the GPU, launches a kernel per layer and waits for the "
        "actions to come back; for policy-sized MLPs that costs more than the arithmetic the GPU saves. For one "
        "robot keep `device: cpu` (the default); `device: cuda` pays only for much larger networks or many "
        "observations in one batch, which the policy node (one state per tick) does not run."
        if verdicts["slower"]
        else "`device: cuda` costs no latency here but frees little CPU: the node's thread waits for the GPU each tick."
    )
    head = ["At batch 1, the fastest cuda row against the fastest cpu row of each network (p50):", ""]
    return [*head, *lines, "", verdict + meaning]


def stored_gpu_section(path: Path, skipped_here: list[Row]) -> list[str]:
    """The policy-gpu rows of a run on a GPU machine, from ``path`` (JSON ``python -m tests.bench`` wrote)."""
    data = json.loads(path.read_text())
    info = data.get("machine", {})
    gpu_rows = [r for r in data["rows"] if r["group"] == GPU_GROUP]
    where = info.get("gpu", "an unnamed GPU machine")
    host = ", ".join(str(info[k]) for k in ("cpu", "cpus") if k in info)
    when = data.get("generated", "an unrecorded date")
    lines = [
        "",
        f"## {GPU_GROUP}, measured on {where} ({host} cpus) on {when}; not re-measured by this run",
        "",
        f"Copied from `docs/{path.name}` (written by `bash tests/bench/device_gpu.sh` on a lent GPU machine; "
        'see "policy on GPU" in the method below)'
        + (" — a **smoke run**: few samples, the figures mean little" if data.get("smoke") else "")
        + ". Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items()),
    ]
    if skipped_here:
        why = skipped_here[0].note.removeprefix("not measured: ").split(";")[0]
        lines += ["", f"This run did not measure these rows: {why}."]
    summary = gpu_summary(gpu_rows)
    lines += ["", *summary, ""] if summary else [""]
    return lines + _table(gpu_rows)


def to_markdown(rows: list[Row], info: dict, smoke: bool, stored_gpu: Path | None = GPU_JSON) -> str:
    """The tables of ``rows``, then (if ``stored_gpu`` exists and this run measured no GPU row) the
    stored GPU rows in place of this run's skipped ones, then the method section."""
    gpu_here = [r for r in rows if r.group == GPU_GROUP]
    use_stored = stored_gpu is not None and stored_gpu.is_file() and not any(r.ran for r in gpu_here)
    if use_stored:
        rows = [r for r in rows if r.group != GPU_GROUP]
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
        dicts = [r.as_dict() for r in rows if r.group == group]
        summary = gpu_summary(dicts) if group == GPU_GROUP else []
        lines += ["", f"## {group}", "", *summary, *([""] if summary else []), *_table(dicts)]
    if use_stored:
        lines += stored_gpu_section(stored_gpu, gpu_here)
    lines.append("")
    if METHOD.exists():  # the hand-written method section, kept in its own file
        lines += ["", f"<!-- copied from {METHOD.name} by the generator: edit that file -->", ""]
        lines += [f"#{ln}" if ln.startswith("#") else ln for ln in METHOD.read_text().splitlines()]  # one level down
    return "\n".join(lines)


def suite_runner(name: str, args: argparse.Namespace) -> Callable[[int, int], list[Row]]:
    """``run(count, repeats)`` of suite ``name`` (pacing with its seconds per row from the options)."""
    module = suite_module(name)
    if name == "pacing":
        return functools.partial(module.run, seconds=args.pacing_s or (module.SMOKE_S if args.smoke else module.FULL_S))
    return module.run


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
    info = machine_info()
    rows: list[Row] = []
    for name in args.only or SUITES:
        print(f"running {name} ...", end=" ", flush=True)
        t0 = time.monotonic()
        rows += suite_runner(name, args)(count, repeats)
        if name == "policy-gpu":
            info.update(suite_module(name).device_info())
        print(f"{time.monotonic() - t0:.0f} s", flush=True)
    compare_with_dora(rows)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out.write_text(to_markdown(rows, info, args.smoke))
    out.with_suffix(".json").write_text(
        json.dumps(
            {"machine": info, "generated": generated, "smoke": args.smoke, "rows": [r.as_dict() for r in rows]},
            indent=1,
        )
    )
    for r in rows:
        print(f"{r.group:28.28} {r.name:60.60} p50 {r.p50:9.2f} p99 {r.p99:9.2f} {r.unit} {r.note}")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
