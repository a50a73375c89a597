"""Sim-to-sim acceptance (krabgraph.train.acceptance) through graphs/walk.yaml in MuJoCo.

The slow tests hold the perceptive ``go2_rough`` bundle (walk.yaml's policy) to every acceptance
row of docs/training.md. The harness itself is also exercised with the blind ``go2_walk``.
"""

from __future__ import annotations

import math

import pytest

from krabgraph.launch import build_graph

pytest.importorskip("mujoco")

from krabgraph.train import acceptance as acc

ROUGH = "go2_rough"


def _assert_passed(rows: list[acc.Row]) -> None:
    failed = [r for r in rows if not r.passed]
    assert not failed, "\n" + acc.render_markdown(failed, ROUGH)


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(acc.FLAT_PHASES))
def test_rough_policy_tracks_flat_ground_commands(phase):
    _assert_passed([acc.flat_row(ROUGH, phase)])


@pytest.mark.slow
def test_rough_policy_heading_drift():
    _assert_passed(acc.drift_rows(ROUGH))


@pytest.mark.slow
@pytest.mark.parametrize("row", ["stairs", "boxes"])
def test_rough_policy_crosses_terrain_without_falling(row):
    _assert_passed(acc.terrain_rows(ROUGH, row))


@pytest.mark.slow
def test_rough_policy_survives_a_push():
    _assert_passed(acc.push_rows(ROUGH))


def test_rough_bundle_gets_the_height_scan():
    decl = acc.acceptance_graph(ROUGH, [[1.0, 0.0, 0.0, 0.0]], 1.0)
    assert decl.nodes["policy"].inputs["height_scan"] == "hal/height_scan"


def test_harness_measures_the_flat_phase_with_go2_walk():
    row = acc.flat_row("go2_walk", "forward 0.5")
    # go2_walk walks at ~0.44 m/s here (README); the figure is a mean over the last 5 s of the phase
    assert math.isfinite(row.value) and 0.3 < row.value < 0.6
    assert row.passed == (abs(row.value - 0.5) <= 0.1)
    t0, t1 = row.window
    end = acc.STAND_S + acc.FLAT_PHASE_S
    assert t0 == pytest.approx(end - acc.FLAT_MEASURE_S, abs=0.021) and t1 == pytest.approx(end, abs=0.021)
    assert "fell" not in row.notes
    table = acc.render_markdown([row], "go2_walk")
    assert "| flat forward 0.5 | vx 0.5 | vx 0." in table and table.count("\n") == 5


def test_harness_wiring_and_overrides():
    scan_contract = "go2_rough"  # a contract with a height_scan term (a Go2 one: the graph's robot is go2)
    assert acc.needs_height_scan(scan_contract) and not acc.needs_height_scan("go2_walk")
    graph = build_graph(acc.acceptance_graph(scan_contract, [[1.0, 0.0, 0.0, 0.0]], 1.0, steer="line"))
    assert graph.nodes["policy"].inputs["height_scan"] == "hal/height_scan"  # wired, and the graph validates
    decl = acc.acceptance_graph(
        "go2_walk", [[2.0, 0.0, 0.0, 0.0], [5.0, 0.5, 0.0, 0.0]], 7.0, terrain="stairs",
        terrain_params=acc.STAIRS_PARAMS, seed=3, push=(4.0, (0.0, 30.0, 0.0), 0.1), steer="line",
    )  # fmt: skip
    hal, command = decl.nodes["hal"].params, decl.nodes["command"]
    assert "height_scan" not in decl.nodes["policy"].inputs
    assert (hal["terrain"], hal["seed"], hal["terrain_params"]) == ("stairs", 3, acc.STAIRS_PARAMS)
    assert (hal["push_at_s"], hal["push_impulse"], hal["push_duration_s"]) == (4.0, [0.0, 30.0, 0.0], 0.1)
    assert command.class_ref is acc.SteeredSchedule and command.inputs["state"] == "hal/state"
    assert command.params["schedule"] == [[2.0, 0.0, 0.0, 0.0], [5.0, 0.5, 0.0, 0.0]]
    with pytest.raises(ValueError, match="unknown row"):
        acc.run_acceptance("go2_walk", ["gallop"])


def test_terrain_windows_lie_on_the_terrain():
    """The stairs course and the box field are long enough for 20 s at up to 0.6 m/s from where the
    measured window starts."""
    for row in ("stairs", "boxes"):
        kind, params, _ = acc.terrain_spec(row, acc.PROFILES["go2"].riser)
        for seed in acc.SEEDS:
            x0, x1, _, _ = acc.course_extent(acc.make_terrain(kind, seed=seed, **params))
            assert x1 - x0 >= 0.6 * acc.TERRAIN_WINDOW_S, (row, seed)
