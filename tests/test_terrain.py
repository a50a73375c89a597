"""Terrain generators: determinism per seed, clear start area, known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from krabgraph.nodes.mujoco.terrain import TERRAIN_KINDS, Box, Terrain, TerrainError, make_terrain


@pytest.mark.parametrize("kind", ["steps", "parkour"])
def test_same_seed_same_terrain_other_seed_differs(kind):
    a, b, c = make_terrain(kind, seed=3), make_terrain(kind, seed=3), make_terrain(kind, seed=4)
    assert a.boxes == b.boxes and len(a.boxes) > 0
    assert a.boxes != c.boxes


@pytest.mark.parametrize("kind", TERRAIN_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_start_area_is_flat_ground(kind, seed):
    t = make_terrain(kind, seed=seed)
    xs, ys = np.meshgrid(np.linspace(-0.45, 0.45, 10), np.linspace(-0.45, 0.45, 10))
    np.testing.assert_array_equal(t.height_at(xs, ys), 0.0)


def test_stairs_heights_go_up_then_down():
    t = make_terrain("stairs", step_height=0.1, step_width=0.3, step_count=3, start=1.0, landing=1.0)
    xs = [0.9, 1.15, 1.45, 1.75, 2.5, 3.05, 3.35, 3.65, 3.95]
    np.testing.assert_allclose([t.height_at(x, 0.0) for x in xs], [0, 0.1, 0.2, 0.3, 0.3, 0.2, 0.1, 0.0, 0.0])
    assert all(b.center[2] - b.half_size[2] == pytest.approx(0.0) for b in t.boxes)  # boxes stand on the ground


def test_step_field_heights_bounded_by_max_height():
    t = make_terrain("steps", seed=0, max_height=0.05)
    tops = np.array([b.top for b in t.boxes])
    assert tops.max() <= 0.05 and tops.min() > 0 and len(set(tops.round(6))) > 100


def test_parkour_has_pits_below_deck():
    t = make_terrain("parkour", seed=0)
    assert t.floor_z == -0.5
    assert t.height_at(0.0, 5.0) == -0.5  # beside the course: the pit
    xs = np.linspace(1.0, 12.0, 500)
    heights = t.height_at(xs, np.zeros_like(xs))
    assert heights.max() > 0.04 and heights.min() >= -0.5


def test_height_at_takes_highest_box():
    t = Terrain("custom", 0, (Box((0, 0, 0.05), (1, 1, 0.05)), Box((0.5, 0, 0.1), (0.1, 0.1, 0.1))))
    assert t.height_at(0.5, 0.0) == pytest.approx(0.2)
    assert t.height_at(-0.5, 0.0) == pytest.approx(0.1)
    assert t.height_at(3.0, 0.0) == 0.0


def test_unknown_kind_and_parameter():
    with pytest.raises(TerrainError, match="unknown terrain 'lava'; choose one of: flat, stairs, steps, parkour"):
        make_terrain("lava")
    with pytest.raises(TerrainError, match=r"terrain 'steps'.*unexpected keyword argument 'step_height'"):
        make_terrain("steps", step_height=0.1)


def test_stairs_course_repeats_flights_over_its_length_and_the_seed_varies_it():
    params = dict(step_height=0.1, step_count=4, step_width_range=(0.25, 0.35), start_jitter=0.5, length=12.0)
    a, b, c = (make_terrain("stairs", seed=s, **params) for s in (0, 0, 1))
    assert a.boxes == b.boxes and a.boxes != c.boxes
    for t in (a, c):
        x0 = min(box.center[0] - box.half_size[0] for box in t.boxes)
        x1 = max(box.center[0] + box.half_size[0] for box in t.boxes)
        assert 1.0 <= x0 <= 1.5 and x1 - x0 >= 12.0
        treads = [2 * box.half_size[0] for box in t.boxes if box.top < 0.4 - 1e-9]  # all but the landings
        assert min(treads) >= 0.25 and max(treads) <= 0.35
        xs = np.arange(x0 - 0.5, x1 + 0.5, 0.01)
        heights = t.height_at(xs, np.zeros_like(xs))
        rises = np.diff(heights)[np.abs(np.diff(heights)) > 1e-9]
        np.testing.assert_allclose(np.abs(rises), 0.1)  # every riser 10 cm, up and down
        assert heights.max() == pytest.approx(0.4) and heights[0] == heights[-1] == 0.0
        assert (rises > 0).sum() >= 3 * 4  # at least 3 flights of 4 steps up
    assert make_terrain("stairs", seed=5).boxes == make_terrain("stairs", seed=6).boxes  # defaults: no randomness


def test_stairs_course_parameters_are_checked():
    with pytest.raises(TerrainError, match="needs descend"):
        make_terrain("stairs", length=10.0, descend=False)
    with pytest.raises(TerrainError, match="step_width_range"):
        make_terrain("stairs", step_width_range=(0.3, 0.2))
