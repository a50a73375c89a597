"""Pictures of a graph: DOT, Mermaid, self-contained HTML/SVG, and SVG/PNG through Graphviz.

The layout is deterministic: nodes in columns by kind (sources and teleop, HAL and sensors,
policy, safety, the rest; topics nobody subscribes to last), in file order within a column, so the
control flow reads left to right and the same graph always gives the same picture. Edges
carry topic and message type; a node an overlay replaced is dashed; nodes placed on a process or
host (``process:``/``host:`` on a node, when graph files have them) are drawn in one box per place.

The SVG and HTML pictures take optional ``Annotations``, figures measured on a running graph
(``krabgraph graph --live``): each wire's message rate, each node's lifecycle state and counters.
Without them the output is the static picture, byte for byte.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field

from krabgraph.launch.graph.model import Graph

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


@dataclass(frozen=True)
class NodeFigures:
    """A running node as its graph's tap describes it: lifecycle state and message counters."""

    state: str
    received: int
    published: int
    dropped: int


@dataclass
class Annotations:
    """Figures measured on a running graph, drawn over its picture (plain data: any layer may fill it)."""

    rates_hz: dict[str, float | None] = field(default_factory=dict)  # topic -> messages/s; None: not measured
    nodes: dict[str, NodeFigures] = field(default_factory=dict)
    caption: str = ""  # one line over the picture, e.g. when and over what span the rates were measured
    refresh_s: float = 0.0  # > 0: the HTML page reloads itself this often (the file is rewritten meanwhile)

    def rate_text(self, topic: str) -> str:
        """``50.0 Hz``; ``? Hz`` for a topic whose rate was not measured (e.g. published in another process)."""
        rate = self.rates_hz.get(topic)
        return "? Hz" if rate is None else f"{rate:.1f} Hz"

    def counters_text(self, name: str) -> str:
        """``active · in 120 · out 60 · drop 2`` (drop only when some were; large counts as 123k, 4.5M)."""
        fig = self.nodes.get(name)
        if fig is None:
            return "not running here"
        dropped = f" · drop {_count(fig.dropped)}" if fig.dropped else ""
        return f"{fig.state} · in {_count(fig.received)} · out {_count(fig.published)}{dropped}"


def _count(n: int) -> str:
    """A counter in at most 5 characters: 99999, 123k, 4.5M."""
    if n < 100_000:
        return str(n)
    return f"{n // 1000}k" if n < 1_000_000 else f"{n / 1e6:.1f}M" if n < 100_000_000 else f"{n // 1_000_000}M"


COLUMN_GAP, ROW_GAP = 210, 56  # px between boxes (room for edge labels)
BOX_W, BOX_H = 190, 56
LIVE_LINE_H = 14  # px: the live picture's boxes have one line more (state and counters)
LANE = 40  # px between the arcs of edges routed above or below the boxes


def layout(graph: Graph) -> dict[str, tuple[int, int]]:
    """Deterministic positions (column, row) of the nodes: one column per kind (``KIND_COLUMN``),
    nodes in file order within a column. The same graph always gives the same picture."""
    columns: dict[int, list[str]] = {}
    for name, spec in graph.nodes.items():
        columns.setdefault(KIND_COLUMN.get(spec.cls.kind, 4), []).append(name)
    used = sorted(columns)  # no empty columns between the used ones
    return {name: (used.index(col), row) for col in used for row, name in enumerate(columns[col])}


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


def to_svg_inline(graph: Graph, annotations: Annotations | None = None) -> str:
    """An SVG of the graph in the columns of ``layout`` (no Graphviz needed). Data flows left to right:
    an edge to the next column is drawn between the boxes; one that skips columns arcs above them,
    one back to an earlier column (the command to the HAL, a state to a command source) runs dashed
    below them, each arc in its own lane. Edges between the same two nodes share one label; topics
    no node subscribes to are listed under their publisher. With ``annotations`` each topic's label
    shows its rate instead of its type (the tooltip keeps both) and each box has a line more: the
    node's state and counters."""
    pos = layout(graph)
    box_h = BOX_H if annotations is None else BOX_H + LIVE_LINE_H  # a line more: state and counters
    where = {n: place for place, members in groups(graph).items() for n in members}
    n_cols = 1 + max((c for c, _ in pos.values()), default=0)
    n_rows = 1 + max((r for _, r in pos.values()), default=0)
    pairs: dict[tuple[str, str], list[Edge]] = {}
    dangling: dict[str, list[str]] = {}
    for e in edges(graph):
        if e.dst.startswith("topic:"):
            dangling.setdefault(e.src, []).append(e.topic)
        elif e.src in pos and e.dst in pos:
            pairs.setdefault((e.src, e.dst), []).append(e)
    skip = [p for p in pairs if pos[p[1]][0] - pos[p[0]][0] > 1]
    back = [p for p in pairs if pos[p[1]][0] <= pos[p[0]][0]]
    pad, top = 30, 30 + LANE * len(skip) + 20
    width = 2 * pad + n_cols * BOX_W + (n_cols - 1) * COLUMN_GAP
    rows_h = n_rows * box_h + (n_rows - 1) * ROW_GAP
    height = top + rows_h + 30 + LANE * len(back) + pad

    def box(name: str) -> tuple[float, float]:
        col, row = pos[name]
        return pad + col * (BOX_W + COLUMN_GAP), top + row * (box_h + ROW_GAP)

    def rate(topic: str) -> str:
        if annotations is None:
            return ""
        measured = annotations.rate_text(topic)
        return f' <tspan class="rate" font-size="10" font-weight="bold" fill="#1565c0">{measured}</tspan>'

    def label(x: float, y: float, group: list[Edge], anchor: str = "middle") -> list[str]:
        """Each topic with its type; with annotations, with its rate instead (the type stays in the tooltip
        and the table: a label must fit between two columns)."""
        return [
            f'<text x="{x:.0f}" y="{y + 22 * j:.0f}" font-size="11" text-anchor="{anchor}" fill="#222">'
            + (
                f'{html.escape(e.topic)} <tspan font-size="9" fill="#777">{html.escape(e.msg_type)}</tspan></text>'
                if annotations is None
                else f"{html.escape(e.topic)}{rate(e.topic)}</text>"
            )
            for j, e in enumerate(group)
        ]

    def title_of(e: Edge) -> str:
        measured = f", {annotations.rate_text(e.topic)}" if annotations is not None else ""
        return f"{e.topic} ({e.msg_type}{measured})"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    gap_count: dict[int, int] = {}  # labels already placed in the gap after column c
    for (src, dst), group in pairs.items():
        (sx, sy), (dx, dy) = box(src), box(dst)
        title = html.escape(", ".join(title_of(e) for e in group))
        style = 'stroke="#555"'
        if (src, dst) in back or (src, dst) in skip:
            above = (src, dst) in skip
            k = skip.index((src, dst)) if above else back.index((src, dst))
            lane = top - 20 - LANE * k if above else top + rows_h + 30 + LANE * k
            y1, y2 = (sy, dy) if above else (sy + box_h, dy + box_h)
            # above: clear of the "kind @ place" tag over each box's left part
            x1, x2 = sx + BOX_W * (0.75 if above else 0.65), dx + BOX_W * (0.9 if above else 0.35)
            d = f"M {x1:.0f} {y1:.0f} C {x1:.0f} {lane:.0f} {x2:.0f} {lane:.0f} {x2:.0f} {y2:.0f}"
            style = 'stroke="#555"' if above else 'stroke="#999" stroke-dasharray="6,3"'
            crest = y1 + 0.75 * (lane - y1)  # the cubic's extreme: 3/4 of the way to its control points
            texts = label((x1 + x2) / 2, crest - 5 if above else crest + 13, group[:1])
            if len(group) > 1 and annotations is not None:  # an arc spans columns: room for every rate
                more = "".join(f", {html.escape(e.topic)}{rate(e.topic)}" for e in group[1:])
                texts[0] = texts[0].replace("</text>", f"{more}</text>")
            elif len(group) > 1:
                texts[0] = texts[0].replace("</tspan>", f"</tspan> (+{len(group) - 1})", 1)
        else:
            x1, y1, x2, y2 = sx + BOX_W, sy + box_h / 2, dx, dy + box_h / 2
            d = f"M {x1:.0f} {y1:.0f} C {x1 + 70:.0f} {y1:.0f} {x2 - 70:.0f} {y2:.0f} {x2:.0f} {y2:.0f}"
            k = gap_count.get(pos[src][0], 0)
            gap_count[pos[src][0]] = k + len(group)
            texts = label(x1 + 8, (y1 + y2) / 2 - 8 - 22 * k, group, anchor="start")
        parts.append(
            f'<path d="{d}" fill="none" {style} stroke-width="1.4" marker-end="url(#arrow)">'
            f"<title>{title}</title></path>"
        )
        parts += texts
    for name in pos:
        x, y = box(name)
        text, kind = _label(graph, name)
        dashed = ' stroke-dasharray="5,3"' if graph.nodes[name].decl.replaced else ""
        parts.append(
            f'<g class="node" data-kind="{kind}"><rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{box_h}" '
            f'rx="8" fill="{KIND_COLOR.get(kind, "#fff")}" stroke="#333"{dashed}/>'
        )
        for j, line in enumerate(text.split("\n")):
            weight = "bold" if j == 0 else "normal"
            parts.append(
                f'<text x="{x + BOX_W / 2:.0f}" y="{y + 19 + 14 * j:.0f}" font-size="{12 - j}" '
                f'font-weight="{weight}" text-anchor="middle">{html.escape(line)}</text>'
            )
        tag = f"{kind} @ {where[name]}" if name in where else kind
        parts.append(f'<text x="{x + 4:.0f}" y="{y - 4:.0f}" font-size="9" fill="#666">{html.escape(tag)}</text>')
        if annotations is not None:
            parts.append(_counters_line(annotations, name, x, y + BOX_H - 7))
        if name in dangling:
            listed = ", ".join(html.escape(t.rsplit("/", 1)[-1]) + rate(t) for t in dangling[name])
            parts.append(
                f'<text x="{x + BOX_W / 2:.0f}" y="{y + box_h - 7:.0f}" font-size="9" fill="#444" '
                f'text-anchor="middle">also: {listed}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _counters_line(annotations: Annotations, name: str, x: float, baseline: float) -> str:
    """The third line of a node's box: state and counters, red when the node is not active, orange when
    it dropped messages."""
    fig = annotations.nodes.get(name)
    color = "#b71c1c" if fig is None or fig.state != "active" else "#e65100" if fig.dropped else "#1b5e20"
    return (
        f'<text class="counters" x="{x + BOX_W / 2:.0f}" y="{baseline:.0f}" font-size="9" fill="{color}" '
        f'text-anchor="middle">{html.escape(annotations.counters_text(name))}</text>'
    )


def to_html(graph: Graph, annotations: Annotations | None = None) -> str:
    """One self-contained page (inline SVG, no scripts, no network). With ``annotations``: their caption,
    rates and counters in the picture and the topic table, and a page that reloads itself every
    ``annotations.refresh_s`` seconds."""
    legend = " ".join(
        f'<span style="background:{c};padding:2px 6px;border-radius:4px">{k}</span>' for k, c in KIND_COLOR.items()
    )
    clock = graph.clock.mode + (f" ×{graph.clock.real_time_factor}" if graph.clock.real_time_factor else "")
    rate_cell = (lambda t: f"<td>{annotations.rate_text(t)}</td>") if annotations is not None else (lambda t: "")
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(i.msg_type.__name__ if i.msg_type else '?')}"
        f"</td><td>{html.escape(', '.join(f'{n}.{p}' for n, p in i.publishers))}</td><td>"
        f"{html.escape(', '.join(f'{n}.{p}' for n, p in i.subscribers))}</td>{rate_cell(t)}</tr>"
        for t, i in graph.topics.items()
    )
    head, caption, rate_head = "", "", ""
    if annotations is not None:
        if annotations.refresh_s > 0:
            head = f'<meta http-equiv="refresh" content="{annotations.refresh_s:g}">'
        caption = f'<p class="live"><b>live</b> · {html.escape(annotations.caption)}</p>\n'
        rate_head = "<th>rate</th>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{head}<title>krabgraph: {html.escape(graph.name)}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;margin:24px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}</style></head>
<body><h1>{html.escape(graph.name)}</h1><p>{html.escape(graph.description)}</p>
<p>clock: {html.escape(clock)} · files: {html.escape(" → ".join(p.name for p in graph.decl.files))}</p>
<p>{legend}</p>
{caption}{to_svg_inline(graph, annotations)}
<h2>Topics</h2><table><tr><th>topic</th><th>type</th><th>publishers</th><th>subscribers</th>{rate_head}</tr>{rows}</table>
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
