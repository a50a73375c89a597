"""Pictures of recording graphs: kinds, message types on edges, replaced nodes dashed, placement boxes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from krabgraph.launch import load_and_build
from krabgraph.launch.graph.render import groups, to_dot, to_html, to_mermaid

from .test_cli import CHROMIUM, MERMAID_JS, _chromium_dom


def test_replay_overlay_is_dashed_in_every_format():
    graph = load_and_build("walk_replay")
    dot = to_dot(graph)
    assert '"hal" [label="hal\\nReplay (replaces mujoco_hal)"' in dot and 'style="rounded,filled,dashed"' in dot
    assert '"hal" -> "policy" [label="hal/state\\nRobotState"]' in dot  # the type comes from the subscribers
    mermaid = to_mermaid(graph)
    assert "style n_hal fill:#90caf9,stroke:#333,stroke-width:2px,stroke-dasharray:5 3" in mermaid
    page = to_html(graph)
    assert 'data-kind="source"' in page and 'stroke-dasharray="5,3"' in page and "Replay (replaces mujoco_hal)" in page


def test_recorder_shows_its_kind_and_every_recorded_edge():
    graph = load_and_build("walk_record")
    dot = to_dot(graph)
    assert '"rec" [label="rec\\nRecorder", fillcolor="#b39ddb"]' in dot
    for topic, type_name in [("hal/state", "RobotState"), ("safety/status", "SafetyStatus")]:
        assert f'-> "rec" [label="{topic}\\n{type_name}"]' in dot


def test_nodes_with_a_placement_are_boxed_by_host_and_process():
    graph = load_and_build("walk_record")
    assert groups(graph) == {}  # no placement in today's graph files: no boxes
    graph.nodes["hal"].decl.host = "robot"  # what a multi-process graph file would set
    graph.nodes["hal"].decl.process = "io"
    graph.nodes["policy"].decl.host = "robot"
    graph.nodes["policy"].decl.process = "control"
    assert groups(graph) == {"robot/io": ["hal"], "main": ["command", "safety", "rec"], "robot/control": ["policy"]}
    dot = to_dot(graph)
    assert 'subgraph "cluster_1" {\n    label="robot/io";' in dot  # walk.yaml declares command (main) first
    mermaid = to_mermaid(graph)
    assert '  subgraph g2["robot/control"]\n    n_policy["policy<br/>PolicyNode"]' in mermaid
    assert "recorder @ main" in to_html(graph)
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "robot/io" in proc.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (make test installs it as root)")
def test_graphviz_accepts_the_recording_graphs():
    for name in ("walk_record", "walk_replay"):
        proc = subprocess.run(
            ["dot", "-Tsvg"], input=to_dot(load_and_build(name)), capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "<svg" in proc.stdout


@pytest.mark.skipif(
    CHROMIUM is None or not MERMAID_JS.exists(),
    reason="needs Debian chromium and build/npm mermaid (make test installs both)",
)
def test_mermaid_with_a_replaced_node_and_placement_boxes_renders_in_a_browser(tmp_path):
    graph = load_and_build("walk_replay")
    graph.nodes["policy"].decl.host = "robot"
    src = to_mermaid(graph)
    page = tmp_path / "mermaid.html"
    page.write_text(f"""<!DOCTYPE html><html><body><div id="out"></div>
<script src="{MERMAID_JS.as_uri()}"></script>
<script>
mermaid.initialize({{startOnLoad: false}});
mermaid.render("g", {src!r}).then(r => {{ document.getElementById("out").innerHTML = r.svg; }})
  .catch(e => {{ document.getElementById("out").textContent = "ERROR " + e; }});
</script></body></html>""")
    dom = _chromium_dom(page)
    assert '<div id="out">ERROR' not in dom
    assert "<svg" in dom and "Replay (replaces mujoco_hal)" in dom and "stroke-dasharray:5 3" in dom
    assert "robot" in dom and "hal/state" in dom
