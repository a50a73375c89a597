"""The go2_walk bundle's facts (joint order, scales, defaults, gains) hold in closed loop.

Uses the graph-free loop (tests/bench/bare_loop.py) on the same physics as the MuJoCo HAL:
the bundle walks and stands; the same weights with the joints listed in MJCF order (what mapping
by index would do) fall. The full acceptance through the executor is tests/test_walk_graph.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("mujoco")

from krabgraph.nodes.assets import resolve_asset
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from tests.bench.bare_loop import BareLoop


def walk(bundle, vx: float, seconds: float = 5.0) -> dict[str, float]:
    """Body-frame mean velocity and minimum base height after the first second."""
    loop = BareLoop(bundle, "flat")
    loop.command.vx = vx
    v_body, heights = [], []
    for tick in range(round(seconds / 0.02)):
        loop.tick()
        if tick >= 50:
            st = loop.sim.read_state()
            v_body.append(st.base_lin_vel)
            heights.append(st.base_pos[2])
    v = np.mean(v_body, axis=0)
    return {"vx": float(v[0]), "vy": float(v[1]), "min_height": float(np.min(heights))}


def test_go2_walk_tracks_a_forward_command_in_mujoco():
    result = walk("go2_walk", vx=0.5)
    assert 0.35 < result["vx"] < 0.65, result
    assert abs(result["vy"]) < 0.1, result
    assert result["min_height"] > 0.25, result


def test_go2_walk_stands_still_on_a_zero_command():
    result = walk("go2_walk", vx=0.0, seconds=3.0)
    assert abs(result["vx"]) < 0.1 and abs(result["vy"]) < 0.1, result
    assert result["min_height"] > 0.25, result


def test_the_mjcf_joint_order_makes_the_robot_fall(tmp_path):
    """The same policy with its joints listed in MJCF order: what mapping by index would do."""
    data = yaml.safe_load((BUNDLES_DIR / "go2_walk" / "contract.yaml").read_text())
    data["joints"] = [f"{leg}_{part}_joint" for leg in ("FL", "FR", "RL", "RR") for part in ("hip", "thigh", "calf")]
    data["weights"] = str(resolve_asset(data["weights"]))
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(data))
    result = walk(path, vx=0.5)
    assert result["min_height"] < 0.2 or result["vx"] < 0.1, result
