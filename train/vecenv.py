"""rsl_rl's ``VecEnv`` over the MJX environment: tensors cross between JAX and torch through DLPack
(zero-copy on the GPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from krabgraph.train.config import SCAN_SHAPE
from krabgraph.train.env import EnvState, RoughEnv
from krabgraph.train.observations import mirror_map

ABDUCTION = ".*(_hip_joint|_HAA)"  # joints whose sign flips under the left-right mirror (Go2, ANYmal)


def to_torch(x: jax.Array) -> torch.Tensor:
    return torch.from_dlpack(x)


def to_jax(t: torch.Tensor) -> jax.Array:
    return jnp.from_dlpack(t.detach().contiguous())


class RslRlEnv(VecEnv):
    """The environment as rsl_rl sees it; ``state`` is the whole (checkpointable) JAX state."""

    def __init__(self, env: RoughEnv, state: EnvState, device: str):
        self.env = env
        self.state = state
        self.num_envs = env.num_envs
        self.num_actions = env.num_actions
        self.max_episode_length = env.max_steps
        self.device = device
        self.cfg = {}
        self.episode_length_buf = torch.zeros(env.num_envs, dtype=torch.long, device=device)
        self.push_scale = 0.0
        self.obs_mirror = {
            group: tuple(
                torch.as_tensor(a, device=device)
                for a in mirror_map(env.obs_names(critic), env.joints, ABDUCTION, SCAN_SHAPE)
            )
            for group, critic in (("policy", False), ("critic", True))
        }
        perm, signs = mirror_map([("last_action", env.num_actions)], env.joints, ABDUCTION, SCAN_SHAPE)
        self.action_mirror = (torch.as_tensor(perm, device=device), torch.as_tensor(signs, device=device))

    def get_observations(self) -> TensorDict:
        actor, critic = self.env.observe(self.state)
        return TensorDict({"policy": to_torch(actor), "critic": to_torch(critic)}, batch_size=[self.num_envs])

    def step(self, actions: torch.Tensor):
        self.state, out = self.env.step(self.state, to_jax(actions), self.push_scale)
        obs = self.get_observations()
        self.episode_length_buf = to_torch(self.state.step).long()
        done = out.done
        extras = {
            "time_outs": to_torch(out.time_out),
            "log": {f"/reward/{name}": to_torch(value).mean() for name, value in out.terms.items()},
            "events": out,
        }
        return obs, to_torch(out.reward), to_torch(done), extras


__all__ = ["RslRlEnv", "to_jax", "to_torch"]
