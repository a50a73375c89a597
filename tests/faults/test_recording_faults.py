"""Recording faults (issue 14, items 5 and 6): malformed frames on recorded topics, and recorders
killed with SIGKILL in real time and in lockstep. Real MCAP files, the real ``mcap`` reader, a real
``krabgraph launch`` subprocess."""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mcap.decoder import DecoderFactory as McapDecoderFactory
from mcap.reader import make_reader
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from mcap_protobuf.decoder import DecoderFactory

import krabgraph
from krabgraph.launch import Executor, Node, build_graph, graph_from_dict
from krabgraph.launch.api.ports import RawMessage
from krabgraph.launch.runtime.wire import encode, prefix
from krabgraph.msgs import VelocityCommand
from krabgraph.nodes.record.mcapio import VIEW_KEY, read_recording
from tests.faults.recording_nodes import RawTicker

KRABGRAPH = Path(sys.executable).with_name("krabgraph")
DEMO = Path(krabgraph.__file__).parent / "graphs" / "demo.yaml"
VC = prefix(VelocityCommand)


def _valid_header_then_garbage() -> bytes:
    """A payload whose leading Header parses but whose remainder is not a VelocityCommand."""
    msg = VelocityCommand()
    msg.header.seq = 7
    head = msg.SerializeToString()  # field 1 (header) only
    return head + b"\xff\xff\xff\xff"  # a truncated varint tag: DecodeError


class Faulty(RawTicker):
    """Publishes VelocityCommand frames on ``src/cmd``; every 5th payload is corrupt, and every 7th
    frame on ``src/odd`` carries a type krabgraph does not know."""

    def emit(self, k: int) -> None:
        good = VelocityCommand(vx=float(k))
        good.header.stamp_ns, good.header.seq = self.now_ns(), k  # raw frames go out as they are
        frame = VC + _valid_header_then_garbage() if k % 5 == 0 else encode(good)
        self.out.publish(RawMessage("src/cmd", VelocityCommand, frame, len(VC)))
        if k % 7 == 0:
            known = VelocityCommand(vx=1.0)
            known.header.seq = k  # a leading header, which the executor reads
            odd = b"acme.msgs.Unknown@1\0" + known.SerializeToString()
            self.out.publish(RawMessage("src/odd", None, odd, odd.index(b"\0") + 1))


class CorruptHeader(RawTicker):
    """One frame whose leading Header itself does not parse, then valid frames."""

    def emit(self, k: int) -> None:
        frame = VC + b"\x0a\x05\x08" if k == 3 else encode(VelocityCommand(vx=float(k)))
        self.out.publish(RawMessage("src/cmd", VelocityCommand, frame, len(VC)))


def _record(tmp_path: Path, source: type[Node], topics: list[str], duration: float = 1.0) -> Executor:
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {
                "src": {"class": source, "outputs": {"out": topics}},
                "rec": {
                    "class": "recorder",
                    "params": {"path": str(tmp_path / "f.mcap")},
                    "inputs": {"topics": topics},
                },
            },
        }
    )
    ex = Executor(build_graph(graph))
    ex.exit_code = ex.run(duration_s=duration, handle_signals=False)
    return ex


class _JsonDecoders(McapDecoderFactory):
    """The recorder's ``/values`` twins (JSON), as docs/recording.md's reader decodes them."""

    def decoder_for(self, message_encoding: str, schema: object):
        return json.loads if message_encoding == "json" else None


def _read(path: Path) -> list[tuple[str, int, object]]:
    """(topic, sequence, decoded message) of the raw channels with the documented reader (mcap's make_reader)."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory(), _JsonDecoders()])
        rows = reader.iter_decoded_messages(log_time_order=False)
        return [(c.topic, m.sequence, d) for _, c, m, d in rows if VIEW_KEY not in c.metadata]


def test_malformed_and_unknown_frames_are_counted_logged_once_and_recording_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ex = _record(tmp_path, Faulty, ["src/cmd", "src/odd"])
    assert ex.exit_code == 0
    rec = ex.nodes["rec"]
    # 99 ticks: 19 corrupt payloads (k % 5 == 0), 14 frames of an unknown type (k % 7 == 0).
    assert rec.dropped["malformed"] == 19 and rec.dropped["unknown_type"] == 14
    assert rec.dropped["write_error"] == 0 and rec.written == 80
    rows = _read(tmp_path / "f.mcap")  # the file is finished and every kept message decodes
    assert [d.vx for t, _, d in rows if t == "src/cmd"] == [float(k) for k in range(1, 100) if k % 5]
    errors = [r.getMessage() for r in caplog.records if r.name == "krabgraph.rec" and r.levelno == logging.ERROR]
    assert len(errors) == 2, errors  # once per topic and kind, not once per frame
    malformed = next(e for e in errors if "malformed" in e)
    assert "src/cmd" in malformed and "krabgraph.msgs.VelocityCommand" in malformed and "fix:" in malformed
    unknown = next(e for e in errors if "unknown_type" in e)
    assert "src/odd" in unknown and "acme.msgs.Unknown" in unknown and "fix:" in unknown
    diag = [r.getMessage() for r in caplog.records if "not recorded so far" in r.getMessage()]
    assert diag and "malformed 19" in diag[-1] and "unknown_type 14" in diag[-1]


def test_a_frame_with_a_corrupt_header_does_not_stop_the_graph(tmp_path):
    ex = _record(tmp_path, CorruptHeader, ["src/cmd"])
    assert ex.exit_code == 0
    assert ex.nodes["rec"].written == 98


def test_chunks_are_flushed_each_second_of_graph_time_whatever_the_chunk_size(tmp_path):
    graph = graph_from_dict(
        {
            "clock": "sim",
            "nodes": {
                "src": {"class": Faulty, "outputs": {"out": ["src/cmd", "src/odd"]}},
                "rec": {
                    "class": "recorder",
                    "params": {"path": str(tmp_path / "f.mcap"), "chunk_kb": 1_000_000},
                    "inputs": {"topics": ["src/cmd"]},
                },
            },
        }
    )
    ex = Executor(build_graph(graph))
    assert ex.run(duration_s=4.5, handle_signals=False) == 0
    spans = _chunk_spans(tmp_path / "f.mcap")
    assert len(spans) >= 4  # a 1 GB chunk would hold the whole run: only the graph-time flush cuts it
    assert all(end - start <= 1_000_000_000 for start, end in spans), spans


def _chunk_spans(path: Path) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        records = StreamReader(f, emit_chunks=True).records
        return [(r.message_start_time, r.message_end_time) for r in records if isinstance(r, Chunk)]


def _graph(tmp_path: Path, chunk_kb: int) -> Path:
    path = tmp_path / "rec.yaml"
    path.write_text(
        textwrap.dedent(f"""
        extends: {DEMO}
        name: killrec
        nodes:
          rec:
            class: recorder
            params: {{path: {tmp_path / "run.mcap"}, chunk_kb: {chunk_kb}}}
            inputs: {{topics: ["robot/*", "policy/*", "safety/*"]}}
        """)
    )
    return path


def _kill_once_recorded(tmp_path: Path, clock: str, span_s: float, timeout_s: float = 15.0) -> Path:
    """Launch the demo graph with a recorder, SIGKILL it once the file holds ``span_s`` of graph time."""
    out, log = tmp_path / "run.mcap", tmp_path / "launch.log"
    cmd = [str(KRABGRAPH), "launch", str(_graph(tmp_path, 1_000_000)), "--clock", clock, "--duration", "3600"]
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    reached = False
    try:
        deadline = time.monotonic() + timeout_s
        while not reached and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                with open(out, "rb") as f:
                    stamps = [m.log_time for _, _, m in make_reader(f).iter_messages(log_time_order=False)]
            except Exception:  # not there yet, or caught mid-write: look again
                continue
            reached = bool(stamps) and max(stamps) - min(stamps) >= span_s * 1e9
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert reached, f"no {span_s} s recorded within {timeout_s} s: {log.read_text()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    return out


def _check_killed_file(path: Path, min_span_s: float) -> collections.Counter:
    """The documented reader and read_recording agree on a gapless prefix of every topic."""
    rows = _read(path)
    counts = collections.Counter(t for t, _, _ in rows)
    assert set(counts) == {"robot/state", "policy/joint_command", "safety/joint_command", "safety/status"}
    for topic in counts:
        seqs = [s for t, s, _ in rows if t == topic]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), topic  # nothing missing before the cut
    rec = read_recording(path)
    assert rec.counts == counts
    assert rec.recovered.startswith(f"{path}: recovered: ")
    stamps = [t for _, t, _ in rec.messages]
    assert stamps[-1] - stamps[0] >= min_span_s * 1e9
    return counts


def _replay(tmp_path: Path, path: Path) -> subprocess.CompletedProcess:
    graph = tmp_path / "replay.yaml"
    graph.write_text(
        textwrap.dedent(f"""
        name: replayrec
        clock: sim
        robot: go2
        nodes:
          hal:
            class: replay
            params: {{path: {path}}}
            outputs: {{frames: [robot/state]}}
          policy:
            class: hold_pose
            inputs: {{state: robot/state}}
        """)
    )
    cmd = [str(KRABGRAPH), "launch", str(graph)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("clock", "span_s"), [("wall", 2.0), ("sim", 5.0)])
def test_a_recorder_killed_with_sigkill_leaves_a_file_reader_and_replay_open(tmp_path, clock, span_s):
    path = _kill_once_recorded(tmp_path, clock, span_s)
    counts = _check_killed_file(path, span_s)
    done = _replay(tmp_path, path)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if "recovered:" in line]
    assert len(notes) == 1, done.stderr[-2000:]
    assert f"recording exhausted ({counts['robot/state']} messages published)" in done.stderr


def test_raw_decoder_drops_frames_whose_header_cannot_be_read():
    """An ``AnyMessage`` input gets frames unparsed, but the executor reads their header for sequence
    gaps: a header that does not parse, or an unknown type without a leading header, is a dropped
    frame (``WireError``, counted and logged once by the executor), never an exception on the graph thread."""
    from krabgraph.launch.api.errors import WireError
    from krabgraph.launch.runtime.wire import RawDecoder

    any_type = RawDecoder("t", None)
    with pytest.raises(WireError) as unknown:
        any_type.decode(b"acme.msgs.Unknown@1\0\x10\x01")  # field 2 only: the header needs the type
    assert unknown.value.kind == "type" and "acme.msgs.Unknown" in str(unknown.value)
    with pytest.raises(WireError) as cut:
        any_type.decode(b"krabgraph.msgs.VelocityCommand@1\0\x0a\x05\xff")  # header of 5 bytes, 1 there
    assert cut.value.kind == "payload"
    ok = RawDecoder("t", VelocityCommand).decode(encode(VelocityCommand(vx=1.0)))
    assert ok.header.seq == 0 and ok.decode().vx == 1.0
