"""Training loop: rsl_rl PPO on the MJX environment for a wall-clock budget, resumable exactly.

A run trains until the task's env-step total or the budget, whichever comes first, then saves a
checkpoint directory:

- ``model.pt``: rsl_rl's checkpoint (actor, critic with its normalizers, optimizer, iteration),
  with the trainer's state in ``infos`` (env steps, wall time, RNG states, history);
- ``env_state.npz``: every environment's MuJoCo and task state, so the next run continues the
  same episodes (per-environment randomization is re-drawn from the task seed);
- ``progress.json`` and ``learning_curves.png``: one row per iteration, and its plot.

Resuming from that directory gives the same next iteration as an uninterrupted run. A new run
may instead be warm-started from another task's checkpoint (``Trainer.init_from``: actor, critic
and their observation normalizers; a fresh optimizer, curriculum and progress). Exploded or
NaN environments are reset by the environment and counted here; a non-finite network after an
update is rolled back to the last good weights with half the learning rate.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from rsl_rl.runners import OnPolicyRunner

from krabgraph.train.config import ObsTerm, TaskConfig
from krabgraph.train.env import EnvState, RoughEnv
from krabgraph.train.vecenv import RslRlEnv, to_torch

SAVE_MARGIN_S = 20.0  # stop this long before the budget: saving and the plot take a few seconds
GOOD_COPY_EVERY = 10  # iterations between in-memory copies of the last good weights


@dataclass
class Progress:
    """What the trainer carries across runs besides the weights (saved in ``model.pt`` infos)."""

    iteration: int = 0
    env_steps: int = 0
    wall_s: float = 0.0  # training seconds over all runs (compile excluded)
    runs: int = 0
    exploded: int = 0
    rollbacks: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    gpu: str = ""
    num_envs: int = 0  # environments of the training runs
    init_from: str = ""  # the checkpoint this task was warm-started from ("" when trained from scratch)


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()})"


class Trainer:
    """One task's environment, PPO runner and progress; ``train(budget_s)`` then ``save(dir)``."""

    def __init__(self, task: TaskConfig, device: str = "cpu"):
        self.task = task
        self.device = device
        torch.manual_seed(task.seed)
        self.env = RoughEnv(task)
        state = self.env.init(jax.random.PRNGKey(task.seed))
        self.vec = RslRlEnv(self.env, state, device)
        self.runner = OnPolicyRunner(self.vec, task.ppo.runner_cfg(), log_dir=None, device=device)
        self.alg = self.runner.alg
        self.progress = Progress()
        self._good = copy.deepcopy(self.alg.save())

    @property
    def steps_per_iteration(self) -> int:
        return self.env.num_envs * self.task.ppo.num_steps_per_env

    @property
    def done(self) -> bool:
        return self.progress.env_steps >= self.task.total_env_steps

    # -- training ----------------------------------------------------------------------------------
    def train(self, budget_s: float, log=print) -> None:
        """Iterate until the task's step total or ``budget_s`` wall seconds (minus the save margin)."""
        start = time.monotonic()
        self.progress.runs += 1
        self.progress.gpu = device_name(self.device)
        self.progress.num_envs = self.env.num_envs
        per_iteration = 0.0
        while not self.done:
            elapsed = time.monotonic() - start
            if elapsed + per_iteration * 1.2 + SAVE_MARGIN_S > budget_s:
                break
            t0 = time.monotonic()
            row = self.iteration()
            per_iteration = time.monotonic() - t0
            if self.progress.iteration > 1:  # the first iteration of a run includes the compile
                self.progress.wall_s += per_iteration
            row["iteration_s"] = per_iteration
            log(status_line(row, self.progress))

    def iteration(self) -> dict[str, float]:
        """One PPO iteration: rollout, returns, update; returns its row of the learning curves."""
        task, alg, vec = self.task, self.alg, self.vec
        ramp = task.randomization.push_ramp_iterations
        vec.push_scale = min(1.0, self.progress.iteration / ramp) if ramp else 1.0
        sums = {k: torch.zeros((), device=self.device) for k in ("reward", "done", "exploded", "fell", "time_out")}
        ep_len = torch.zeros((), device=self.device)
        term_sums: dict[str, torch.Tensor] = {}
        t0 = time.monotonic()
        obs = vec.get_observations().to(self.device)
        alg.train_mode()
        with torch.inference_mode():
            for _ in range(task.ppo.num_steps_per_env):
                lengths = vec.episode_length_buf.clone()
                actions = alg.act(obs)
                obs, rewards, dones, extras = vec.step(actions)
                out = extras.pop("events")
                alg.process_env_step(obs, rewards, dones, extras)
                sums["reward"] += rewards.sum()
                d = dones.float()
                sums["done"] += d.sum()
                ep_len += ((lengths + 1) * d).sum()
                for key in ("exploded", "fell", "time_out"):
                    sums[key] += to_torch(getattr(out, key)).float().sum()
                for name, value in extras["log"].items():
                    term_sums[name] = term_sums.get(name, 0.0) + value
            alg.compute_returns(obs)
        collect_s = time.monotonic() - t0
        losses = alg.update()
        self._guard_nan()
        n_steps = task.ppo.num_steps_per_env
        finished = max(sums["done"].item(), 1.0)
        self.progress.iteration += 1
        self.progress.env_steps += self.steps_per_iteration
        self.progress.exploded += int(sums["exploded"].item())
        level = to_torch(vec.state.level).float().mean().item()
        row = {
            "iteration": self.progress.iteration,
            "env_steps": self.progress.env_steps,
            "reward_per_step": sums["reward"].item() / (n_steps * vec.num_envs),
            "episode_length_s": ep_len.item() / finished * self.env.robot.control_dt,
            "terrain_level": level,
            "episodes": sums["done"].item(),
            "fell": sums["fell"].item(),
            "exploded": sums["exploded"].item(),
            "action_std": alg.get_policy().output_std.mean().item(),
            "learning_rate": alg.learning_rate,
            "push_scale": vec.push_scale,
            "collect_s": collect_s,
            **{f"loss_{k}": float(v) for k, v in losses.items()},
            **{name.rsplit("/", 1)[-1]: (v / n_steps).item() for name, v in term_sums.items()},
        }
        row["env_steps_per_s"] = self.steps_per_iteration / max(time.monotonic() - t0, 1e-9)
        self.progress.history.append(row)
        return row

    def _guard_nan(self) -> None:
        """Roll back to the last good weights (and halve the learning rate) if an update made NaNs."""
        params = [p for m in (self.alg.actor, self.alg.critic) for p in m.parameters()]
        if all(torch.isfinite(p).all() for p in params):
            if self.progress.iteration % GOOD_COPY_EVERY == 0:
                self._good = copy.deepcopy(self.alg.save())
            return
        self.progress.rollbacks += 1
        self.alg.load(copy.deepcopy(self._good), None, strict=True)
        self.alg.learning_rate = max(self.alg.learning_rate / 2, 1e-5)
        for group in self.alg.optimizer.param_groups:
            group["lr"] = self.alg.learning_rate
        print(
            f"non-finite network after iteration {self.progress.iteration}: rolled back, lr {self.alg.learning_rate:g}"
        )

    # -- checkpoints -------------------------------------------------------------------------------
    def init_from(self, path: Path, source_task: TaskConfig) -> None:
        """Warm start: actor and critic weights (action std included) and observation normalizers
        from ``path`` (a ``model.pt`` of ``source_task``); the optimizer, the learning rate, the
        curriculum and the progress stay fresh. Refuses a checkpoint whose observation layout or
        network shapes differ from this task's."""
        saved = torch.load(path, map_location=self.device, weights_only=False)
        if saved.get("infos", {}).get("task") != source_task.name:
            raise ValueError(f"{path}: not a checkpoint of task {source_task.name!r}")
        check_warm_start(source_task, self.task, saved, self.alg.save())
        self.alg.load(saved, {"actor": True, "critic": True}, strict=True)
        self.progress.init_from = (
            f"{source_task.name} ({saved['infos']['progress']['env_steps'] / 1e6:.1f} M env steps)"
        )
        self._good = copy.deepcopy(self.alg.save())

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        progress = {k: v for k, v in self.progress.__dict__.items() if k != "init_from" or v}
        infos = {
            "progress": progress,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else None,
            "task": self.task.name,
        }
        self.runner.current_learning_iteration = self.progress.iteration
        tmp = directory / "model.pt.tmp"
        self.runner.save(str(tmp), infos=infos)
        os.replace(tmp, directory / "model.pt")
        save_env_state(self.vec.state, directory / "env_state.npz")
        rows = (
            json.dumps({k: _compact(v) for k, v in row.items()}, separators=(",", ":")) for row in self.progress.history
        )
        (directory / "progress.json").write_text("[\n" + ",\n".join(rows) + "\n]\n")  # a row per line
        plot_learning_curves(self.progress.history, directory / "learning_curves.png", self.task.name)
        return directory

    def load(self, directory: Path, env_state: bool = True) -> None:
        """Continue from a checkpoint directory written by ``save`` (``env_state=False``: weights
        and progress only, e.g. to export with fewer environments)."""
        infos = self.runner.load(str(directory / "model.pt"), map_location=self.device)
        if infos.get("task") != self.task.name:
            raise ValueError(f"{directory}: checkpoint of task {infos.get('task')!r}, not {self.task.name!r}")
        self.progress = Progress(**infos["progress"])
        if not self.progress.num_envs:  # checkpoints from before the field: the saved environments tell
            with np.load(directory / "env_state.npz") as saved:
                self.progress.num_envs = int(saved["step"].shape[0])
        if env_state:
            self.vec.state = load_env_state(self.vec.state, directory / "env_state.npz")
        torch.set_rng_state(infos["torch_rng"].cpu())  # map_location moved it to the training device
        if infos.get("cuda_rng") is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state_all([state.cpu() for state in infos["cuda_rng"]])
        self._good = copy.deepcopy(self.alg.save())


def _term_layout(terms: Sequence[ObsTerm]) -> list[tuple]:
    """What the networks' inputs are, less where the scan grid sits: a warm start may move the grid
    (stage 2's look-ahead scan) and the policy learns the new view; sizes, scales and clips must match."""
    return [(t.name, t.scale, t.clip, t.noise, {k: v for k, v in t.options.items() if k != "center"}) for t in terms]


def check_warm_start(source: TaskConfig, target: TaskConfig, saved: dict, current: dict) -> None:
    """Raise one ``ValueError`` naming every difference that makes ``saved`` (rsl_rl's checkpoint
    dict of task ``source``) unfit to warm-start ``target`` (whose fresh ``alg.save()`` is ``current``)."""
    problems = []
    if _term_layout(source.actor_terms) != _term_layout(target.actor_terms):
        problems.append("actor observation terms differ")
    if source.critic_extras != target.critic_extras:
        problems.append("critic observation terms differ")
    if (source.action_scale, source.action_clip, source.robot) != (
        target.action_scale,
        target.action_clip,
        target.robot,
    ):
        problems.append("action mapping or robot differs")
    for net in ("actor_state_dict", "critic_state_dict"):
        have = {k: tuple(v.shape) for k, v in saved[net].items()}
        want = {k: tuple(v.shape) for k, v in current[net].items()}
        if have != want:
            diff = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
            problems.append(f"{net.split('_')[0]} shapes differ ({', '.join(diff[:4])})")
    if problems:
        raise ValueError(f"cannot warm-start {target.name} from {source.name}: {'; '.join(problems)}")


# Data fields that mjx.step reads (everything else it recomputes from these).
_DATA_FIELDS = ("qpos", "qvel", "qacc_warmstart", "ctrl", "xfrc_applied", "time")


def save_env_state(state: EnvState, path: Path) -> None:
    arrays = {f"data.{k}": np.asarray(getattr(state.data, k)) for k in _DATA_FIELDS}
    for name, value in state._asdict().items():
        if name != "data":
            arrays[name] = np.asarray(jax.random.key_data(value) if _is_key(value) else value)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_env_state(like: EnvState, path: Path) -> EnvState:
    with np.load(path) as z:
        data = like.data.replace(**{k: jnp.asarray(z[f"data.{k}"]) for k in _DATA_FIELDS})
        fields: dict[str, Any] = {"data": data}
        for name, value in like._asdict().items():
            if name == "data":
                continue
            if z[name].shape != np.shape(value):
                raise ValueError(f"{path}: {name} has shape {z[name].shape}, the environment {np.shape(value)}")
            fields[name] = jnp.asarray(z[name], dtype=value.dtype)
    return EnvState(**fields)


def _compact(value: float) -> float:
    """Counts stay exact; measured floats keep 6 significant digits."""
    return value if float(value).is_integer() else float(f"{value:.6g}")


def _is_key(value: Any) -> bool:
    return hasattr(value, "dtype") and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)


def status_line(row: dict[str, float], progress: Progress) -> str:
    return (
        f"it {row['iteration']:5d}  steps {row['env_steps'] / 1e6:7.1f}M  "
        f"{row['env_steps_per_s'] / 1e3:6.0f}k steps/s  "
        f"reward/step {row['reward_per_step']:.4f}  episode {row['episode_length_s']:5.1f}s  "
        f"level {row['terrain_level']:4.2f}  fell {row['fell']:5.0f}  nan {row['exploded']:3.0f}  "
        f"std {row['action_std']:.2f}  lr {row['learning_rate']:.1e}  ({row['iteration_s']:.2f}s)"
    )


def plot_learning_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Reward per step, episode length, terrain level and tracking terms against env steps."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["env_steps"] for r in history]) / 1e6
    panels = [
        ("reward per step", ["reward_per_step"]),
        ("episode length (s)", ["episode_length_s"]),
        ("terrain level", ["terrain_level"]),
        ("tracking rewards (weighted, per step)", ["track_lin_vel_xy", "track_ang_vel_z"]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    for ax, (label, keys) in zip(axes.flat, panels, strict=True):
        for key in keys:
            values = np.array([r.get(key, math.nan) for r in history])
            ax.plot(steps, values, label=key if len(keys) > 1 else None)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("env steps (millions)")
    fig.suptitle(f"{title}: {steps[-1]:.1f} M env steps")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = [
    "Progress",
    "Trainer",
    "check_warm_start",
    "load_env_state",
    "plot_learning_curves",
    "save_env_state",
    "status_line",
]
