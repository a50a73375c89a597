"""Terrain generators: determinism per seed, clear start area, known geometry."""

from __future__ import annotations

import itertools

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


COURSE = [  # the default parkour course, in order: (kind, name, size in m)
    ("step", "0.15 m step-up", 0.15),
    ("box", "0.20 m box", 0.20),
    ("gap", "0.30 m gap", 0.30),
    ("hurdle", "0.15 m hurdle", 0.15),
    ("box", "0.30 m box", 0.30),
    ("gap", "0.50 m gap", 0.50),
]


def _profile(t: Terrain, y: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ground height along x at ``y``, every millimetre from the start to past the deck's end."""
    xs = np.arange(0.0, t.finish_x + 4.0, 0.001)
    return xs, t.height_at(xs, np.full_like(xs, y))


def _features(t: Terrain) -> tuple[list[float], list[float]]:
    """Measured from the ground profile alone: every rise or drop (m) along +x, and the length (m) of
    each stretch of pit floor between decks (the end of the deck excluded)."""
    xs, h = _profile(t)
    d = np.diff(h)
    rises = [round(float(v), 6) for v in d[np.abs(d) > 1e-9]]
    pit = np.flatnonzero(h == t.floor_z)
    runs = np.split(pit, np.flatnonzero(np.diff(pit) > 1) + 1)
    gaps = [round(float(xs[r[-1]] - xs[r[0]] + 0.001), 3) for r in runs if len(r) and r[-1] < len(xs) - 1]
    return rises, gaps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parkour_default_course_in_order_with_its_sizes_on_a_4_m_deck(seed):
    t = make_terrain("parkour", seed=seed)
    assert [(o.kind, o.name, o.size) for o in t.obstacles] == COURSE
    rises, gaps = _features(t)
    #  step  box up, down  gap: drop, climb  hurdle     box up, down  gap: drop, climb  end of the deck
    assert rises == [0.15, 0.2, -0.2, -0.65, 0.65, 0.15, -0.15, 0.3, -0.3, -0.65, 0.65, -0.65]
    assert gaps == [0.3, 0.5]
    starts = [o.x0 for o in t.obstacles]
    assert 1.3 <= starts[0] <= 1.7 and starts == sorted(starts)
    for before, after in itertools.pairwise(t.obstacles):  # 1.5 +- 0.2 m of flat deck between obstacles
        assert 1.3 <= after.x0 - before.x1 <= 1.7
    for o in t.obstacles:  # the data matches the geometry
        mid, level = (o.x0 + o.x1) / 2 + 0.01 * (o.kind == "step"), o.deck_z
        expected = {"step": level + o.size, "box": level + o.size, "gap": t.floor_z, "hurdle": level + o.size}[o.kind]
        assert t.height_at(mid, 0.0) == pytest.approx(expected)
        assert t.height_at(o.x0 - 0.01, 0.0) == pytest.approx(level)
    assert t.obstacles[2].x1 - t.obstacles[2].x0 == pytest.approx(0.3)
    assert t.obstacles[1].x1 - t.obstacles[1].x0 == pytest.approx(1.0)  # box_length
    assert 1.3 <= t.finish_x - t.obstacles[-1].x1 <= 1.7
    assert t.height_at(t.finish_x + 2.9, 0.0) == pytest.approx(0.15)  # 3 m of deck past the finish line
    # 4 m wide everywhere on the course; beside it the pit floor, 0.5 m below the start
    xs = np.arange(-1.9, t.finish_x, 0.05)
    deck = t.height_at(xs, np.zeros_like(xs))
    for y in (-1.99, 1.99):
        np.testing.assert_array_equal(t.height_at(xs, np.full_like(xs, y)), deck)
    for y in (-2.01, 2.01):
        np.testing.assert_array_equal(t.height_at(xs, np.full_like(xs, y)), -0.5)
    assert t.floor_z == -0.5


def test_parkour_hard_raises_heights_and_gap_lengths_by_half():
    normal, hard = make_terrain("parkour", seed=4), make_terrain("parkour", seed=4, difficulty="hard")
    assert [o.size for o in hard.obstacles] == pytest.approx([1.5 * o.size for o in normal.obstacles])
    assert [o.name for o in hard.obstacles][:3] == ["0.225 m step-up", "0.30 m box", "0.45 m gap"]
    (rises_n, gaps_n), (rises_h, gaps_h) = _features(normal), _features(hard)
    assert gaps_h == pytest.approx([1.5 * g for g in gaps_n]) == [0.45, 0.75]
    # steps, boxes and hurdles 1.5 x higher; the pit stays 0.5 m below the start
    assert rises_h == pytest.approx(
        [0.225, 0.3, -0.3, -0.725, 0.725, 0.225, -0.225, 0.45, -0.45, -0.725, 0.725, -0.725]
    )
    assert rises_n[:3] == pytest.approx([r / 1.5 for r in rises_h[:3]])
    assert hard.params["difficulty"] == "hard" and hard.floor_z == normal.floor_z == -0.5


def test_parkour_seed_moves_only_positions():
    courses = [make_terrain("parkour", seed=s) for s in range(5)]
    nominal = make_terrain("parkour", jitter=0.0)
    assert [o.x0 for o in nominal.obstacles] == pytest.approx([1.5, 3.0, 5.5, 7.3, 8.85, 11.35])
    for t in courses:
        assert _features(t) == _features(courses[0])  # same heights, drops and gap lengths
        assert [(o.name, o.size, round(o.x1 - o.x0, 9)) for o in t.obstacles] == [
            (o.name, o.size, round(o.x1 - o.x0, 9)) for o in nominal.obstacles
        ]
        for i, (o, n) in enumerate(zip(t.obstacles, nominal.obstacles, strict=True)):
            assert abs(o.x0 - n.x0) <= 0.2 * (i + 1) + 1e-9  # each run-up moved by at most 0.2 m
    assert len({t.obstacles[0].x0 for t in courses}) == 5 and len({t.finish_x for t in courses}) == 5


def test_parkour_course_and_difficulty_from_parameters():
    t = make_terrain("parkour", course=[["gap", 0.4], ["hurdle", 0.1]], jitter=0.0, run_up=1.0, start=1.0)
    assert [o.kind for o in t.obstacles] == ["gap", "hurdle"]
    assert [(o.x0, o.x1, o.size) for o in t.obstacles] == [
        pytest.approx(v) for v in [(1.0, 1.4, 0.4), (2.4, 2.45, 0.1)]
    ]
    assert t.finish_x == pytest.approx(3.45)
    with pytest.raises(TerrainError, match="difficulty must be one of normal, hard"):
        make_terrain("parkour", difficulty="insane")
    with pytest.raises(TerrainError, match="course items are"):
        make_terrain("parkour", course=[["wall", 0.2]])
    with pytest.raises(TerrainError, match="size must be > 0"):
        make_terrain("parkour", course=[["box", -0.2]])


@pytest.mark.parametrize("kind", [k for k in TERRAIN_KINDS if k != "parkour"])
def test_only_parkour_has_obstacles_and_a_finish_line(kind):
    t = make_terrain(kind)
    assert t.obstacles == () and t.finish_x is None


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
