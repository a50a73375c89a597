"""Write a policy bundle from a trained checkpoint: ONNX, the rsl_rl checkpoint, ``contract.yaml``.

The contract is generated from the task configuration and the robot description (never written
by hand): the actor's terms with their scales, clips and options, the action map, the gains,
the control period, and provenance (trainer commit, env steps, training wall time, GPU, final
reward, date). ``krabgraph.nodes.policy.contract.load_contract`` must accept what this writes
(``tests/train`` loads it).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from krabgraph.nodes.robots import RobotDescription, load_robot
from krabgraph.train.config import TaskConfig

BUNDLES_DIR = Path(__file__).resolve().parent.parent / "nodes" / "policy" / "bundles"
HEADER = """\
# Written by krabgraph.train (`make train`) from the task configuration in train/config.py and the
# robot description nodes/robots/{robot}.yaml. Do not edit: change the task and train again.
"""


def trainer_commit() -> str:
    """The trainer's git commit (with ``-dirty`` if the tree had changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "train", "nodes"], cwd=root, capture_output=True, text=True
        )
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _embed_onnx_weights(path: Path) -> None:
    """One self-contained ONNX file: torch's exporter may put the weights in ``<file>.data``."""
    import onnx

    model = onnx.load(str(path))  # reads external data from beside the file
    onnx.save_model(model, str(path), save_as_external_data=False)
    external = path.with_name(path.name + ".data")
    if external.exists():
        external.unlink()


def contract_dict(task: TaskConfig, robot: RobotDescription, provenance: dict[str, Any]) -> dict[str, Any]:
    """The bundle's contract as data (see ``nodes/policy/contract.py`` for the format)."""
    terms = []
    for term in task.actor_terms:
        entry: dict[str, Any] = {"name": term.name}
        if term.scale != 1.0:
            entry["scale"] = term.scale
        if term.clip is not None:
            entry["clip"] = list(term.clip)
        if term.options:
            entry["options"] = dict(term.options)
        terms.append(entry)
    per_joint = lambda values: {n: round(float(v), 6) for n, v in zip(robot.joint_names, values, strict=True)}  # noqa: E731
    return {
        "name": task.name,
        "robot": robot.name,
        "description": task.description,
        "weights": "policy.onnx",
        "format": "onnx",
        "input": "obs",
        "output": "actions",
        "control_dt": robot.control_dt,
        "joints": list(robot.joint_names),
        "default_joint_pos": per_joint(robot.default_pos),
        "observations": {"terms": terms},
        "actions": {"clip": task.action_clip, "scale": task.action_scale, "offset": "default"},
        "gains": {"kp": per_joint(robot.kp), "kd": per_joint(robot.kd)},
        "provenance": provenance,
    }


def export_bundle(task: TaskConfig, runner, progress, out_dir: Path | None = None) -> Path:
    """Write ``policy.onnx``, ``checkpoint.pt`` (actor and critic, rsl_rl layout), ``contract.yaml``
    and ``learning_curves.png`` into the bundle directory; returns it."""
    robot = load_robot(task.robot)
    commit = trainer_commit()  # before this export rewrites the bundle's own files
    out = out_dir or BUNDLES_DIR / task.name
    out.mkdir(parents=True, exist_ok=True)
    runner.export_policy_to_onnx(str(out), filename="policy.onnx")
    _embed_onnx_weights(out / "policy.onnx")
    saved = runner.alg.save()
    torch.save(
        {
            "actor_state_dict": saved["actor_state_dict"],
            "critic_state_dict": saved["critic_state_dict"],
            "iter": progress.iteration,
            "infos": None,
        },
        out / "checkpoint.pt",
    )
    last = progress.history[-1] if progress.history else {}
    provenance = {
        "trainer": "krabgraph.train (MuJoCo MJX + rsl_rl PPO)",
        "trainer_commit": commit,
        "task": task.name,
        "env_steps": int(progress.env_steps),
        "iterations": int(progress.iteration),
        "training_wall_minutes": round(progress.wall_s / 60, 1),
        "runs": int(progress.runs),
        "gpu": progress.gpu,
        "num_envs": int(progress.num_envs or task.num_envs),
        "final_reward_per_step": round(float(last.get("reward_per_step", float("nan"))), 4),
        "final_episode_length_s": round(float(last.get("episode_length_s", float("nan"))), 2),
        "final_terrain_level": round(float(last.get("terrain_level", float("nan"))), 2),
        "exploded_envs_reset": int(progress.exploded),
        **({"init_from": progress.init_from} if getattr(progress, "init_from", "") else {}),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
    }
    text = HEADER.format(robot=robot.name) + yaml.safe_dump(
        contract_dict(task, robot, provenance), sort_keys=False, width=110
    )
    (out / "contract.yaml").write_text(text)
    return out


__all__ = ["contract_dict", "export_bundle", "trainer_commit"]
