"""The `krabgraph` command: exit codes, error text, and pictures that real renderers accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from krabgraph.launch.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
MERMAID_JS = ROOT / "build" / "npm" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def krabgraph(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "krabgraph", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_check_ok(capsys):
    assert main(["check", "demo"]) == 0
    out = capsys.readouterr()
    assert "demo: OK — 3 nodes, 4 topics, clock sim, robot go2" in out.out
    assert "  safety: Safety [safety]" in out.out and out.err == ""  # no warnings


def test_launch_runs_for_duration(capsys):
    assert main(["launch", "demo", "--duration", "0.5"]) == 0


def test_unknown_flag_exits_2_with_one_error():
    proc = krabgraph("launch", "demo", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "krabgraph: error: unrecognized arguments: --bogus"


def test_unknown_parameter_on_command_line_starts_nothing():
    proc = krabgraph("launch", "demo", "--set", "policy.kq=3")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: command line: node 'policy': unknown parameter 'kq' for HoldPose")
    assert lines[-1] == "nothing was started."
    assert "launching" not in proc.stderr


def test_malformed_graph_file_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  x: {class: fake_robot, inputs: [oops]}\n")
    proc = krabgraph("launch", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"error: {bad}:2: nodes/x/inputs: ['oops'] is not of type")


def test_missing_graph_exits_1():
    proc = krabgraph("check", "no_such_graph")
    assert proc.returncode == 1 and "graph 'no_such_graph' not found" in proc.stderr


def test_python_dash_m_and_nodes_listing():
    proc = krabgraph("nodes")
    assert proc.returncode == 0
    assert "fake_robot  (krabgraph.nodes.demo:FakeRobot) [hal]" in proc.stdout
    assert "  in   command: JointCommand (latest)" in proc.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (make test installs it as root)")
def test_dot_output_is_accepted_by_graphviz(tmp_path):
    out = tmp_path / "demo.dot"
    assert main(["graph", "demo", "--format", "dot", "-o", str(out)]) == 0
    proc = subprocess.run(["dot", "-Tsvg", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "policy/joint_command" in proc.stdout and "<svg" in proc.stdout
    assert main(["graph", "demo", "--format", "png", "-o", str(tmp_path / "demo.png")]) == 0
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _chromium_dom(page: Path) -> str:
    proc = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={page.parent / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(page.parent)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(
    CHROMIUM is None or not MERMAID_JS.exists(),
    reason="needs Debian chromium and build/npm mermaid (make test installs both)",
)
def test_mermaid_renders_in_a_browser(tmp_path):
    src = tmp_path / "demo.mmd"
    assert main(["graph", "demo", "--format", "mermaid", "-o", str(src)]) == 0
    page = tmp_path / "mermaid.html"
    page.write_text(f"""<!DOCTYPE html><html><body><div id="out"></div>
<script src="{MERMAID_JS.as_uri()}"></script>
<script>
mermaid.initialize({{startOnLoad: false}});
mermaid.render("g", {src.read_text()!r}).then(r => {{ document.getElementById("out").innerHTML = r.svg; }})
  .catch(e => {{ document.getElementById("out").textContent = "ERROR " + e; }});
</script></body></html>""")
    dom = _chromium_dom(page)
    assert '<div id="out">ERROR' not in dom
    assert "<svg" in dom and "HoldPose" in dom and "policy/joint_command" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (make test installs it as root)")
def test_html_opens_in_a_browser_without_network(tmp_path):
    page = tmp_path / "demo.html"
    assert main(["graph", "demo", "--format", "html", "-o", str(page)]) == 0
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    dom = _chromium_dom(page)
    assert "<svg" in dom and "FakeRobot" in dom and "robot/state" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'p2'}",
            f"--screenshot={shot}",
            "--window-size=1200,800",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
