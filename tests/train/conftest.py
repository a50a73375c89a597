"""Shared pieces of the trainer tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def reward_inputs() -> Callable:
    """``make(**fields)``: reward inputs of a Go2 at rest in its default pose on flat ground (zero
    command, level, feet on the ground, knees 10 cm up), with ``fields`` replaced."""
    jnp = pytest.importorskip("jax.numpy")
    from krabgraph.train import rewards

    n = 12
    zeros = jnp.zeros(n)
    base = rewards.RewardInputs(
        command=jnp.zeros(3),
        lin_vel=jnp.zeros(3),
        ang_vel=jnp.zeros(3),
        gravity=jnp.array([0.0, 0.0, -1.0]),
        joint_pos=zeros,
        joint_vel=zeros,
        last_joint_vel=zeros,
        default_joint_pos=zeros,
        lower=-jnp.ones(n),
        upper=jnp.ones(n),
        tau=zeros,
        action=zeros,
        last_action=zeros,
        air_time=jnp.zeros(4),
        first_contact=jnp.zeros(4, bool),
        knee_clearance=jnp.full(4, 0.1),
        dt=0.02,
    )
    return lambda **fields: base._replace(**fields)
