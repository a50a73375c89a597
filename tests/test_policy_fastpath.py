"""The policy hot path's array shortcuts (issue 16) against plain NumPy on many random inputs.

The clip bounds held as arrays (the global observation clip, the action clip's upper bound) and the
long-vector finiteness check must give exactly what ``np.clip`` and ``np.isfinite`` give: values far
beyond either bound, at the bounds, and NaN/inf anywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from krabgraph.nodes.policy import ActionError, ObservationBuilder, load_contract
from krabgraph.nodes.policy.observations import _all_finite


@pytest.mark.parametrize("size", [1, 12, 45, 96, 97, 235, 1000])
def test_all_finite_agrees_with_isfinite(size):
    rng = np.random.default_rng(size)
    seen = set()
    for trial in range(300):
        values = rng.normal(0, 10.0 ** rng.integers(-300, 300), size)
        for _ in range(trial % 3):
            values[rng.integers(0, size)] = (math.nan, math.inf, -math.inf)[rng.integers(0, 3)]
        want = bool(np.isfinite(values).all())
        assert _all_finite(values) == want, trial
        seen.add(want)
    assert seen == {True, False}


def test_global_clip_gives_what_np_clip_gives():
    builder = ObservationBuilder(load_contract("go2_walk"))  # obs clip ±100, one step per term
    lo, hi = builder.contract.obs_clip
    rng = np.random.default_rng(3)
    out = np.empty(builder.dim, dtype=np.float32)
    clipped = 0
    for _ in range(300):
        step = rng.normal(0, 10.0 ** rng.integers(0, 5), builder.dim)
        step[rng.integers(0, builder.dim)] = (lo, hi, -1e300, 1e300)[rng.integers(0, 4)]
        want = np.clip(step * builder._scale, lo, hi).astype(np.float32)
        builder._finish_into(step.copy(), out)
        assert out.tobytes() == want.tobytes()
        clipped += int((np.abs(want) == hi).sum())
    assert clipped > 300  # the bounds were met often, not just once


def test_action_clip_gives_what_np_clip_gives():
    actions = load_contract("go2_walk").actions
    assert actions.clip is not None
    lo, hi = actions.clip
    rng = np.random.default_rng(5)
    action, targets = np.empty(12), np.empty(12)
    for step in range(300):
        raw = rng.normal(0, 2 * hi, 12).astype(np.float32)
        raw[step % 12] = (lo, hi, np.float32(3e38), -np.float32(3e38), math.nan)[step % 5]
        if step % 5 == 4:
            with pytest.raises(ActionError, match="non-finite actions"):
                actions.process_into(raw, action, targets)
            continue
        actions.process_into(raw, action, targets)
        want = np.clip(raw.astype(np.float64), lo, hi)
        assert action.tobytes() == want.tobytes(), step
        assert targets.tobytes() == (actions.offset + actions.scale * want).tobytes(), step
