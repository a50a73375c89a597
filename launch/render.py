"""Pictures of a graph: DOT, Mermaid, self-contained HTML/SVG, and SVG/PNG through Graphviz.

Structure and layout come from networkx: nodes are laid out in columns by kind (sources and
teleop, HAL and sensors, policy, safety, the rest) so the control flow reads left to right. Edges
carry topic and message type; a node an overlay replaced is dashed; nodes placed on a process or
host (``process:``/``host:`` on a node, when graph files have them) are drawn in one box per place.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass

import networkx as nx

from krabgraph.launch.validate import Graph

KIND_COLUMN = {
    "source": 0,
    "teleop": 0,
    "hal": 1,
    "sensor": 1,
    "bridge": 1,
    "policy": 2,
    "safety": 3,
    "recorder": 4,
    "other": 4,
}
KIND_COLOR = {
    "hal": "#f4a261",
    "sensor": "#e9c46a",
    "policy": "#8ab17d",
    "safety": "#e76f51",
    "teleop": "#90caf9",
    "source": "#90caf9",
    "recorder": "#b39ddb",
    "bridge": "#bdbdbd",
    "other": "#e0e0e0",
}
FORMATS = ("dot", "mermaid", "html", "svg", "png")


@dataclass
class Edge:
    src: str
    dst: str
    topic: str
    msg_type: str


def edges(graph: Graph) -> list[Edge]:
    """Node-to-node edges, one per (topic, subscriber); topics nobody reads end at the topic."""
    out = []
    for tname, info in graph.topics.items():
        type_name = info.msg_type.__name__ if info.msg_type else "?"
        targets = [n for n, _ in info.subscribers] or [f"topic:{tname}"]
        sources = [n for n, _ in info.publishers] or [f"topic:{tname}"]
        for src in sources:
            for dst in targets:
                out.append(Edge(src, dst, tname, type_name))
    return out


def placement(graph: Graph, name: str) -> str:
    """``host/process`` of a node, from its declaration's ``host``/``process`` if the graph has them."""
    decl = graph.nodes[name].decl
    host, process = str(getattr(decl, "host", "") or ""), str(getattr(decl, "process", "") or "")
    return "/".join(p for p in (host, process) if p)


def groups(graph: Graph) -> dict[str, list[str]]:
    """Placement → nodes, only when some node has a placement (unplaced ones go to ``main``)."""
    places = {name: placement(graph, name) for name in graph.nodes}
    if not any(places.values()):
        return {}
    out: dict[str, list[str]] = {}
    for name, place in places.items():
        out.setdefault(place or "main", []).append(name)
    return out


def layout(graph: Graph) -> dict[str, tuple[float, float]]:
    """Positions from networkx's multipartite layout, one column per node kind."""
    g = nx.DiGraph()
    for name, spec in graph.nodes.items():
        g.add_node(name, layer=KIND_COLUMN.get(spec.cls.kind, 4))
    for e in edges(graph):
        for end in (e.src, e.dst):
            if end not in g:
                g.add_node(end, layer=5)
    pos = nx.multipartite_layout(g, subset_key="layer", align="vertical", scale=1.0)
    return {n: (float(x), float(y)) for n, (x, y) in pos.items()}


def _label(graph: Graph, name: str) -> tuple[str, str]:
    if name.startswith("topic:"):
        return name[6:], "topic"
    spec = graph.nodes[name]
    cls = spec.cls.__name__
    extra = f" (replaces {spec.decl.replaced})" if spec.decl.replaced else ""
    thread = " [thread]" if spec.thread else ""
    return f"{name}\n{cls}{extra}{thread}", spec.cls.kind


def to_dot(graph: Graph) -> str:
    lines = [
        f'digraph "{graph.name}" {{',
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    names = list(graph.nodes) + sorted({e.dst for e in edges(graph) if e.dst.startswith("topic:")})
    node_lines = {}
    for name in names:
        label, kind = _label(graph, name)
        style = ""
        if kind == "topic":
            style = ", shape=ellipse, style=dashed"
        elif graph.nodes[name].decl.replaced:
            style = ', style="rounded,filled,dashed", penwidth=2'
        text = label.replace('"', r"\"").replace("\n", r"\n")
        node_lines[name] = f'"{name}" [label="{text}", fillcolor="{KIND_COLOR.get(kind, "#ffffff")}"{style}];'
    grouped = groups(graph)
    for i, (place, members) in enumerate(grouped.items()):
        lines.append(f'  subgraph "cluster_{i}" {{')
        lines.append(f'    label="{place}"; style="rounded,dashed"; color="#888888";')
        lines += [f"    {node_lines.pop(n)}" for n in members]
        lines.append("  }")
    lines += [f"  {line}" for line in node_lines.values()]
    for e in edges(graph):
        lines.append(f'  "{e.src}" -> "{e.dst}" [label="{e.topic}\\n{e.msg_type}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def to_mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    names = list(graph.nodes) + sorted({e.dst for e in edges(graph) if e.dst.startswith("topic:")})
    node_lines: dict[str, list[str]] = {}
    for name in names:
        label, kind = _label(graph, name)
        text = label.replace('"', "'").replace("\n", "<br/>")
        shape = ('(["', '"])') if kind == "topic" else ('["', '"]')
        node_lines[name] = [f"{_mermaid_id(name)}{shape[0]}{text}{shape[1]}"]
        if kind != "topic":
            dashed = ",stroke:#333,stroke-width:2px,stroke-dasharray:5 3" if graph.nodes[name].decl.replaced else ""
            node_lines[name].append(f"style {_mermaid_id(name)} fill:{KIND_COLOR.get(kind, '#ffffff')}{dashed}")
    for i, (place, members) in enumerate(groups(graph).items()):
        lines.append(f'  subgraph g{i}["{place}"]')
        lines += [f"    {line}" for n in members for line in node_lines.pop(n)]
        lines.append("  end")
    lines += [f"  {line}" for group in node_lines.values() for line in group]
    for e in edges(graph):
        lines.append(f'  {_mermaid_id(e.src)} -- "{e.topic}<br/>{e.msg_type}" --> {_mermaid_id(e.dst)}')
    return "\n".join(lines) + "\n"


def to_svg_inline(graph: Graph, width: int = 1100, height: int = 560) -> str:
    """An SVG drawn from the networkx layout (no Graphviz needed)."""
    pos = layout(graph)
    where = {n: place for place, members in groups(graph).items() for n in members}
    pad_x, pad_y, box_w, box_h = 110, 60, 190, 46

    def xy(name: str) -> tuple[float, float]:
        x, y = pos[name]
        return pad_x + (x + 1) / 2 * (width - 2 * pad_x), pad_y + (1 - (y + 1) / 2) * (height - 2 * pad_y)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for i, e in enumerate(edges(graph)):
        (x1, y1), (x2, y2) = xy(e.src), xy(e.dst)
        back = x2 <= x1
        x1 += -box_w / 2 if back else box_w / 2
        x2 += box_w / 2 if back else -box_w / 2
        bend = (70 + 12 * (i % 3)) * (1 if back else 0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + bend + (0 if back else -15 * ((i % 2) * 2 - 1) * (y1 == y2))
        parts.append(
            f'<path d="M {x1:.0f} {y1:.0f} Q {cx:.0f} {cy:.0f} {x2:.0f} {y2:.0f}" fill="none" '
            f'stroke="#555" stroke-width="1.4" marker-end="url(#arrow)"><title>{html.escape(e.topic)} '
            f"({html.escape(e.msg_type)})</title></path>"
        )
        lx, ly = (x1 + 2 * cx + x2) / 4, (y1 + 2 * cy + y2) / 4
        parts.append(
            f'<text x="{lx:.0f}" y="{ly - 4:.0f}" font-size="10" text-anchor="middle" fill="#333">'
            f'{html.escape(e.topic)}</text><text x="{lx:.0f}" y="{ly + 8:.0f}" font-size="9" '
            f'text-anchor="middle" fill="#777">{html.escape(e.msg_type)}</text>'
        )
    for name in pos:
        x, y = xy(name)
        label, kind = _label(graph, name)
        dashed = (
            ' stroke-dasharray="5,3"'
            if kind == "topic" or (name in graph.nodes and graph.nodes[name].decl.replaced)
            else ""
        )
        rx = 23 if kind == "topic" else 8
        parts.append(
            f'<g class="node" data-kind="{kind}"><rect x="{x - box_w / 2:.0f}" y="{y - box_h / 2:.0f}" '
            f'width="{box_w}" height="{box_h}" rx="{rx}" fill="{KIND_COLOR.get(kind, "#fff")}" '
            f'stroke="#333"{dashed}/>'
        )
        for j, text in enumerate(label.split("\n")):
            weight = "bold" if j == 0 else "normal"
            parts.append(
                f'<text x="{x:.0f}" y="{y - 4 + 14 * j:.0f}" font-size="{12 - j}" font-weight="{weight}" '
                f'text-anchor="middle">{html.escape(text)}</text>'
            )
        tag = f"{kind} @ {where[name]}" if name in where else kind
        parts.append(
            f'<text x="{x - box_w / 2 + 4:.0f}" y="{y - box_h / 2 - 3:.0f}" font-size="9" fill="#666">'
            f"{html.escape(tag)}</text></g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def to_html(graph: Graph) -> str:
    """One self-contained page (inline SVG, no scripts, no network)."""
    legend = " ".join(
        f'<span style="background:{c};padding:2px 6px;border-radius:4px">{k}</span>' for k, c in KIND_COLOR.items()
    )
    clock = graph.clock.mode + (f" ×{graph.clock.real_time_factor}" if graph.clock.real_time_factor else "")
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(i.msg_type.__name__ if i.msg_type else '?')}"
        f"</td><td>{html.escape(', '.join(f'{n}.{p}' for n, p in i.publishers))}</td><td>"
        f"{html.escape(', '.join(f'{n}.{p}' for n, p in i.subscribers))}</td></tr>"
        for t, i in graph.topics.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>krabgraph: {html.escape(graph.name)}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;margin:24px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style></head>
<body><h1>{html.escape(graph.name)}</h1><p>{html.escape(graph.description)}</p>
<p>clock: {html.escape(clock)} · files: {html.escape(" → ".join(p.name for p in graph.decl.files))}</p>
<p>{legend}</p>
{to_svg_inline(graph)}
<h2>Topics</h2><table><tr><th>topic</th><th>type</th><th>publishers</th><th>subscribers</th></tr>{rows}</table>
</body></html>
"""


class RenderError(Exception):
    pass


def render(graph: Graph, fmt: str) -> str | bytes:
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "html":
        return to_html(graph)
    if fmt in ("svg", "png"):
        dot = shutil.which("dot")
        if dot is None:
            raise RenderError(
                f"--format {fmt} needs Graphviz's `dot` (apt-get install graphviz); "
                "--format html, mermaid and dot need nothing extra"
            )
        proc = subprocess.run([dot, f"-T{fmt}"], input=to_dot(graph).encode(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise RenderError(f"Graphviz failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout if fmt == "png" else proc.stdout.decode()
    raise RenderError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
