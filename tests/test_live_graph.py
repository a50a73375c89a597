"""`krabgraph graph GRAPH --live`: the picture of a running graph with measured rates and node counters,
read through a real tap on loopback, checked against the graph's own counters and drawn by Chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from krabgraph.launch import load_and_build
from krabgraph.launch.cli.introspect import TapClient
from krabgraph.launch.cli.live_graph import rates
from krabgraph.launch.cli.main import main
from krabgraph.launch.graph.render import BOX_W, Annotations, NodeFigures, to_html, to_svg_inline

from .test_tap import Pulse, free_port, running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]  # fmt: skip
SVG = "{http://www.w3.org/2000/svg}"


def table_rates(page: str) -> dict[str, float | None]:
    """topic -> rate from the page's topic table (its last column)."""
    out = {}
    for row in re.findall(r"<tr><td>(.*?)</td>.*?<td>([^<]*)</td></tr>", page.split("<h2>Topics</h2>")[1]):
        topic, rate = html.unescape(row[0]), row[1]
        out[topic] = None if rate == "? Hz" else float(rate.removesuffix(" Hz"))
    return out


def test_rates_are_published_counts_over_graph_time():
    def desc(t_s: float, state: int, cmd: int) -> dict:
        topics = [
            {"name": "robot/state", "publishers": ["robot.state"], "published": state},
            {"name": "cmd", "publishers": ["c.out"], "published": cmd},
            {"name": "ext", "publishers": [], "published": 0},  # external: no counter here
        ]
        return {"time_ns": round(t_s * 1e9), "topics": topics}

    got = rates(desc(10.0, 500, 7), desc(12.0, 600, 8))
    assert got == {"robot/state": 50.0, "cmd": 0.5, "ext": None}
    assert rates(desc(10.0, 500, 7), desc(10.0, 500, 7))["robot/state"] is None  # no graph time passed


def test_annotations_change_the_picture_only_when_given():
    graph = load_and_build("walk")
    figures = Annotations(
        {"hal/state": 50.0, "safety/status": 2.0},
        {"hal": NodeFigures("active", 120, 300, 0), "policy": NodeFigures("inactive", 5, 4, 3)},
        "measured",
        2.0,
    )
    page = to_html(graph, figures)
    assert '<meta http-equiv="refresh" content="2">' in page and '<p class="live"><b>live</b> · measured</p>' in page
    assert "http-equiv" not in to_html(graph) and "Hz" not in to_html(graph)
    svg = ET.fromstring(to_svg_inline(graph, figures))
    counters = {t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "counters"}
    assert counters == {"active · in 120 · out 300", "inactive · in 5 · out 4 · drop 3", "not running here"}
    labels = " ".join("".join(t.itertext()) for t in svg.iter(f"{SVG}text"))
    assert "hal/state 50.0 Hz" in labels and "safety/status 2.0 Hz" in labels and "policy/joint_command ? Hz" in labels
    boxes = [(float(r.get("x")), float(r.get("y"))) for r in svg.iter(f"{SVG}rect")]
    for i, (x, y) in enumerate(boxes):  # the taller live boxes still never overlap
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x - x2) >= BOX_W + 100 or abs(y - y2) >= float(svg.find(f".//{SVG}rect").get("height")) + 40


def test_live_snapshot_of_a_running_graph_matches_its_counters_and_renders(launch, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = launch("demo", "--clock", "sim:1", "--tap", endpoint, "--duration", "120")  # paced lockstep
    run.wait_for("tap open on", 60)
    page_path = tmp_path / "demo-live.html"
    assert main(["graph", "demo", "--live", "--once", "--tap", endpoint, "-o", str(page_path), "--timeout", "20"]) == 0
    with TapClient(endpoint, timeout_s=10) as client:
        infos = client.graph_infos(2.0)
    true = rates(infos[0], infos[-1])  # the graph's own counters over 2 s, after the snapshot
    page = page_path.read_text()
    shown = table_rates(page)
    assert set(shown) == {"robot/state", "policy/joint_command", "safety/joint_command", "safety/status"}
    for topic in ("robot/state", "policy/joint_command", "safety/joint_command"):  # 50 Hz in graph time
        assert shown[topic] == pytest.approx(50.0, abs=2.0) and shown[topic] == pytest.approx(true[topic], abs=3.0)
    assert shown["safety/status"] == pytest.approx(true["safety/status"], abs=2.0)  # 2 Hz heartbeat (+ changes)
    counters = re.findall(r'class="counters"[^>]*>([^<]*)<', page)
    assert len(counters) == 3 and all(re.fullmatch(r"active · in \d+ · out \d+", c) for c in counters), counters
    assert re.search(r"demo on tcp://127\.0\.0\.1:\d+ \(pid \d+, clock sim\): graph time \d+\.\d\d s", page)
    if CHROMIUM is None:
        pytest.skip("needs Debian chromium to draw the page (make test installs it as root)")
    shot = tmp_path / "live.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p'}", f"--screenshot={shot}",
         "--window-size=1300,800", page_path.as_uri()],
        capture_output=True, timeout=120, check=True, env=env,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # a drawn page
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--dump-dom", page_path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True, env=env,
    ).stdout  # fmt: skip
    assert "robot/state" in dom and re.search(r">\d+\.\d Hz<", dom) and "active · in" in dom


def test_live_view_rewrites_the_page_and_keeps_the_last_figures_when_the_graph_stops(tmp_path, capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    graph_file = tmp_path / "pulse.yaml"
    graph_file.write_text("name: inline\nclock: wall\nnodes:\n  p: {class: scripted_velocity}\n")
    page = tmp_path / "live.html"
    nodes = {"p": {"class": Pulse, "params": {"period_s": 0.05}}}
    with running(nodes, endpoint, duration=1.5):  # stops by itself, well before the view ends
        argv = ["graph", str(graph_file), "--live", "--tap", endpoint, "-o", str(page), "--period", "0.5"]
        code = main([*argv, "--duration", "4", "--timeout", "1.5"])
    assert code == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"wrote {page} (every 0.5 s until Ctrl-C)")
    (warning,) = [line for line in out.err.splitlines() if line.startswith("warning:")]
    assert f"no graph answered on {endpoint}" in warning and "the page keeps the graph's last figures" in warning
    text = page.read_text()
    assert "not answering since" in text and '<meta http-equiv="refresh" content="1">' in text


def test_live_view_refusals_are_one_line(tmp_path, capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert (
        main(["graph", "demo", "--live", "--once", "--tap", endpoint, "--timeout", "0.3", "-o", str(tmp_path / "x")])
        == 1
    )
    assert capsys.readouterr().err.strip().startswith(f"error: no graph answered on {endpoint} within 0.3 s")
    with running({"p": {"class": Pulse}}, endpoint):
        assert main(["graph", "demo", "--live", "--once", "--tap", endpoint, "-o", str(tmp_path / "x.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the graph on {endpoint} is 'inline', the file drawn is 'demo'") and "\n" not in err
    assert not (tmp_path / "x.html").exists()
    assert main(["graph", "demo", "--period", "2"]) == 1
    assert capsys.readouterr().err.strip() == "error: --period applies only to a live view: add --live"
    assert main(["graph", "demo", "--live", "--format", "dot"]) == 1
    assert "--live writes an HTML page that reloads itself; drop --format dot" in capsys.readouterr().err
