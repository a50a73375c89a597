"""``python -m krabgraph.train``: train a task for a wall-clock budget, resume, export its bundle.

    python -m krabgraph.train run [--task go2_rough] [--budget-min 9] [--checkpoint DIR] [--device cuda]
    python -m krabgraph.train run --task go2_parkour [--init-from go2_rough]   # stage 2, warm-started
    python -m krabgraph.train run --smoke           # CPU, seconds: a few environments and iterations
    python -m krabgraph.train export [--task go2_rough] [--checkpoint DIR]

``run`` continues from ``DIR/model.pt`` when it exists; otherwise a task with ``init_from`` (or
``--init-from TASK``) starts from that task's checkpoint ``train/checkpoints/TASK/model.pt``
(weights and normalizers; fresh optimizer, curriculum and progress). It trains until the task's env-step total or
the budget, saves the checkpoint back to ``DIR`` and writes the bundle ``nodes/policy/bundles/<task>/``
from it (its provenance says how far training got). Several GPUs: start it with ``torchrun --nproc-per-node N``
(rsl_rl's torch.distributed path; each rank steps its own environments on its own GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m krabgraph.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=["run", "export"])
    parser.add_argument("--task", default="go2_rough", help="a task of train/config.py TASKS")
    parser.add_argument(
        "--init-from",
        help="warm-start a new run from this task's checkpoint (default: the task's init_from; none: off)",
    )
    parser.add_argument("--budget-min", type=float, default=9.0, help="wall-clock budget of this run (minutes)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default train/checkpoints/<task>)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--num-envs", type=int, help="override the task's number of environments")
    parser.add_argument("--total-steps", type=float, help="override the task's env-step total")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized task: a few environments and iterations")
    parser.add_argument("--no-export", action="store_true", help="do not write the bundle after the run")
    parser.add_argument("--bundle-dir", type=Path, help="write the bundle here instead of nodes/policy/bundles/<task>")
    args = parser.parse_args(argv)

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and torch share the GPU
    import jax
    import torch

    from krabgraph.train.config import get_task
    from krabgraph.train.export import export_bundle
    from krabgraph.train.runner import Trainer

    try:
        task = get_task(args.task)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.smoke:
        task = task.smoke()
    if args.num_envs:
        task = replace(task, num_envs=args.num_envs)
    if args.total_steps:
        task = replace(task, total_env_steps=int(args.total_steps))
    rank, world = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available() or jax.default_backend() != "gpu":
            print(
                "error: --device cuda needs torch with CUDA and JAX with a GPU backend "
                f"(torch.cuda: {torch.cuda.is_available()}, jax: {jax.default_backend()}); "
                "on a CPU machine use `make train-smoke`",
                file=sys.stderr,
            )
            return 1
        device = f"cuda:{rank}"
        jax.config.update("jax_default_device", jax.devices("gpu")[rank])
    if world > 1:
        task = replace(task, seed=task.seed + rank)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINTS / task.name
    started = time.monotonic()
    trainer = Trainer(task, device=device)
    if (checkpoint / "model.pt").exists():
        trainer.load(checkpoint, env_state=args.verb == "run")
        print(
            f"resumed {task.name} from {checkpoint}: iteration {trainer.progress.iteration}, "
            f"{trainer.progress.env_steps / 1e6:.1f} M env steps"
        )
    else:
        source = args.init_from if args.init_from is not None else task.init_from
        if args.verb == "run" and source and source != "none":
            try:
                trainer.init_from(DEFAULT_CHECKPOINTS / source / "model.pt", get_task(source))
            except (ValueError, FileNotFoundError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"warm start from {trainer.progress.init_from}: weights and normalizers, fresh optimizer")
        print(f"new run of {task.name}: {task.num_envs} environments on {device}")
    print(
        f"set-up {time.monotonic() - started:.1f}s; training for up to {args.budget_min:.1f} min "
        f"towards {task.total_env_steps / 1e6:.0f} M env steps"
    )
    if args.verb == "run":
        trainer.train(args.budget_min * 60 - (time.monotonic() - started))
    if rank != 0:
        return 0
    if args.verb == "run":
        trainer.save(checkpoint)
        print(
            f"saved {checkpoint} at iteration {trainer.progress.iteration} "
            f"({trainer.progress.env_steps / 1e6:.1f} M env steps, "
            f"{trainer.progress.exploded} exploded environments reset, {trainer.progress.rollbacks} rollbacks)"
        )
    if args.verb == "export" or not args.no_export:
        out = export_bundle(task, trainer.runner, trainer.progress, args.bundle_dir)
        print(f"wrote bundle {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
