"""`krabgraph plot`: a real recorded walk drawn as stacked panels; missing topics and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from krabgraph.launch.cli.main import main
from krabgraph.launch.cli.plot import PANELS, plot_run

pytest.importorskip("mujoco")
pytest.importorskip("mcap")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s lockstep run of graphs/walk_record.yaml (stand up, then walk at 0.5 m/s), as the docs record it."""
    path = tmp_path_factory.mktemp("run") / "walk.mcap"
    argv = ["launch", "walk_record", "--clock", "sim", "--duration", "4"]
    code = main([*argv, "--set", f"rec.path={path}", "--set", "hal.status_period_s=0"])
    assert code == 0 and path.stat().st_size > 0
    return path


def test_plot_draws_every_panel_of_a_recorded_walk(recording: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "walk.png"
    assert main(["plot", str(recording), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert capsys.readouterr().out.splitlines() == [f"wrote {out} (7 panels)"]  # nothing missing

    panels = plot_run(recording, tmp_path / "again.png")
    assert [p.title for p in panels][:6] == list(PANELS[:6])
    assert panels[6].title.startswith("FL joint positions (rad): commanded (safety/joint_command) vs measured")
    assert [p.note for p in panels] == [""] * 7


def test_missing_topics_leave_a_panel_saying_what_is_missing(recording: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from mcap.reader import make_reader
    from mcap.writer import Writer

    only_state = tmp_path / "state_only.mcap"
    with open(recording, "rb") as src, open(only_state, "wb") as dst:
        writer, ids = Writer(dst), {}
        writer.start()
        for schema, channel, message in make_reader(src).iter_messages(topics=["hal/state"]):
            if channel.topic not in ids:
                sid = writer.register_schema(schema.name, schema.encoding, schema.data)
                ids[channel.topic] = writer.register_channel(channel.topic, "protobuf", sid, channel.metadata)
            writer.add_message(ids[channel.topic], message.log_time, message.data, message.publish_time)
        writer.finish()

    panels = plot_run(only_state, tmp_path / "partial.png")
    notes = {p.title: p.note for p in panels}
    assert (tmp_path / "partial.png").read_bytes()[:8] == PNG_MAGIC
    assert notes[PANELS[0]] == "not in the recording: no VelocityCommand topic (e.g. command/cmd_vel)"
    assert notes[PANELS[3]] == ""  # base height needs only the state
    assert notes[PANELS[4]] == "not in the recording: no SafetyStatus topic (e.g. safety/status)"
    assert notes[PANELS[5]] == "not in the recording: no JointCommand topic (e.g. safety/joint_command)"
    assert panels[6].title == "FL joint positions (rad): measured"  # measured only, with the same note
    assert panels[6].note == notes[PANELS[5]]


def test_a_file_that_is_not_mcap_gives_one_error_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "run.mcap"
    bad.write_text("name: walk\nnodes: {}\n")
    out = tmp_path / "run.png"
    assert main(["plot", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {bad}: not an MCAP file (no MCAP magic bytes); record a run with the recorder node"]
    assert not out.exists()

    assert main(["plot", str(tmp_path / "absent.mcap")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {tmp_path / 'absent.mcap'}: no such file"]


def test_a_truncated_recording_is_plotted_up_to_the_break(recording: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    cut = tmp_path / "cut.mcap"
    data = recording.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert main(["plot", str(cut), "-o", str(tmp_path / "cut.png")]) == 0
    assert "the file breaks after" in capsys.readouterr().err
    assert (tmp_path / "cut.png").read_bytes()[:8] == PNG_MAGIC
