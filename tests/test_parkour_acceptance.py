"""The parkour acceptance harness (krabgraph.train.parkour_acceptance): its judging of synthetic base
traces against a course, the ladder search, the tables and the graph it builds. No simulation runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from krabgraph.launch import build_graph
from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import RobotState, SafetyStatus
from krabgraph.nodes.mujoco.terrain import Terrain, make_terrain

pytest.importorskip("mujoco")

from krabgraph.train import parkour_acceptance as pa

DT = 0.02
STANCE = 0.30  # m: a walking Go2's base above the ground


def course(seed: int = 0, **params) -> Terrain:
    return make_terrain("parkour", seed=seed, **params)


def walk(judge: pa.CourseJudge, xs: np.ndarray, z_of=None, t0: float = pa.STAND_S, y: float = 0.0) -> float:
    """Feed the judge the base walking along x (one sample per 20 ms, level, ``STANCE`` above the
    support height unless ``z_of(x)`` says otherwise); return the last time fed."""
    t = t0
    for x in xs:
        z = z_of(x) if z_of else float(pa.support_height(judge.terrain, x, y)) + STANCE
        if judge.update(t, float(x), y, z, 0.0, 0.0):
            break
        t += DT
    return t


def walk_at(speed: float, x0: float, x1: float) -> np.ndarray:
    return np.arange(x0, x1, speed * DT)


def test_support_height_ignores_edges_and_hurdles_and_fills_gaps_at_the_deck():
    t = course()
    step, box, gap, hurdle = t.obstacles[:4]
    assert pa.support_height(t, box.x0 + 0.05, 0.0) == pytest.approx(step.size)  # box edge: the deck before it
    assert pa.support_height(t, box.x0 + 0.5, 0.0) == pytest.approx(step.size + box.size)  # on top
    assert pa.support_height(t, (hurdle.x0 + hurdle.x1) / 2, 0.0) == pytest.approx(hurdle.deck_z)
    assert pa.support_height(t, (gap.x0 + gap.x1) / 2, 0.0) == pytest.approx(gap.deck_z)  # not the pit floor
    xs = np.array([0.0, box.x0 + 0.5])
    assert pa.support_height(t, xs, 0.0) == pytest.approx([0.0, step.size + box.size])


def test_a_clean_crossing_passes_each_obstacle_in_order_and_finishes():
    t = course(seed=3)
    judge = pa.CourseJudge(t)
    end = walk(judge, walk_at(0.5, 0.0, t.finish_x + 1.0))
    assert judge.done and judge.passed and judge.finish_t == pytest.approx(end)
    assert len(judge.passed_t) == 6 and judge.passed_t == sorted(judge.passed_t)
    for o, tp in zip(t.obstacles, judge.passed_t, strict=True):  # passed at the first sample beyond x1
        x_at = (tp - pa.STAND_S) * 0.5
        assert o.x1 < x_at <= o.x1 + 0.5 * DT + 1e-9
    assert judge.finish_t - pa.STAND_S == pytest.approx(t.finish_x / 0.5, abs=2 * DT)
    assert judge.stopped_at() == "finished"


def test_nothing_counts_before_the_robot_reaches_an_obstacle():
    t = course()
    judge = pa.CourseJudge(t, limit_s=4.0)
    first = t.obstacles[0]
    walk(judge, np.full(10_000, first.x0 - 1.0))  # stands 1 m before the step-up until the limit
    assert judge.timeout_t is not None and not judge.passed and judge.passed_t == []
    assert judge.timeout_t - pa.STAND_S == pytest.approx(4.0, abs=DT)
    assert judge.stopped_at().startswith("before the 0.15 m step-up")


def test_an_obstacle_counts_only_with_the_base_above_the_ground_past_it():
    t = course()
    gap = t.obstacles[2]
    judge = pa.CourseJudge(t, limit_s=100.0)
    walk(judge, walk_at(0.5, 0.0, gap.x0 - 0.1))
    assert len(judge.passed_t) == 2
    judge.update(judge.last_t + DT, gap.x1 + 0.1, 0.0, gap.deck_z - 0.05, 0.0, 0.0)  # past it, below the deck
    assert len(judge.passed_t) == 2 and judge.fall_t is not None  # and that is a fall
    assert judge.stopped_at().startswith("at the 0.30 m gap")

    hind = pa.CourseJudge(t, limit_s=10.0)  # passed the step-up (base beyond its edge), hind legs below
    walk(hind, np.full(10_000, t.obstacles[0].x1 + 0.2))
    assert len(hind.passed_t) == 1 and hind.stuck_index() == 0
    assert hind.stopped_at() == "astride the 0.15 m step-up (base +0.20 m past its end, < 0.5 m)"


def test_timeout_fall_and_trip_fail_a_course():
    t = course()
    slow = pa.CourseJudge(t, limit_s=20.0)
    walk(slow, walk_at(0.5, 0.0, t.finish_x + 1.0))  # needs ~26.5 s
    assert slow.timeout_t is not None and not slow.passed and 0 < len(slow.passed_t) < 6

    tilted = pa.CourseJudge(t)
    tilted.update(3.0, 0.5, 0.0, 0.3, 0.0, 0.0)
    assert tilted.update(3.02, 0.51, 0.0, 0.3, 1.2, 0.0) and tilted.fall_why.startswith("attitude")

    low = pa.CourseJudge(t)
    assert low.update(3.0, 0.5, 0.0, 0.10, 0.0, 0.0) and low.fall_why.startswith("base low")
    sitting = pa.CourseJudge(t)  # during the stand a low base is not judged
    assert not sitting.update(1.0, 0.0, 0.0, 0.10, 0.0, 0.0)

    side = pa.CourseJudge(t)
    assert side.update(3.0, 0.5, 2.1, 0.3, 0.0, 0.0) and side.fall_why.startswith("off the deck")

    tripped = pa.CourseJudge(t)
    walk(tripped, walk_at(0.5, 0.0, 2.0))
    tripped.trip(6.0, "DAMPING FAULT_ATTITUDE: roll")
    assert tripped.done and not tripped.passed and tripped.trip_t == 6.0
    tripped.trip(7.0, "later")  # the first trip stays
    assert tripped.trip_t == 6.0


def test_a_trial_passes_once_clear_and_settled_and_fails_on_a_fall_meanwhile():
    t = course(course=[["box", 0.3]])
    box = t.obstacles[0]
    judge = pa.CourseJudge(t, limit_s=pa.trial_limit(t), clear_m=pa.CLEAR_M, settle_s=pa.SETTLE_S)
    walk(judge, walk_at(0.5, 0.0, 10.0))
    assert judge.passed and judge.clear_t is not None
    assert judge.last_t - judge.clear_t == pytest.approx(pa.SETTLE_S, abs=DT)
    x_clear = (judge.clear_t - pa.STAND_S) * 0.5
    assert box.x1 + pa.CLEAR_M < x_clear <= box.x1 + pa.CLEAR_M + 0.5 * DT + 1e-9

    falls = pa.CourseJudge(t, limit_s=pa.trial_limit(t), clear_m=pa.CLEAR_M, settle_s=pa.SETTLE_S)
    last = walk(falls, walk_at(0.5, 0.0, box.x1 + pa.CLEAR_M + 0.1))
    assert falls.clear_t is not None and not falls.done
    falls.update(last + 0.1, box.x1 + 0.7, 0.0, 0.3, 0.0, 1.5)
    assert falls.done and not falls.passed

    on_top = pa.CourseJudge(t, limit_s=pa.trial_limit(t), clear_m=pa.CLEAR_M, settle_s=pa.SETTLE_S)
    walk(on_top, np.full(10_000, box.x0 + 0.5))  # stays on the box
    assert on_top.timeout_t is not None and not on_top.passed
    assert on_top.stopped_at().startswith("at the 0.30 m box")

    caught = pa.CourseJudge(t, limit_s=pa.trial_limit(t), clear_m=pa.CLEAR_M, settle_s=pa.SETTLE_S)
    walk(caught, np.full(10_000, box.x1 + 0.2))  # past its end, not clear of it
    assert caught.passed_t and not caught.passed and caught.timeout_t is not None
    assert caught.stopped_at() == "astride the 0.30 m box (base +0.20 m past its end, < 0.5 m)"
    assert judge.stopped_at() == "cleared"


def test_dwell_counts_only_the_time_at_each_obstacle():
    t = course(seed=8)
    hurdle = t.obstacles[3]
    # walk at 0.5 m/s, stall 13 s with the hind legs behind the hurdle (base 0.34 m past it), walk on
    ts = np.arange(0.0, 60.0, DT)
    stall_x, stall_t0 = hurdle.x1 + 0.34, (hurdle.x1 + 0.34) / 0.5
    xs = np.where(ts < stall_t0, ts * 0.5, np.maximum(stall_x, stall_x + (ts - stall_t0 - 13.0) * 0.5))
    zs = np.asarray(pa.support_height(t, xs, 0.0)) + STANCE
    dwell = pa.dwell_times(t, ts, xs, np.zeros_like(xs), zs)
    at = (pa.NEAR_M + pa.CLEAR_M) / 0.5  # s at a point obstacle walking through
    assert dwell[0] == pytest.approx(at, abs=2 * DT) and dwell[2] == pytest.approx(at + 0.3 / 0.5, abs=2 * DT)
    assert dwell[3] == pytest.approx(at + 0.05 / 0.5 + 13.0, abs=2 * DT)  # the stall counts at the hurdle
    assert dwell[4] == pytest.approx(at + 1.0 / 0.5, abs=2 * DT)  # not at the box
    short = ts < 10.0
    assert pa.dwell_times(t, ts[short], xs[short], xs[short] * 0, zs[short])[4:] == [None, None]


def test_trial_limit_is_the_distance_at_half_the_command():
    t = course(course=[["gap", 0.5]])
    assert pa.trial_limit(t) == pytest.approx((t.obstacles[0].x1 + pa.CLEAR_M) / pa.TRIAL_MIN_SPEED, abs=0.1)
    assert pa.trial_limit(t) >= (t.obstacles[0].x1 + pa.CLEAR_M) / pa.TRIAL_MIN_SPEED


def test_seeds_move_the_obstacle_of_a_trial():
    x0 = [course(seed=s, course=[["hurdle", 0.1]]).obstacles[0].x0 for s in range(10)]
    assert len(set(np.round(x0, 4))) == 10 and max(x0) - min(x0) > 0.2
    assert all(1.3 <= x <= 1.7 for x in x0)


def test_ladders():
    assert pa.LADDERS["step"] == (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45) == pa.LADDERS["box"]
    assert pa.LADDERS["gap"] == (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    assert pa.LADDERS["hurdle"] == (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    assert pa.needed(10) == 8 and pa.needed(5) == 4 and pa.needed(1) == 1


def fake_outcome(passed: bool, seed: int = 0, **changes) -> pa.Outcome:
    o = pa.Outcome(
        bundle="b", seed=seed, course=[["box", 0.2]], difficulty="normal", passed=passed, obstacles=["0.20 m box"],
        passed_s=[4.0] if passed else [], finish_s=None, clear_s=5.0 if passed else None, fall_s=None, fall_why="",
        trip_s=None, trip_why="", timeout=not passed, stopped_at="after the last obstacle" if passed else "at the box",
        x_max=3.0, y_abs_max=0.1, obstacle_x=[(1.5, 2.5)], near_s=0.0 if passed else 8.0, near_pitch_max=0.2,
        near_z_max=0.3, last_x=(2.9, 3.0), dwell_s=[3.0], stuck=None if passed else 0, graph_s=8.0,
        wall_s=1.0,
    )  # fmt: skip
    return replace(o, **changes)


def test_ladder_climbs_until_a_size_fails_and_reports_the_largest_crossed():
    # passes the trial when size <= 0.2, or at 0.25 on 8 seeds of 10
    def trial(size: float, seed: int) -> pa.Outcome:
        return fake_outcome(size <= 0.2 + 1e-9 or (size <= 0.25 + 1e-9 and seed < 8) or (size == 0.3 and seed < 7))

    results = pa.ladder_search(pa.LADDERS["box"], trial, list(range(10)))
    assert [r.size for r in results] == [0.1, 0.15, 0.2, 0.25, 0.3]  # stops at the first size not crossed
    assert [r.passes for r in results] == [10, 10, 10, 8, 7] and [len(r.outcomes) for r in results] == [10] * 5
    assert [r.crossed for r in results] == [True] * 4 + [False]
    assert pa.largest_crossed(results) == 0.25 and results[-1].count() == "7/10"

    quick = pa.ladder_search(pa.LADDERS["box"], trial, list(range(10)), quick=True)
    assert [len(r.outcomes) for r in quick] == [10, 10, 10, 10, 10]  # 0.30 fails only from seed 7 on
    never = pa.ladder_search(pa.LADDERS["gap"], lambda size, seed: fake_outcome(seed % 2 == 0), list(range(10)), True)
    assert len(never) == 1 and len(never[0].outcomes) == 6 and never[0].count() == "3/6 of 10 (stopped)"
    assert pa.largest_crossed(never) is None and pa.fmt_size(None, "gap") == "< 0.20 m"

    always = pa.ladder_search(pa.LADDERS["hurdle"], lambda size, seed: fake_outcome(True), [0, 1])
    assert len(always) == 6 and pa.largest_crossed(always) == 0.3


def test_not_monotonic_the_first_failing_size_ends_the_climb():
    results = [
        pa.SizeResult(0.1, [fake_outcome(True)] * 10, 10),
        pa.SizeResult(0.15, [fake_outcome(False)] * 10, 10),
        pa.SizeResult(0.2, [fake_outcome(True)] * 10, 10),
    ]
    assert pa.largest_crossed(results) == 0.1


def test_course_table_counts_finishes_trips_and_falls():
    ok = fake_outcome(True, seed=0, passed_s=[1.0] * 6, finish_s=27.0, obstacles=["o"] * 6, course=[])
    fell = fake_outcome(False, seed=1, fall_s=12.0, fall_why="base low", timeout=False, obstacles=["o"] * 6)
    trip = fake_outcome(False, seed=2, trip_s=9.0, trip_why="DAMPING FAULT_ATTITUDE: x|y", timeout=False)
    table = pa.render_course([ok, fell, trip], "go2_parkour", "normal")
    assert "**finished without a trip or a fall: 1/3** (target ≥ 3/3); trips 1, falls 1" in table
    assert "mean time to finish 27.0 s" in table and "x\\|y" in table
    assert table.count("\n| ") == 4  # header + 3 seeds
    six = [f"o{i}" for i in range(6)]
    slow = replace(ok, obstacles=six, dwell_s=[2.0, 4.0, 3.0, 16.5, 4.0, 3.0], stuck=None)
    assert pa.slowest(slow) == "o3: 16.5 s" and pa.slowest(replace(trip, dwell_s=[None])) == "–"
    stuck = replace(fell, obstacles=six, passed_s=[1.0] * 3, dwell_s=[2.0, 4.0, 3.0, 30.0, None, None], stuck=3)
    assert pa.slowest(stuck) == "o3: 30.0 s+"
    assert "(goal ≥ 3/4)" in pa.render_course([ok, ok, fell, trip], "b", "hard")


def test_obstacle_and_side_by_side_tables():
    ladders = {
        "box": [pa.SizeResult(0.1, [fake_outcome(True)] * 10, 10), pa.SizeResult(0.15, [fake_outcome(False)] * 3, 10)],
        "gap": [pa.SizeResult(0.2, [fake_outcome(False)] * 10, 10)],
    }
    table = pa.render_obstacles(ladders, "go2_rough")
    assert "| box | 0.10 m | 10/10 | crossed | – | – |" in table
    assert "| box | 0.15 m | 0/3 of 10 (stopped) | **not crossed** | 3 timeout | seed 0: timed out at the box" in table
    assert "| box | 0.10-0.45 m by 0.05 | 0.10 m |" in table and "| gap | 0.20-0.80 m by 0.1 | < 0.20 m |" in table
    course_runs = [fake_outcome(True, passed_s=[1.0] * 6), fake_outcome(False)]
    both = pa.render_side_by_side(
        {"go2_walk": {"obstacles": {"gap": ladders["gap"]}}, "go2_rough": {"course": course_runs, "obstacles": ladders}}
    )
    assert "| | `go2_walk` | `go2_rough` |" in both
    assert "| default course finished | – | 1/2 (mean 3.0/6 obstacles) |" in both
    assert "| largest box (≥ 8/10) | – | 0.10 m (0.15 m: 0/3) |" in both
    assert "| largest gap (≥ 8/10) | < 0.20 m (0.20 m: 0/10) | < 0.20 m (0.20 m: 0/10) |" in both


@pytest.mark.parametrize("bundle,center,scan", [("go2_parkour", [0.4, 0.0], True), ("go2_walk", [0.0, 0.0], False)])
def test_the_graph_is_the_walk_graph_on_the_course_with_the_course_probe(bundle, center, scan):
    decl, duration = pa.parkour_graph(bundle, 4, [["gap", 0.4]], limit_s=10.0, clear_m=0.5, settle_s=1.0)
    assert duration == pytest.approx(pa.STAND_S + 10.0 + 1.0 + 0.1)
    hal, probe, command = decl.nodes["hal"].params, decl.nodes["probe"], decl.nodes["command"]
    assert hal["terrain"] == "parkour" and hal["seed"] == 4 and hal["scan_center"] == center
    assert hal["terrain_params"] == {"course": [["gap", 0.4]], "difficulty": "normal"}
    assert probe.class_ref is pa.CourseProbe and probe.params["clear_m"] == 0.5 and probe.params["seed"] == 4
    assert command.params["steer_line"] is False and command.inputs["state"] == "hal/state"  # heading held
    assert command.params["schedule"][0] == [pa.STAND_S, 0.0, 0.0, 0.0]
    assert command.params["schedule"][1][1:] == [pa.SPEED, 0.0, 0.0]
    assert ("height_scan" in decl.nodes["policy"].inputs) == scan
    assert "safety" in decl.nodes and decl.clock.mode == "sim"
    build_graph(decl)  # the overrides validate
    hard, _ = pa.parkour_graph(bundle, 0, difficulty="hard")
    assert (
        hard.nodes["probe"].params["clear_m"] < 0 and hard.nodes["hal"].params["terrain_params"]["difficulty"] == "hard"
    )


def test_cli_rejects_unknown_rows_and_writes_the_tables(tmp_path, monkeypatch, capsys):
    assert pa.main(["--bundle", "go2_walk", "--rows", "stairs"]) == 2

    def fake_bundle(bundle, rows, seeds, kinds, progress, quick=False):
        assert list(seeds) == [0, 1] and kinds == ["gap"] and quick
        outs = [fake_outcome(True, seed=s, passed_s=[1.0] * 6, finish_s=20.0) for s in seeds]
        ladders = {"gap": [pa.SizeResult(0.2, [fake_outcome(False)] * 2, 2)]}
        res = {"course": outs, "obstacles": ladders}
        tables = {"course": pa.render_course(outs, bundle, "normal"), "obstacles": pa.render_obstacles(ladders, bundle)}
        return res, tables, {"course": 1.0, "obstacles": 1.0}

    monkeypatch.setattr(pa, "run_bundle", fake_bundle)
    out, js = tmp_path / "t.md", tmp_path / "t.json"
    argv = ["--bundle", "a,b", "--rows", "course,obstacles", "--seeds", "2", "--kinds", "gap", "--quick"]
    assert pa.main([*argv, "--output", str(out), "--json", str(js)]) == 0
    text = out.read_text()
    assert text.count("### `a`") == 2 and "### Side by side" in text and "| largest gap (≥ 2/2) |" in text
    assert capsys.readouterr().out.strip() == text.strip()
    assert '"course"' in js.read_text()


def state(t: float, x: float, z: float = 0.32) -> RobotState:
    m = RobotState(has_base=True)
    m.header.stamp_ns = round(t * 1e9)
    m.base.position.x, m.base.position.z = x, z
    m.base.orientation.w = 1.0
    return m


def safety(mode: int, fault: int = SafetyStatus.Fault.FAULT_NONE, reason: str = "") -> SafetyStatus:
    return SafetyStatus(mode=mode, fault=fault, reason=reason)


def probe(**params) -> tuple[NodeHarness, list[int]]:
    h = NodeHarness(pa.CourseProbe, terrain_params={"course": [["gap", 0.3]]}, seed=0, end_s=20.0, **params).start()
    return h, h.stops


def test_the_probe_stops_at_a_safety_trip_but_not_at_the_stand_or_the_final_damping():
    Mode, Fault = SafetyStatus.Mode, SafetyStatus.Fault
    h, stops = probe(clear_m=0.5, settle_s=1.0, limit_s=9.0)
    for mode in (Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE):  # the stand
        h.feed("safety", safety(mode))
    h.advance(3.0)
    h.feed("state", state(3.0, 0.5))
    assert not stops and h.node.judge.trip_t is None
    h.feed("safety", safety(Mode.DAMPING, Fault.FAULT_BASE_HEIGHT, "base 0.1 m"))
    assert stops == [0] and h.node.judge.trip_t == pytest.approx(3.0) and not h.node.judge.passed
    assert "DAMPING FAULT_BASE_HEIGHT: base 0.1 m" in h.node.judge.trip_why
    assert [f[1] for f in h.node.faults] == [Mode.WAITING, Mode.SOFT_START, Mode.ACTIVE, Mode.DAMPING]

    h, stops = probe(clear_m=0.5, settle_s=0.1, limit_s=9.0)
    h.feed("safety", safety(Mode.ACTIVE))
    gap = h.node.judge.terrain.obstacles[0]
    t = 2.0
    for x in np.arange(0.0, gap.x1 + 0.8, 0.01):
        h.advance(0.02)
        t += 0.02
        h.feed("state", state(t, float(x)))
    assert stops == [0] and h.node.judge.passed  # cleared, settled: stopped
    h.feed("safety", safety(Mode.DAMPING, reason="deactivated"))  # the graph's stop
    assert h.node.judge.passed and h.node.judge.trip_t is None
