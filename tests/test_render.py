"""The graph picture (``krabgraph graph --format html``, the page ``make graph`` writes): a stable
layout whose boxes never overlap, every wire drawn once with its topic, flow left to right."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from krabgraph.launch import load_and_build
from krabgraph.launch.graph.render import BOX_H, BOX_W, layout, to_html, to_svg_inline

SVG = "{http://www.w3.org/2000/svg}"
SHIPPED = ["walk", "parkour", "walk_split", "walk_real_split", "anymal_stairs", "walk_record", "demo"]


def _boxes(svg: str) -> list[tuple[float, float, float, float]]:
    root = ET.fromstring(svg)
    return [
        tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
        for g in root.iter(f"{SVG}g")
        for r in g.iter(f"{SVG}rect")
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_boxes_never_overlap_and_every_wire_is_drawn(name):
    graph = load_and_build(name)
    svg = to_svg_inline(graph)
    boxes = _boxes(svg)
    assert len(boxes) == len(graph.nodes)
    for i, (x, y, w, h) in enumerate(boxes):
        assert (w, h) == (BOX_W, BOX_H)
        for x2, y2, _, _ in boxes[i + 1 :]:
            assert abs(x - x2) >= w + 100 or abs(y - y2) >= h + 40, (name, boxes)
    root = ET.fromstring(svg)
    titles = " ".join(p.findtext(f"{SVG}title") for p in root.iter(f"{SVG}path") if p.find(f"{SVG}title") is not None)
    for topic, info in graph.topics.items():
        if info.subscribers:
            assert topic in titles, topic  # every subscribed topic is a drawn wire
        else:
            assert topic.rsplit("/", 1)[-1] in svg  # listed under its publisher


def test_the_same_graph_gives_the_same_page_and_flow_reads_left_to_right():
    assert to_html(load_and_build("parkour")) == to_html(load_and_build("parkour"))
    pos = layout(load_and_build("parkour"))
    assert pos["command"][0] < pos["hal"][0] < pos["policy"][0] < pos["safety"][0]
    svg = to_svg_inline(load_and_build("parkour"))
    # the command back to the HAL runs dashed below the boxes
    back = [
        p for p in ET.fromstring(svg).iter(f"{SVG}path") if "safety/joint_command" in (p.findtext(f"{SVG}title") or "")
    ]
    assert len(back) == 1 and back[0].get("stroke-dasharray")
    top_of_boxes = min(y for _, y, _, _ in _boxes(svg))
    lowest = max(float(v) for v in re.findall(r"[ C]\s*[\d.]+ ([\d.]+)", back[0].get("d")))
    assert lowest > top_of_boxes + BOX_H
