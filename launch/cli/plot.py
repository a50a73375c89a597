"""``krabgraph plot``: a picture of a recorded run (an MCAP file written by the ``recorder`` node).

Stacked panels over graph time (the messages' header stamps): commanded vs measured forward and
lateral velocity and yaw rate (measured: raw and a trailing one-second mean), base height, the
safety node's mode, the tracking error of each leg and one leg's commanded vs measured joint
positions. Messages are decoded with krabgraph's own classes (``krabgraph.msgs``); a topic that is
not in the file leaves its panel with a line saying what is missing. Needs the ``mcap`` package
(the ``tools`` extra) and matplotlib, imported only when a picture is drawn.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.msgs import JointCommand, RobotState, SafetyStatus, VelocityCommand, to_numpy

MCAP_MAGIC = b"\x89MCAP0\r\n"
MEAN_WINDOW_S = 1.0  # trailing window of the measured means
# role -> (message class, topics to prefer in this order; otherwise the first topic of that type)
ROLES: dict[str, tuple[type, tuple[str, ...]]] = {
    "command": (VelocityCommand, ("command/cmd_vel",)),
    "state": (RobotState, ("hal/state",)),
    "safety": (SafetyStatus, ("safety/status",)),
    "joint_command": (JointCommand, ("safety/joint_command", "policy/joint_command")),
}
PANELS = (
    "forward velocity vx (m/s)",
    "lateral velocity vy (m/s)",
    "yaw rate (rad/s)",
    "base height z (m, world)",
    "safety mode",
    "joint tracking error per leg: RMS of commanded - measured position over 1 s (rad)",
    "joint positions (rad)",
)
DAMPED = (SafetyStatus.Mode.DAMPING, SafetyStatus.Mode.ESTOP)


class PlotError(KrabgraphError):
    """A file that cannot be plotted (missing, not an MCAP file, unreadable): exit code 2."""


class MissingDependency(PlotError):
    """matplotlib is not installed: exit code 1."""


@dataclass
class Run:
    """The decoded messages a picture needs, per role, in stamp order."""

    path: Path
    topics: dict[str, str] = field(default_factory=dict)  # role -> topic read
    messages: dict[str, list[Any]] = field(default_factory=dict)  # role -> messages
    warning: str = ""  # e.g. a truncated file: what was read before the break is plotted

    def missing(self, role: str) -> str:
        """The line shown in a panel whose input is absent."""
        cls, prefer = ROLES[role]
        return f"not in the recording: no {cls.__name__} topic (e.g. {prefer[0]})"


@dataclass
class Panel:
    """One drawn panel: its title, and why it is empty or partial ('' when complete)."""

    title: str
    note: str = ""


def read_run(path: str | Path) -> Run:
    """Read the topics of each role from ``path`` with the ``mcap`` reader and krabgraph's classes.

    Raises ``PlotError`` (one line) for a missing file, a file that is not MCAP, or one that
    breaks before any message; a file that breaks later is read up to the break (``warning``).
    """
    from krabgraph.nodes.record.mcapio import open_for_reading

    path = Path(path)
    stream = open_for_reading(path, PlotError)
    by_schema = {cls.DESCRIPTOR.full_name: cls for cls, _ in ROLES.values()}
    found: dict[str, tuple[type, list[Any]]] = {}  # topic -> (class, messages)
    run = Run(path)
    with stream:
        if stream.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise PlotError(f"{path}: not an MCAP file (no MCAP magic bytes); record a run with the recorder node")
        stream.seek(0)
        from mcap.reader import NonSeekingReader

        count = 0
        try:
            reader = NonSeekingReader(stream, validate_crcs=True, record_size_limit=1 << 30)
            for schema, channel, message in reader.iter_messages(log_time_order=False):
                cls = by_schema.get(schema.name) if schema is not None else None
                if cls is None:
                    continue
                msg = cls()
                msg.ParseFromString(message.data)
                found.setdefault(channel.topic, (cls, []))[1].append(msg)
                count += 1
        except Exception as exc:  # the mcap reader raises assorted errors on bad data
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not found:
                raise PlotError(f"{path}: not a readable MCAP file ({why})") from None
            run.warning = f"{path}: the file breaks after {count} messages ({why}); plotting what was read"
    for role, (cls, prefer) in ROLES.items():
        topics = [t for t in prefer if t in found and found[t][0] is cls]
        topics += sorted(t for t, (c, _) in found.items() if c is cls and t not in topics)
        if topics:
            run.topics[role] = topics[0]
            run.messages[role] = sorted(found[topics[0]][1], key=lambda m: m.header.stamp_ns)
    return run


# -- data -----------------------------------------------------------------------------------------
def trailing_mean(t: np.ndarray, v: np.ndarray, window: float = MEAN_WINDOW_S) -> np.ndarray:
    """Mean of ``v`` over the samples in ``(t_i - window, t_i]``, for every ``t_i`` (``t`` sorted)."""
    csum = np.concatenate(([0.0], np.cumsum(v)))
    start = np.searchsorted(t, t - window, side="right")
    end = np.arange(1, len(t) + 1)
    return (csum[end] - csum[start]) / (end - start)


def leg_of(joint: str) -> str:
    """Leg of a joint name: the part before the first underscore (``FL_hip_joint`` -> ``FL``)."""
    return joint.split("_", 1)[0] if "_" in joint else "all"


def commanded_positions(commands: list[JointCommand], names: list[str], t_state: np.ndarray) -> np.ndarray:
    """For each state time, the position targets in effect (the last command stamped strictly before),
    in the state's joint order; NaN before the first command or for joints a command lacks."""
    out = np.full((len(t_state), len(names)), np.nan)
    if not commands:
        return out
    index = {n: i for i, n in enumerate(names)}
    table = np.full((len(commands), len(names)), np.nan)
    for k, msg in enumerate(commands):
        pos = to_numpy(msg.position)
        for name, value in zip(msg.name, pos, strict=False):
            i = index.get(name)
            if i is not None:
                table[k, i] = value
    t_cmd = np.array([m.header.stamp_ns for m in commands], dtype=np.int64)
    k = np.searchsorted(t_cmd, t_state, side="left") - 1
    ok = k >= 0
    out[ok] = table[k[ok]]
    return out


# -- drawing --------------------------------------------------------------------------------------
def _import_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency(
            "krabgraph plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or the project's 'tools' extra: pip install -e '.[tools]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.35", fontsize=10)
    ax.set_yticks([])


def plot_run(path: str | Path, output: str | Path, *, dpi: int = 100) -> list[Panel]:
    """Draw the run in ``path`` to ``output`` (PNG, SVG or PDF by its suffix); return the panels drawn."""
    return draw_run(read_run(path), output, dpi=dpi)


def draw_run(run: Run, output: str | Path, *, dpi: int = 100) -> list[Panel]:
    """Draw a run read by ``read_run`` to ``output``; return the panels drawn."""
    plt = _import_pyplot()
    states, cmds = run.messages.get("state", []), run.messages.get("command", [])
    safety, jcmds = run.messages.get("safety", []), run.messages.get("joint_command", [])
    stamps = [m.header.stamp_ns for role in run.messages.values() for m in (role[0], role[-1])]
    t0 = min(stamps) if stamps else 0
    t_end = (max(stamps) - t0) * 1e-9 if stamps else 1.0

    def sec(msgs: list[Any]) -> np.ndarray:
        return (np.array([m.header.stamp_ns for m in msgs], dtype=np.int64) - t0) * 1e-9

    t_s, t_c = sec(states), sec(cmds)
    has_base = bool(states) and all(m.has_base for m in states)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 2.1 * len(PANELS) + 0.8), sharex=True)
    panels: list[Panel] = []

    # velocities: commanded (step) vs measured (raw and trailing mean)
    velocity = (("vx", lambda m: m.base.linear_velocity.x), ("vy", lambda m: m.base.linear_velocity.y))
    for ax, title, (key, measured) in zip(axes[:2], PANELS[:2], velocity, strict=True):
        panels.append(
            _velocity_panel(ax, title, run, t_s, t_c, key, [measured(m) for m in states] if has_base else None)
        )
    yaw = [(m.base.angular_velocity.z if m.has_base else m.imu.angular_velocity.z) for m in states]
    panels.append(_velocity_panel(axes[2], PANELS[2], run, t_s, t_c, "yaw_rate", yaw if states else None))

    # base height
    ax, title = axes[3], PANELS[3]
    ax.set_title(title, loc="left", fontsize=10)
    if has_base:
        ax.plot(t_s, [m.base.position.z for m in states], color="C0", lw=1.2, label="measured")
        ax.legend(loc="lower right", fontsize=8)
        panels.append(Panel(title))
    else:
        note = (
            run.missing("state") if not states else f"{run.topics['state']} has no ground-truth base (has_base false)"
        )
        _empty(ax, note)
        panels.append(Panel(title, note))

    panels.append(_safety_panel(axes[4], PANELS[4], run, sec(safety), t_end))
    panels.extend(_joint_panels(axes[5], axes[6], run, t_s, states, jcmds))

    for m0, m1, label in _damped_spans(safety, sec(safety), t_end):
        for ax in axes:
            ax.axvspan(m0, m1, color="tab:red", alpha=0.08, lw=0, label="_damped")
        right = m0 > 0.85 * t_end
        axes[4].text(m0, 5.4, label, fontsize=7, color="tab:red", ha="right" if right else "left")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlim(0.0, max(t_end, 1e-3))
    axes[-1].set_xlabel("graph time (s)" + (f" since {t0 * 1e-9:.3f} s" if t0 else ""))
    used = ", ".join(f"{r}: {t}" for r, t in run.topics.items()) or "no plottable topic"
    fig.suptitle(f"{run.path.name}: {t_end:.1f} s of graph time  ({used})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    try:
        fig.savefig(output, dpi=dpi)
    except (OSError, ValueError) as exc:
        raise PlotError(f"cannot write {output}: {exc}") from None
    finally:
        plt.close(fig)
    return panels


def _velocity_panel(
    ax: Any, title: str, run: Run, t_s: np.ndarray, t_c: np.ndarray, key: str, measured: list[float] | None
) -> Panel:
    ax.set_title(title, loc="left", fontsize=10)
    notes = []
    if measured is not None and len(measured):
        v = np.asarray(measured, dtype=float)
        ax.plot(t_s, v, color="C0", lw=0.7, alpha=0.45, label="measured")
        ax.plot(t_s, trailing_mean(t_s, v), color="C0", lw=1.6, label=f"measured, {MEAN_WINDOW_S:g} s mean")
    else:
        notes.append(run.missing("state") if "state" not in run.topics else "no ground-truth base twist in the state")
    cmds = run.messages.get("command", [])
    if cmds:
        c = [getattr(m, key) for m in cmds]
        ax.step(t_c, c, where="post", color="C1", lw=1.4, label="commanded")
    else:
        notes.append(run.missing("command"))
    if len(notes) == 2:
        _empty(ax, "; ".join(dict.fromkeys(notes)))
    else:
        ax.legend(loc="upper left", fontsize=8, ncols=3)
        if notes:
            ax.text(0.99, 0.95, notes[0], transform=ax.transAxes, ha="right", va="top", fontsize=8, color="0.35")
    return Panel(title, "; ".join(notes))


def _safety_panel(ax: Any, title: str, run: Run, t: np.ndarray, t_end: float) -> Panel:
    ax.set_title(title, loc="left", fontsize=10)
    msgs = run.messages.get("safety", [])
    if not msgs:
        note = run.missing("safety")
        _empty(ax, note)
        return Panel(title, note)
    modes = [m.mode for m in msgs]
    ax.step(np.append(t, t_end), [*modes, modes[-1]], where="post", color="C2", lw=1.6)
    values = list(SafetyStatus.Mode.values())[1:]
    ax.set_yticks(values, [SafetyStatus.Mode.Name(v) for v in values], fontsize=8)
    ax.set_ylim(min(values) - 0.5, max(values) + 0.9)
    return Panel(title)


def _damped_spans(msgs: list[SafetyStatus], t: np.ndarray, t_end: float) -> list[tuple[float, float, str]]:
    """(start, end, label) of each stretch in DAMPING or ESTOP, labelled with its mode and fault."""
    spans: list[tuple[float, float, str]] = []
    for i, m in enumerate(msgs):
        if m.mode not in DAMPED or (i and msgs[i - 1].mode == m.mode):
            continue
        end = next((float(t[j]) for j in range(i + 1, len(msgs)) if msgs[j].mode != m.mode), t_end)
        fault = SafetyStatus.Fault.Name(m.fault).removeprefix("FAULT_").lower().replace("_", " ")
        label = SafetyStatus.Mode.Name(m.mode) + ("" if m.fault == SafetyStatus.Fault.FAULT_NONE else f" ({fault})")
        spans.append((float(t[i]), end, label))
    return spans


def _joint_panels(
    ax_err: Any, ax_pos: Any, run: Run, t_s: np.ndarray, states: list[RobotState], jcmds: list[JointCommand]
) -> list[Panel]:
    """Per-leg RMS tracking error over 1 s, and the first leg's commanded vs measured positions."""
    titles = [PANELS[5], PANELS[6]]
    ax_err.set_title(titles[0], loc="left", fontsize=10)
    note = "; ".join(run.missing(r) for r in ("state", "joint_command") if not run.messages.get(r))
    if not states:
        ax_pos.set_title(titles[1], loc="left", fontsize=10)
        _empty(ax_err, note)
        _empty(ax_pos, note)
        return [Panel(t, note) for t in titles]
    names = list(states[-1].joints.name)
    q = np.full((len(states), len(names)), np.nan)
    for k, m in enumerate(states):
        if list(m.joints.name) == names:
            q[k] = to_numpy(m.joints.position)
    q_cmd = commanded_positions(jcmds, names, np.array([m.header.stamp_ns for m in states], dtype=np.int64))
    legs: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        legs.setdefault(leg_of(n), []).append(i)
    if jcmds:
        err = q_cmd - q
        for leg, idx in legs.items():
            sq = (err[:, idx] ** 2).mean(axis=1)  # NaN before the first command
            ok = ~np.isnan(sq)
            ax_err.plot(t_s[ok], np.sqrt(trailing_mean(t_s[ok], sq[ok])), lw=1.3, label=leg)
        ax_err.legend(loc="best", fontsize=8, ncols=len(legs))
    else:
        _empty(ax_err, note)
    leg, idx = next(iter(legs.items()))
    commanded = f"commanded ({run.topics['joint_command']}) vs " if jcmds else ""
    titles[1] = f"{leg} joint positions (rad): {commanded}measured"
    ax_pos.set_title(titles[1], loc="left", fontsize=10)
    for c, i in enumerate(idx):
        ax_pos.plot(t_s, q[:, i], color=f"C{c}", lw=1.1, label=f"{names[i]} measured")
        if jcmds:
            ax_pos.plot(t_s, q_cmd[:, i], color=f"C{c}", lw=1.0, ls="--", label="commanded")
    ax_pos.legend(loc="upper left", fontsize=7, ncols=len(idx))
    if note:
        ax_pos.text(0.99, 0.95, note, transform=ax_pos.transAxes, ha="right", va="top", fontsize=8, color="0.35")
    return [Panel(titles[0], note), Panel(titles[1], note)]


# -- command line ---------------------------------------------------------------------------------
def cmd_plot(args: argparse.Namespace) -> int:
    """``krabgraph plot RUN.mcap [-o RUN.png]``: exit 0, or 2 with one error line."""
    output = Path(args.output) if args.output else Path(args.recording).with_suffix(".png")
    try:
        run = read_run(args.recording)
        if run.warning:
            print(f"warning: {run.warning}", file=sys.stderr)
        panels = draw_run(run, output)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, MissingDependency) else 2
    partial = [f"{p.title.split(' (')[0]}: {p.note}" for p in panels if p.note]
    print(f"wrote {output} ({len(panels)} panels)")
    for line in partial:
        print(f"  {line}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``plot`` on the ``krabgraph`` sub-command parser."""
    sp = sub.add_parser("plot", help="draw a recorded run (MCAP): velocities, base height, safety mode, joints")
    sp.add_argument("recording", metavar="RUN.mcap", help="a recording made by the recorder node")
    sp.add_argument("--output", "-o", metavar="FILE", help="picture to write (.png, .svg, .pdf; default RUN.png)")
    sp.set_defaults(func=cmd_plot)


__all__ = ["PANELS", "Panel", "PlotError", "Run", "add_parser", "cmd_plot", "draw_run", "plot_run", "read_run"]
