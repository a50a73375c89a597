"""Hostile and unlucky graph files (issue 14, item 7): alias bombs, huge files, bytes that are
not UTF-8, graph names that are paths or too long for a unix socket, and ``class:`` entries that
name modules nobody allowed. Every hostile file is checked by a real ``krabgraph check`` (or
``launch``) in a subprocess with 1 GiB of address space and a time limit, so a regression fails the
test instead of eating the machine; each refusal must be exactly one ``error:`` line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from krabgraph.launch import build_graph, load_graph
from krabgraph.launch.api.errors import GraphError
from krabgraph.launch.graph.declaration import MAX_EXTENDS_DEPTH, MAX_NAME_LEN, name_problem
from krabgraph.launch.graph.endpoints import SUN_PATH_MAX
from krabgraph.launch.graph.yamlloc import MAX_FILE_BYTES, MAX_NODES
from krabgraph.launch.runtime.supervisor import child_args
from krabgraph.nodes.demo import HoldPose

LIMIT_AS = 1 << 30  # bytes of address space for each check (a plain `check walk` needs ~0.8 GiB)
RSS_BOUND_KB = 256 * 1024  # what a refused file may cost (a refusal takes ~60 MB; the bomb took > 2.5 GB)

# Runs the CLI under RLIMIT_AS and prints the peak RSS (KiB) on stdout's last line: VmHWM, of this
# program only (ru_maxrss would include the RSS of the forking pytest process, kept across exec).
DRIVER = f"""
import re, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_AS}, {LIMIT_AS}))
from krabgraph.launch.cli.main import main
rc = main(sys.argv[1:])
print(re.search(r"VmHWM:\\s*(\\d+) kB", open("/proc/self/status").read()).group(1))
sys.exit(rc)
"""

# A two-process graph without MuJoCo (fast to check): the robot's state crosses to "brain" by ipc.
SPLIT = """\
clock: wall
processes: {{robot: {{}}, brain: {{}}}}
{name}nodes:
  robot: {{class: fake_robot, process: robot, inputs: {{command: policy/joint_command}}, unsafe_direct_command: true}}
  policy: {{class: hold_pose, process: brain, inputs: {{state: robot/state}}}}
"""


@dataclass
class Result:
    rc: int
    errors: list[str]  # the stderr lines (log lines of imported libraries left out)
    stdout: str
    rss_kb: int  # peak resident memory of the check, KiB (0 if it did not get that far)


def check(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60.0) -> Result:
    """``krabgraph ARGS`` in a bounded subprocess."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stderr.splitlines() if " INFO " not in line]
    out = proc.stdout.strip().splitlines()
    rss = int(out[-1]) if out and out[-1].isdigit() else 0
    return Result(proc.returncode, lines, proc.stdout, rss)


def refused(res: Result, *needles: str) -> str:
    """The one error line of a refused file (asserting the refusal's shape)."""
    assert res.rc == 1, res
    assert len(res.errors) == 1, res.errors
    (line,) = res.errors
    assert line.startswith("error: ") and "Traceback" not in line
    for needle in needles:
        assert needle in line, line
    assert 0 < res.rss_kb < RSS_BOUND_KB, res.rss_kb
    return line


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: 9 levels of 9 aliases each, 9**9 = 387 M strings (~740 bytes)."""
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 9)}]")
    return "\n".join(lines) + f"\nnodes:\n  robot:\n    class: fake_robot\n    params: {{joints: *lol{levels - 1}}}\n"


def test_alias_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    text = billion_laughs()
    assert 700 < len(text) < 800
    (tmp_path / "bomb.yaml").write_text(text)
    line = refused(check("check", "bomb.yaml", cwd=tmp_path), "bomb.yaml:", "alias bomb", str(MAX_NODES))
    assert line.split(":")[2].isdigit()  # file:line


def test_merge_key_bomb_and_recursive_alias_are_refused(tmp_path: Path) -> None:
    merges = "a0: &a0 {x: 1}\n" + "".join(
        f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 9)}]}}\n" for i in range(1, 9)
    )
    (tmp_path / "merge.yaml").write_text(merges + "nodes: {}\n")
    refused(check("check", "merge.yaml", cwd=tmp_path), "merge.yaml:", "alias bomb")
    (tmp_path / "self.yaml").write_text("nodes: {}\nloop: &a [1, *a]\n")
    refused(check("check", "self.yaml", cwd=tmp_path), "self.yaml:2:", "contains it")


def test_deep_nesting_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("nodes: {}\nx:\n  " + "[" * 20000 + "]" * 20000 + "\n")
    refused(check("check", "deep.yaml", cwd=tmp_path), "deep.yaml:3:", "nested deeper than 100 levels")


def test_huge_file_and_huge_base_file_are_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.write(b"nodes:\n  robot: {class: fake_robot}\n")
        f.truncate(46_000_000)  # sparse: 46 MB of NUL bytes after a valid start
    refused(check("check", "big.yaml", cwd=tmp_path), "big.yaml: file is larger than 512 KiB", "extends")
    # Just over the limit, in the base of an overlay: the base file is named.
    (tmp_path / "base.yaml").write_text("nodes:\n  robot: {class: fake_robot}\n" + "#" * MAX_FILE_BYTES + "\n")
    (tmp_path / "over.yaml").write_text("extends: base.yaml\nnodes: {robot: {params: {}}}\n")
    refused(check("check", "over.yaml", cwd=tmp_path), "base.yaml: file is larger than")


def test_non_utf8_byte_gives_file_line_and_byte_offset(tmp_path: Path) -> None:
    data = b"nodes:\n  robot:\n    class: fake_robot  # caf\xe9 in Latin-1\n"
    (tmp_path / "latin1.yaml").write_bytes(data)
    line = refused(check("check", "latin1.yaml", cwd=tmp_path))
    assert (
        line == f"error: latin1.yaml:3: not UTF-8: byte 0xe9 at byte offset {data.index(0xE9)}; save the file as UTF-8"
    )
    data = "nodes:\n  robot: {class: fake_robot, params: {name: é\x00}}\n".encode()
    (tmp_path / "nul.yaml").write_bytes(data)
    refused(check("check", "nul.yaml", cwd=tmp_path), "nul.yaml:2:", f"#x0000 at byte offset {data.index(0)} ")


def test_extends_chain_length_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "g0.yaml").write_text(SPLIT.format(name=""))
    for i in range(1, MAX_EXTENDS_DEPTH + 2):
        (tmp_path / f"g{i}.yaml").write_text(f"extends: g{i - 1}.yaml\n")
    assert check("check", f"g{MAX_EXTENDS_DEPTH - 1}.yaml", cwd=tmp_path).rc == 0  # 16 files: fine
    refused(check("check", f"g{MAX_EXTENDS_DEPTH + 1}.yaml", cwd=tmp_path), "'extends' chain longer than 16")


@pytest.mark.parametrize(
    ("name", "shown"),
    [("../escape", "'../escape'"), ("a/b", "'a/b'"), ('"a\\0b"', "'a\\x00b'"), (".hidden", "'.hidden'")],
)
def test_path_like_graph_names_are_refused_before_anything_binds(tmp_path: Path, name: str, shown: str) -> None:
    (tmp_path / "g.yaml").write_text(SPLIT.format(name=f"name: {name}\n"))
    line = refused(check("check", "g.yaml", cwd=tmp_path), "g.yaml:3: graph name " + shown, "rename it")
    res = check("launch", "g.yaml", "--duration", "1", cwd=tmp_path)
    assert res.rc == 1 and res.errors == [line, "nothing was started."]
    assert not list(Path("/tmp").glob("escape*")) and not (tmp_path.parent / "escape.7600.0").exists()


def test_over_long_names_and_ipc_paths_are_refused_with_one_line(tmp_path: Path) -> None:
    ok = "n" * MAX_NAME_LEN
    (tmp_path / "g.yaml").write_text(SPLIT.format(name=f"name: {ok}\n"))
    assert check("check", "g.yaml", cwd=tmp_path).rc == 0  # 64 characters under /tmp: fits
    (tmp_path / "long.yaml").write_text(SPLIT.format(name=f"name: {ok}x\n"))
    refused(check("check", "long.yaml", cwd=tmp_path), "long.yaml:3: graph name is 65 characters long")
    # A long temporary directory pushes a fine name's ipc paths over sun_path: refused at check and
    # at launch (before the children start), not by two child tracebacks.
    tmp = tmp_path / ("t" * 40)
    tmp.mkdir()
    expect = len(f"{tmp}/krabgraph-{os.getuid()}/{ok}.7600.0".encode())
    assert expect > SUN_PATH_MAX
    line = refused(check("check", "g.yaml", cwd=tmp_path, env={"TMPDIR": str(tmp)}), "g.yaml:3: ipc socket path")
    assert f"is {expect} bytes, over the {SUN_PATH_MAX}-byte limit" in line and "TMPDIR" in line
    res = check("launch", "g.yaml", "--duration", "1", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert res.rc == 1 and res.errors == [line, "nothing was started."]


def test_shipped_style_names_pass() -> None:
    for name in ("walk", "walk_split", "walk_real", "go2.v2", "a+b-c", "_x"):
        assert name_problem(name) == ""
    assert name_problem("x" * (MAX_NAME_LEN + 1)).startswith("graph name is 65 characters long")


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    """A directory with a module and a package whose import-time code leaves a marker file."""
    code = textwrap.dedent(
        """
        from pathlib import Path
        Path({marker!r}).write_text("imported")
        from krabgraph.nodes.demo import HoldPose as Anything
        """
    )
    (tmp_path / "evilmod.py").write_text(code.format(marker=str(tmp_path / "RAN_mod")))
    (tmp_path / "evilpkg").mkdir()
    (tmp_path / "evilpkg" / "__init__.py").write_text(code.format(marker=str(tmp_path / "RAN_pkg")))
    (tmp_path / "evilpkg" / "nodes.py").write_text("from evilpkg import Anything\n")
    graph = "nodes:\n  robot: {{class: fake_robot, unsafe_direct_command: true"
    graph += ", inputs: {{command: policy/joint_command}}}}\n"
    graph += "  policy:\n    class: {cls}\n    inputs: {{state: robot/state}}\n"
    (tmp_path / "mod.yaml").write_text(graph.format(cls="evilmod:Anything"))
    (tmp_path / "pkg.yaml").write_text(graph.format(cls="evilpkg.nodes:Anything"))
    (tmp_path / "this.yaml").write_text(graph.format(cls="this:Anything"))
    return tmp_path


def test_check_does_not_import_unregistered_modules(evil: Path) -> None:
    env = {"PYTHONPATH": str(evil)}
    line = refused(check("check", "mod.yaml", cwd=evil, env=env), "mod.yaml:4: node 'policy': node class")
    assert "not a registered krabgraph node module" in line and line.endswith("pass --allow-module evilmod")
    refused(check("check", "pkg.yaml", cwd=evil, env=env), "module 'evilpkg.nodes' is not a registered")
    res = check("check", "this.yaml", cwd=evil, env=env)
    refused(res, "module 'this'")
    assert "Beautiful is better" not in res.stdout  # `import this` prints the Zen of Python
    assert not list(evil.glob("RAN_*"))  # no import-time code ran, not even the package's __init__


def test_allow_module_flag_and_replace_import_what_the_user_names(evil: Path) -> None:
    env = {"PYTHONPATH": str(evil)}
    res = check("check", "mod.yaml", "--allow-module", "evilmod", cwd=evil, env=env)
    assert res.rc == 0 and (evil / "RAN_mod").exists(), res.errors
    res = check("check", "pkg.yaml", "--allow-module", "evilpkg", cwd=evil, env=env)  # a prefix allows submodules
    assert res.rc == 0 and (evil / "RAN_pkg").exists(), res.errors
    (evil / "RAN_mod").unlink()
    res = check("check", "mod.yaml", "--replace", "policy=hold_pose", cwd=evil, env=env)
    assert res.rc == 0 and not (evil / "RAN_mod").exists()  # a --replace drops the file's class unimported
    res = check("check", "this.yaml", "--replace", "policy=evilmod:Anything", cwd=evil, env=env)
    assert res.rc == 0 and (evil / "RAN_mod").exists(), res.errors  # typed on the command line: allowed


def test_unknown_module_still_says_no_module(evil: Path) -> None:
    (evil / "none.yaml").write_text((evil / "mod.yaml").read_text().replace("evilmod:", "no_such_pkg.sub:"))
    refused(check("check", "none.yaml", cwd=evil), "unknown node class 'no_such_pkg.sub:Anything': no module")


def test_supervisor_passes_allowed_modules_to_its_children() -> None:
    args = argparse.Namespace(
        log_level="info", set=None, replace=None, clock=None, duration=None, tap=None, allow_module=["a", "b.c"]
    )
    argv = child_args("g.yaml", "brain", args)
    assert argv[argv.index("--allow-module") :] == ["--allow-module", "a", "--allow-module", "b.c"]


class Loaded(HoldPose):
    """A node class in a module the running program has already imported (this test module)."""


def test_python_api_allows_already_imported_modules_only(tmp_path: Path) -> None:
    base = SPLIT.format(name="").replace("class: hold_pose", "class: {cls}")
    (tmp_path / "mine.yaml").write_text(base.replace("{cls}", f'"{__name__}:Loaded"'))
    assert build_graph(load_graph(tmp_path / "mine.yaml")).nodes["policy"].cls is Loaded
    assert "krabgraph_no_such_module_yet" not in sys.modules
    (tmp_path / "other.yaml").write_text(base.replace("{cls}", "krabgraph_no_such_module_yet:X"))
    with pytest.raises(GraphError, match="no module 'krabgraph_no_such_module_yet'"):
        build_graph(load_graph(tmp_path / "other.yaml"))
    (tmp_path / "this.yaml").write_text(base.replace("{cls}", "this:X"))  # exists; importing it prints the Zen
    assert "this" not in sys.modules
    with pytest.raises(GraphError, match="module 'this' is not a registered krabgraph node module"):
        build_graph(load_graph(tmp_path / "this.yaml"))
    assert "this" not in sys.modules
