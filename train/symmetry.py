"""Left-right mirrored samples for rsl_rl's symmetry extension (``data_augmentation_func``).

The mirror maps come from the observation term names (``observations.mirror_map``): no hand-made
index lists. Every mini-batch gets its mirror image appended, so the policy learns a gait that
turns as much left as right: the cure for heading drift at zero yaw command.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict


def augment(env, obs: TensorDict | None = None, actions: torch.Tensor | None = None):
    """rsl_rl's signature: returns ``(obs, actions)``, each the original batch followed by its mirror."""
    out_obs = out_actions = None
    if obs is not None:
        mirrored = {group: obs[group][..., perm] * signs for group, (perm, signs) in env.obs_mirror.items()}
        out_obs = TensorDict(
            {group: torch.cat([obs[group], mirrored[group]]) for group in env.obs_mirror},
            batch_size=[obs.batch_size[0] * 2],
        )
    if actions is not None:
        perm, signs = env.action_mirror
        out_actions = torch.cat([actions, actions[..., perm] * signs])
    return out_obs, out_actions


__all__ = ["augment"]
