"""images/isaacsim/main.py and graphs/parkour_isaac.yaml, without Isaac Sim: every check that runs
before the simulator starts, and the one error when Isaac Sim is missing."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from krabgraph.launch.graph.declaration import load_graph
from krabgraph.nodes.isaac.adapter import missing_isaac_modules

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "images" / "isaacsim" / "main.py"


def load_main():
    spec = importlib.util.spec_from_file_location("krabgraph_isaacsim_main", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


main = load_main()


def rsl_rl_checkpoint(path: Path, obs_dim: int, action_dim: int = 12) -> Path:
    state = {
        "actor.0.weight": torch.zeros(32, obs_dim),
        "actor.0.bias": torch.zeros(32),
        "actor.2.weight": torch.zeros(action_dim, 32),
        "actor.2.bias": torch.zeros(action_dim),
        "std": torch.ones(action_dim),
    }
    torch.save({"model_state_dict": state}, path)
    return path


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main.main(argv)
    return code, capsys.readouterr().err


def test_help_works_without_isaac_sim():
    out = subprocess.run([sys.executable, str(MAIN), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--task", "--checkpoint", "--action_dim", "--obs_dim", "--control_rate", "--device"):
        assert flag in out.stdout
    for flag in ("--observation_bind", "--command_bind", "--headless", "--graph", "graphs/parkour_isaac.yaml"):
        assert flag in out.stdout


def test_dimension_and_rate_mismatches_stop_before_the_simulator(tmp_path, capsys):
    ckpt = rsl_rl_checkpoint(tmp_path / "model_1500.pt", 235)
    code, err = run(
        ["--checkpoint", str(ckpt), "--obs_dim", "48", "--action_dim", "16", "--control_rate", "100"], capsys
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 3
    assert "--obs_dim 48 does not match policy bundle 'anymal_d_rough', whose observation has 235 values" in lines[0]
    assert "height_scan=187" in lines[0]
    assert "--action_dim 16 does not match" in lines[1] and "drives 12 joints" in lines[1]
    assert "--control_rate 100 Hz does not match" in lines[2] and "trained at 50 Hz" in lines[2]
    assert "Isaac Sim is not available" not in err and err.rstrip().endswith("nothing was started.")


def test_a_checkpoint_that_does_not_fit_the_bundle_stops_before_the_simulator(tmp_path, capsys):
    ckpt = rsl_rl_checkpoint(tmp_path / "model_300.pt", 48)  # a flat-terrain network
    code, err = run(["--checkpoint", str(ckpt), "--obs_dim", "235"], capsys)
    assert code == 2 and "the terms add up to 235 values" in err and "model_300.pt takes 48" in err
    if missing_isaac_modules():  # the bundle ships krabgraph's trained weights: they fit, only Isaac Sim is missing
        code, err = run([], capsys)
        assert code == 1 and "Isaac Sim is not available" in err and "does not match" not in err


def test_with_a_fitting_checkpoint_the_only_error_is_that_isaac_sim_is_missing(tmp_path, capsys):
    if not missing_isaac_modules():
        pytest.skip("Isaac Sim is installed here")
    ckpt = rsl_rl_checkpoint(tmp_path / "model_1500.pt", 235)
    code, err = run(
        ["--checkpoint", str(ckpt), "--obs_dim", "235", "--action_dim", "12", "--control_rate", "50"], capsys
    )
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: Isaac Sim is not available here") and "images/isaacsim" in errors[0]


def test_tcp_command_endpoint_is_refused_and_inproc_binds_rewire_the_graph(tmp_path, capsys):
    ckpt = rsl_rl_checkpoint(tmp_path / "model.pt", 235)
    code, err = run(["--checkpoint", str(ckpt), "--command_bind", "tcp://0.0.0.0:5555"], capsys)
    assert code == 2 and "no inbound TCP bridge" in err
    code, err = run(["--checkpoint", str(ckpt), "--command_bind", "udp://x"], capsys)
    assert code == 2 and "expected inproc://<topic> or tcp://host:port" in err

    args = main.parser().parse_args(
        [
            "--checkpoint",
            str(ckpt),
            "--observation_bind",
            "inproc://robot/state",
            "--command_bind",
            "inproc://robot/cmd",
        ]
    )
    graph = main.prepare(args, tmp_path)
    nodes = graph.nodes
    assert nodes["hal"].outputs["state"] == "robot/state" and nodes["hal"].inputs["command"] == "robot/cmd"
    assert nodes["policy"].inputs["state"] == "robot/state" and nodes["safety"].inputs["state"] == "robot/state"
    assert nodes["safety"].outputs["joint_command"] == "robot/cmd"
    assert "hal/state" not in graph.topics and "hal/command" not in graph.topics
    assert Path(nodes["policy"].params["bundle"]).read_text().count(str(ckpt.resolve())) == 1


def test_tcp_observation_endpoint_opens_the_read_only_tap_when_the_runtime_has_one(tmp_path):
    ckpt = rsl_rl_checkpoint(tmp_path / "model.pt", 235)
    args = main.parser().parse_args(["--checkpoint", str(ckpt), "--observation_bind", "tcp://127.0.0.1:7447"])
    try:
        from krabgraph.launch.graph.declaration import TapSpec  # noqa: F401
    except ImportError:
        with pytest.raises(main.SetupError, match="no TCP endpoint"):
            main.prepare(args, tmp_path)
        return
    graph = main.prepare(args, tmp_path)
    assert graph.decl.tap.endpoint == "tcp://127.0.0.1:7447"
    assert graph.nodes["hal"].outputs["state"] == "hal/state"


def test_task_device_and_headless_flags_reach_the_hal(tmp_path):
    ckpt = rsl_rl_checkpoint(tmp_path / "model.pt", 235)
    args = main.parser().parse_args(
        ["--checkpoint", str(ckpt), "--task", "Isaac-Parkour-Anymal-D-v0", "--task_package", "parkour_ext",
         "--device", "cuda:1", "--no-headless"]
    )  # fmt: skip
    params = main.prepare(args, tmp_path).nodes["hal"].params
    assert params["task"] == "Isaac-Parkour-Anymal-D-v0" and params["task_package"] == "parkour_ext"
    assert params["device"] == "cuda:1" and params["headless"] is False


def test_checkpoint_format_is_read_from_the_file(tmp_path):
    assert main.checkpoint_format(rsl_rl_checkpoint(tmp_path / "model_1.pt", 48)) == "rsl_rl"
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; Isaac Lab still exports it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(torch.nn.Linear(48, 12))
    scripted.save(str(tmp_path / "policy.pt"))
    assert main.checkpoint_format(tmp_path / "policy.pt") == "torchscript"
    assert main.checkpoint_format(tmp_path / "policy.onnx") == "onnx"
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(main.SetupError, match="not an ONNX file or a torch archive"):
        main.checkpoint_format(tmp_path / "junk.pt")


def test_parkour_isaac_graph_wires_hal_policy_safety_hal_in_lockstep():
    decl = load_graph(REPO / "graphs" / "parkour_isaac.yaml")
    assert decl.clock.mode == "sim"
    hal, policy, safety = decl.nodes["hal"], decl.nodes["policy"], decl.nodes["safety"]
    assert hal.class_ref == "isaac_hal" and policy.class_ref == "policy"
    assert safety.class_ref == "safety" and decl.nodes["command"].class_ref == "scripted_velocity"
    assert policy.inputs == {"state": "hal/state", "command": "command/cmd_vel", "height_scan": "hal/height_scan"}
    assert safety.inputs == {"state": "hal/state", "command": "policy/joint_command"}
    assert safety.outputs == {"joint_command": "hal/command"} and hal.inputs["command"] == "hal/command"
    assert policy.params["bundle"] == "anymal_d_rough" and decl.robot == "anymal_d" and "robot" not in hal.params


def test_default_graph_is_found_from_any_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main.graph_path(main.DEFAULT_GRAPH) == REPO / "graphs" / "parkour_isaac.yaml"
    assert isinstance(main.parser().parse_args([]), argparse.Namespace)
