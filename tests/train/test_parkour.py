"""Stage 2 (go2_parkour) on the CPU: tile geometry, scan agreement on parkour tiles, the parkour
reward terms, and the warm start from go2_rough followed by one training iteration and an export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from krabgraph.nodes.mujoco.heightfield import PARKOUR_DIFFICULTY, parkour_obstacles, parkour_tiles  # noqa: E402
from krabgraph.train import rewards  # noqa: E402
from krabgraph.train.config import SCAN_OFFSET, SCAN_RESOLUTION, SCAN_SIZE, get_task  # noqa: E402
from krabgraph.train.terrain import edge_mask, height_scan, on_edge, terrain_arrays  # noqa: E402

ROUGH_CHECKPOINT = Path(__file__).resolve().parents[2] / "train" / "checkpoints" / "go2_rough" / "model.pt"


def _path_profile(grid, row: int, col: int, step: float = 0.001) -> tuple[np.ndarray, np.ndarray]:
    """Heights along the path a robot walking +x from the tile's spawn point takes (0.3 m off axis)."""
    cx, cy, _ = grid.centers[row, col]
    xs = np.arange(cx - 0.5, cx + grid.tile_size - 1.5, step)
    return xs, grid.field.height_at(xs, np.full_like(xs, cy + 0.3))


def test_parkour_tiles_grow_with_the_row_and_lie_across_the_path():
    kinds = ("box_up", "box_down", "gap", "hurdle", "stepping_stones")
    grid = parkour_tiles(0, rows=10, kinds=kinds)
    for row in (0, 5, 9):
        d = row / 9
        size = {k: lo + d * (hi - lo) for k, (lo, hi) in PARKOUR_DIFFICULTY.items()}
        for col, kind in enumerate(kinds):
            xs, h = _path_profile(grid, row, col)
            assert grid.centers[row, col, 2] == pytest.approx(h[np.searchsorted(xs, grid.centers[row, col, 0])])
            spawn = np.abs(xs - grid.centers[row, col, 0]) <= 0.5
            assert np.ptp(h[spawn]) == 0.0  # the spawn area is flat
            if kind == "box_up":
                assert h.max() == pytest.approx(size["box_up"], abs=1e-6)
                crossings = np.count_nonzero(np.diff((h > size["box_up"] / 2).astype(int)) == 1)
            elif kind == "box_down":
                assert h[spawn].max() == pytest.approx(size["box_down"], abs=1e-6) and h.min() == 0.0
                crossings = np.count_nonzero(np.diff((h < size["box_down"] / 2).astype(int)) == 1)
            elif kind == "hurdle":
                assert h.max() == pytest.approx(size["hurdle"], abs=1e-6)
                crossings = np.count_nonzero(np.diff((h > 0.01).astype(int)) == 1)
            else:  # gap, stepping_stones: pits 1 m deep
                assert h.min() == pytest.approx(-1.0)
                crossings = np.count_nonzero(np.diff((h < -0.01).astype(int)) == 1)
            assert crossings >= (1 if kind == "stepping_stones" else 3), (kind, row)
            if kind == "gap":  # below the deck over exactly the nominal width, rounded to the grid
                below = h < -1e-6
                starts, ends = (
                    np.flatnonzero(np.diff(below.astype(int)) == 1),
                    np.flatnonzero(np.diff(below.astype(int)) == -1),
                )
                widths = (ends[: len(starts)] - starts[: len(ends)]) * 0.001
                assert widths == pytest.approx(round(size["gap"] / 0.05) * 0.05, abs=0.003)
    assert parkour_obstacles("gap", 1.0, 8.0)[0][1] - parkour_obstacles("gap", 1.0, 8.0)[0][0] == pytest.approx(0.80)
    with pytest.raises(ValueError, match="unknown tile kind"):
        parkour_tiles(0, rows=2, kinds=("gap", "lava"))


def test_scan_matches_the_cpu_hal_raycast_on_parkour_tiles():
    """The trainer's look-ahead scan (go2_parkour's grid centre) on the runtime's ``parkour_tiles``
    terrain against the HAL's ray cast with the same centre."""
    from krabgraph.nodes.mujoco.physics import MujocoRobotSim
    from krabgraph.nodes.mujoco.sensors import HeightScanner
    from krabgraph.nodes.mujoco.terrain import make_terrain
    from krabgraph.nodes.robots import load_robot

    terrain = make_terrain("parkour_tiles", rows=2)
    grid = parkour_tiles(0, rows=2)
    assert np.array_equal(terrain.heightfield.heights, grid.field.heights)
    assert terrain.height_at(0.0, 0.0) == 0.0  # the robot starts on the box_up tile's start platform
    sim = MujocoRobotSim(load_robot("go2"), terrain)
    center = get_task("go2_parkour").scan_center
    assert center[0] > 0.3  # a look-ahead grid
    scanner = HeightScanner(sim.scene, SCAN_SIZE, SCAN_RESOLUTION, SCAN_OFFSET, center=center)
    arrays = terrain_arrays(grid, SCAN_SIZE, SCAN_RESOLUTION, edges=True, scan_center=center)
    rng = np.random.default_rng(0)
    worst, worst_edge, uneven = 0.0, 0.0, 0
    for i in range(20):  # along the obstacle courses of both rows
        row, col = i % 2, (i // 2) % len(grid.kinds)
        cx, cy, _ = grid.centers[row, col]
        pose = (cx + rng.uniform(1.0, 5.0), cy + rng.uniform(-1.0, 1.0), rng.uniform(-np.pi, np.pi))
        sim.reset(pose)
        cpu = scanner.scan(sim.data).reshape(-1)
        base = sim.data.xpos[sim.scene.base_body]
        args = (arrays.heights, arrays.scan_xy, jnp.asarray(base), jnp.asarray(pose[2]), SCAN_OFFSET)
        error = np.abs(cpu - np.asarray(height_scan(grid, *args)))
        c, s = np.cos(pose[2]), np.sin(pose[2])
        px, py = np.asarray(arrays.scan_xy).T
        edge = np.asarray(on_edge(grid, arrays.edges, base[0] + c * px - s * py, base[1] + s * px + c * py))
        worst = max(worst, float(error[~edge].max()))
        worst_edge = max(worst_edge, float(error.max()))
        uneven += int(np.ptp(cpu) > 0.1)
    assert worst < 0.01
    # on the one-sample ramps (slopes up to 20) the HAL's rays, fanned from 1000 m above the base,
    # land up to ~1.3 mm off the lookup point: a few cm of height there
    assert worst_edge < 0.05
    assert uneven >= 10


def test_parkour_reward_terms(reward_inputs):
    walking = dict(
        command=jnp.array([0.8, 0.0, 0.0]),
        lin_vel=jnp.array([0.8, 0.0, 0.0]),
        heading_error=jnp.float32(0.0),
        feet_edge=jnp.array([True, False, True, False]),
        penetration=jnp.float32(0.07),
    )

    def _inputs(**changes):
        return reward_inputs(**(walking | changes))

    t = rewards.TERMS
    assert float(t["track_lin_vel_dir"](_inputs())) == pytest.approx(1.0)
    assert float(t["track_lin_vel_dir"](_inputs(lin_vel=jnp.array([1.6, 0.3, 0.0])))) == pytest.approx(1.0)  # faster
    assert float(t["track_lin_vel_dir"](_inputs(lin_vel=jnp.array([0.4, 0.5, 0.0])))) == pytest.approx(0.5)
    assert float(t["track_lin_vel_dir"](_inputs(lin_vel=jnp.array([-0.4, 0.0, 0.0])))) == 0.0
    assert float(t["track_lin_vel_dir"](_inputs(command=jnp.zeros(3)))) == 0.0
    assert float(t["track_heading"](_inputs())) == pytest.approx(1.0)
    assert float(t["track_heading"](_inputs(heading_error=jnp.float32(-0.5)))) == pytest.approx(np.exp(-0.5))
    assert float(t["feet_edge"](_inputs())) == 2.0
    assert float(t["body_penetration"](_inputs())) == pytest.approx(0.07)
    step = np.zeros((5, 8), np.float32)
    step[:, 4:] = 0.2  # a box edge between columns 3 and 4
    mask = edge_mask(step)
    assert mask[:, 2:6].all() and not mask[:, :2].any() and not mask[:, 6:].any()


def test_warm_start_from_go2_rough_then_train_and_export(tmp_path):
    """go2_parkour (8 environments, the full networks) takes go2_rough's actor, critic and
    normalizers with a fresh optimizer, trains an iteration on parkour tiles and exports a bundle."""
    from krabgraph.nodes.policy.contract import load_contract
    from krabgraph.train.export import export_bundle
    from krabgraph.train.runner import Trainer, check_warm_start

    rough, parkour = get_task("go2_rough"), get_task("go2_parkour")
    assert parkour.init_from == "go2_rough"
    # the same inputs but a look-ahead scan grid: the warm start keeps the networks, the policy relearns the view
    assert [t.name for t in parkour.actor_terms] == [t.name for t in rough.actor_terms]
    assert rough.scan_center == (0.0, 0.0) and parkour.scan_center[0] > 0.3
    task = replace(parkour.smoke(), ppo=replace(parkour.smoke().ppo, hidden_dims=parkour.ppo.hidden_dims))
    trainer = Trainer(task)
    fresh_lr = trainer.alg.learning_rate
    trainer.init_from(ROUGH_CHECKPOINT, rough)
    saved = torch.load(ROUGH_CHECKPOINT, map_location="cpu", weights_only=False)
    now = trainer.alg.save()
    for net in ("actor_state_dict", "critic_state_dict"):
        assert now[net].keys() == saved[net].keys()
        for name, value in saved[net].items():
            torch.testing.assert_close(now[net][name], value, rtol=0, atol=0)
    assert now["optimizer_state_dict"]["state"] == {} and trainer.alg.learning_rate == fresh_lr
    assert trainer.progress.iteration == 0 and "go2_rough" in trainer.progress.init_from

    row = trainer.iteration()
    assert np.isfinite(row["reward_per_step"]) and row["exploded"] == 0
    assert {"feet_edge", "body_penetration", "track_heading"} <= row.keys()
    out = export_bundle(task, trainer.runner, trainer.progress, tmp_path / "bundle")
    contract = load_contract(out / "contract.yaml")
    assert contract.name == "go2_parkour" and contract.obs_dim == 232
    assert "go2_rough" in contract.provenance["init_from"]
    (scan,) = [t for t in contract.observations if t.name == "height_scan"]
    assert scan.options["center"] == parkour.scan_center  # the runtime checks every scan against it

    with pytest.raises(ValueError, match="actor shapes differ"):  # the smoke task's small networks
        nets = ("actor_state_dict", "critic_state_dict")
        small = {k: {n: v[..., :1] if v.ndim else v for n, v in saved[k].items()} for k in nets}
        check_warm_start(rough, parkour, small, now)
    with pytest.raises(ValueError, match="actor observation terms differ"):
        check_warm_start(replace(rough, actor_terms=rough.actor_terms[:-1]), parkour, saved, now)


def test_free_command_tiles_keep_stage_one_commands_without_the_heading_hold():
    """On go2_parkour's stage-1 columns (``Commands.free_kinds``) commands come from stage 1's ranges
    (backward, sideways, turning) and the yaw command is not replaced by the heading hold."""
    from krabgraph.train.env import RoughEnv

    task = get_task("go2_parkour").smoke()
    env = RoughEnv(task)
    free_col = env.grid.kinds.index("rough")
    park_col = env.grid.kinds.index("gap")
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    free = np.asarray(jax.vmap(lambda k: env._sample_command(k, free_col))(keys))
    park = np.asarray(jax.vmap(lambda k: env._sample_command(k, park_col))(keys))
    lo = task.commands.free.vx[0]
    assert free[:, 0].min() < 0.5 * lo and park[:, 0][park[:, 0] != 0].min() >= task.commands.vx[0]
    assert np.abs(free[:, 1]).max() > 0.4 and np.abs(park[:, 1]).max() <= task.commands.vy[1]
    yaw = jnp.float32(0.5)  # heading error -0.5 rad: the hold turns right at 0.5 rad/s
    i = int(np.flatnonzero(np.any(park != 0, axis=1) & np.any(free != 0, axis=1))[0])  # neither standing
    held = np.asarray(env._hold_heading(jnp.asarray(park[i]), yaw, park_col))
    kept = np.asarray(env._hold_heading(jnp.asarray(free[i]), yaw, free_col))
    assert held[2] == pytest.approx(-0.5) and kept[2] == pytest.approx(free[i][2])
    # nor is a turning robot there rewarded for holding the heading (the heading error is 0)
    from mujoco import mjx

    data, contact = mjx.make_data(env.model), jnp.zeros(4, bool)
    error = {
        c: float(env._parkour_inputs(env.arrays, data, contact, yaw, c)["heading_error"]) for c in (park_col, free_col)
    }
    assert error == {park_col: pytest.approx(-0.5), free_col: 0.0}


def test_body_penetration_samples_the_calves_every_quarter():
    """A calf whose knee is 0.5 m above the ground and whose foot is 0.5 m below it (the foot itself
    is not a penetration point) pays for its lower quarter point, 0.25 m deep: a bar thinner than
    the old knee-to-mid spacing cannot hide between the samples."""
    from mujoco import mjx

    from krabgraph.train.env import CALF_POINTS, RoughEnv

    env = RoughEnv(get_task("go2_parkour").smoke())
    tm = env.tm
    x, y, z = (float(v) for v in env.arrays.centers[0, 0])  # a flat spawn platform
    data = mjx.make_data(env.model)
    lifted = np.asarray(data.xpos).copy()
    lifted[:] = (x, y, z + 2.0)  # every body high above the ground
    feet = np.asarray(data.geom_xpos).copy()
    feet[:] = (x, y, z + 2.0)
    knee, foot = tm.calf_bodies[0], tm.foot_geoms[0]
    lifted[knee] = (x, y, z + 0.5)
    feet[foot] = (x, y, z - 0.5)
    qpos = np.asarray(data.qpos).copy()
    qpos[:3] = (x, y, z + 2.0)
    data = data.replace(xpos=jnp.asarray(lifted), geom_xpos=jnp.asarray(feet), qpos=jnp.asarray(qpos))
    out = env._parkour_inputs(env.arrays, data, jnp.zeros(4, bool), jnp.float32(0.0), 0)
    expected = sum(max(0.0, f - 0.5) for f in CALF_POINTS)  # depth of points at z 0.5 - f above the ground
    assert CALF_POINTS == (0.25, 0.5, 0.75) and float(out["penetration"]) == pytest.approx(expected, abs=1e-3)
    assert expected == pytest.approx(0.25)
