"""The policy-on-GPU benchmark suite (tests/bench/policy_gpu.py) and how its stored rows reach the tables.

On a machine without CUDA the suite gives skipped cuda rows that say why; the ONNX → TorchScript
converter gives what onnxruntime gives (go2_rough's ONNX, with its observation normalizer, and a small
graph with every Gemm attribute set); the renderer puts a stored GPU run (docs/benchmarks-gpu.json)
in its own section in place of this run's skipped rows.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from krabgraph.nodes.policy.contract import BUNDLES_DIR  # noqa: E402
from tests.bench import policy_gpu  # noqa: E402
from tests.bench.__main__ import to_markdown  # noqa: E402
from tests.bench.stats import Row, skipped, summarize  # noqa: E402

# torch >= 2.10 deprecates TorchScript (torch.jit.load/save); the suite and these tests still use it
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
ROUGH_ONNX = BUNDLES_DIR / "go2_rough" / "policy.onnx"
SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "bench" / "device_gpu.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the suite measures instead")
def test_without_cuda_every_cuda_row_is_skipped_with_the_reason():
    rows = policy_gpu.run(50, 1)
    names = {r.name for r in rows}
    expected = {
        f"{net}, {backend}, cuda: {kind}"
        for net in (policy_gpu.GO2, "go2_rough")
        for backend in policy_gpu.BACKENDS
        for kind in policy_gpu.KINDS
    }
    assert names == expected
    for r in rows:
        assert r.group == policy_gpu.GROUP and not r.ran and r.samples == 0
        assert r.note.startswith("not measured: no CUDA device here") and "torch.cuda.is_available() is False" in r.note
        assert r.extra["device"] == "cuda"


def _rough_onnx() -> Path:
    if not ROUGH_ONNX.is_file():
        pytest.skip(f"{ROUGH_ONNX} is not in the tree (moved out for a GPU run?)")
    return ROUGH_ONNX


def test_converter_equals_onnxruntime_on_go2_rough(tmp_path: Path):
    out = tmp_path / "rough.pt"
    diff = policy_gpu.checked_torch_copy(_rough_onnx(), out, policy_gpu.onnx_to_torchscript)
    assert diff <= policy_gpu.SAME_TOL
    graph = str(torch.jit.load(str(out)).graph)
    assert graph.count("aten::linear") == 4 and graph.count("aten::elu") == 3
    assert "aten::sub" in graph and "aten::div" in graph  # the normalizer is in the module
    assert policy_gpu.rough_label(ROUGH_ONNX).startswith("go2_rough (232 → 512 → 256 → 128 → 12, normalizer")


def test_the_check_catches_a_copy_that_drops_part_of_the_normalizer(tmp_path: Path):
    def shifted_mean(src: Path, dst: Path) -> None:
        policy_gpu.onnx_to_torchscript(src, dst)
        module = torch.jit.load(str(dst))
        with torch.no_grad():
            module.c0.add_(0.05)  # c0: the normalizer's mean (the first constant of the first node)
        torch.jit.save(module, str(dst))

    with pytest.raises(ValueError, match=r"differs from policy\.onnx by .* \(relative\) > 1e-05; not timed"):
        policy_gpu.checked_torch_copy(_rough_onnx(), tmp_path / "bad.pt", shifted_mean)


def _small_graph(path: Path, last_op: str = "Gemm") -> None:
    """obs[1, 6] → Sub → Div → Gemm(B not transposed, alpha 0.5, beta 2) → Elu(0.7) → last_op."""
    rng = np.random.default_rng(5)
    inits = {
        "mean": rng.normal(0, 1, (1, 6)),
        "scale": rng.uniform(0.5, 2, (1, 6)),
        "w0": rng.normal(0, 0.5, (6, 8)),  # [in, out]: transB 0
        "b0": rng.normal(0, 0.1, 8),
        "w1": rng.normal(0, 0.5, (3, 8)),  # [out, in]: transB 1
        "b1": rng.normal(0, 0.1, 3),
    }
    nodes = [
        helper.make_node("Sub", ["obs", "mean"], ["a"]),
        helper.make_node("Div", ["a", "scale"], ["b"]),
        helper.make_node("Gemm", ["b", "w0", "b0"], ["c"], alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Elu", ["c"], ["d"], alpha=0.7),
        helper.make_node("Gemm", ["d", "w1", "b1"], ["actions"], transB=1)
        if last_op == "Gemm"
        else helper.make_node(last_op, ["d"], ["actions"]),
    ]
    out_dim = 3 if last_op == "Gemm" else 8
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, out_dim])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def test_converter_follows_every_gemm_attribute(tmp_path: Path):
    _small_graph(tmp_path / "small.onnx")
    diff = policy_gpu.checked_torch_copy(tmp_path / "small.onnx", tmp_path / "small.pt", policy_gpu.onnx_to_torchscript)
    assert diff <= policy_gpu.SAME_TOL


def test_converter_names_an_op_it_does_not_know(tmp_path: Path):
    _small_graph(tmp_path / "relu.onnx", last_op="Relu")
    with pytest.raises(
        ValueError, match=r"relu\.onnx: op Relu .* is not one the converter knows \(Sub, Div, Gemm, Elu\)"
    ):
        policy_gpu.onnx_to_torchscript(tmp_path / "relu.onnx", tmp_path / "relu.pt")


def _row(network: str, backend: str, device: str, kind: str, p50: float) -> Row:
    row = summarize(policy_gpu.GROUP, f"{network}, {backend}, {device}: {kind}", [np.full(10, p50)])
    row.extra.update(network=network, backend=backend, device=device, kind=kind)
    return row


def test_cuda_rows_get_the_ratio_to_the_cpu_row():
    rows = [_row("net", "torch", dev, "bare inference", p50) for dev, p50 in (("cpu", 20.0), ("cuda", 50.0))]
    rows[0].extra["output"], rows[1].extra["output"] = [1.0, 2.0], [1.0, 2.5]
    policy_gpu.add_ratios(rows)
    assert rows[1].extra["ratio_cuda_cpu_p50"] == pytest.approx(2.5)
    assert "cuda/cpu p50 2.50× (cpu 20.0 µs): the GPU is SLOWER than the CPU at batch 1" in rows[1].note
    assert "output max |cuda − cpu| 5.0e-01" in rows[1].note
    assert "ratio_cuda_cpu_p50" not in rows[0].extra and "output" not in rows[0].extra
    assert policy_gpu.verdict(0.5) == "the GPU is faster than the CPU at batch 1"
    assert policy_gpu.verdict(1.02) == "the GPU is about as fast as the CPU at batch 1"


def _stored(tmp_path: Path) -> Path:
    rows = [
        _row("go2_walk (45 → 12)", backend, dev, kind, p50)
        for backend, dev, kind, p50 in (
            ("onnxruntime", "cpu", "bare inference", 10.0),
            ("torch", "cpu", "bare inference", 25.0),
            ("torch", "cuda", "bare inference", 40.0),
            ("onnxruntime", "cpu", "PolicyNode.on_state", 20.0),
            ("torch", "cuda", "PolicyNode.on_state", 70.0),
        )
    ]
    path = tmp_path / "benchmarks-gpu.json"
    machine = {"cpu": "Intel Xeon Platinum", "cpus": 16, "gpu": "NVIDIA H200", "torch": "2.11.0+cu130"}
    data = {
        "machine": machine,
        "generated": "2026-12-05 10:00 UTC",
        "smoke": False,
        "rows": [r.as_dict() for r in rows],
    }
    path.write_text(json.dumps(data))
    return path


def test_the_tables_take_a_stored_gpu_run_in_place_of_skipped_rows(tmp_path: Path):
    local = [
        _row("MLP", "onnxruntime", "cpu", "bare inference", 12.0),
        skipped(policy_gpu.GROUP, "go2_walk, torch, cuda: bare inference", "no CUDA device here (torch 2.13.0+cpu)"),
    ]
    local[0].group = "policy"
    text = to_markdown(local, {"cpus": 2}, smoke=False, stored_gpu=_stored(tmp_path))
    heading = "## policy on GPU, measured on NVIDIA H200 (Intel Xeon Platinum, 16 cpus) on 2026-12-05 10:00 UTC"
    assert heading + "; not re-measured by this run" in text
    assert "| go2_walk (45 → 12), torch, cuda: bare inference | 10 × 1 | 40.00 |" in text
    assert "go2_walk, torch, cuda: bare inference" not in text  # this run's skipped row gives way
    assert "This run did not measure these rows: no CUDA device here (torch 2.13.0+cpu)." in text
    assert "bare inference 40 µs on cuda (torch) vs 10 µs on cpu (onnxruntime): 4.0×" in text
    assert "PolicyNode.on_state 70 µs on cuda (torch) vs 20 µs on cpu (onnxruntime): 3.5×" in text
    assert "**At batch 1 the GPU is slower than the CPU for every network and row measured.**" in text
    assert text.index("## policy\n") < text.index(heading) < text.index("How each row is measured")


def test_the_stored_gpu_run_is_left_out_when_absent_or_measured_here(tmp_path: Path):
    skipped_here = skipped(policy_gpu.GROUP, "go2_walk, torch, cuda: bare inference", "no CUDA device here")
    text = to_markdown([skipped_here], {}, smoke=False, stored_gpu=tmp_path / "missing.json")
    assert (
        "| go2_walk, torch, cuda: bare inference | 0 × 0 | — |" in text and "## policy on GPU, measured on" not in text
    )
    measured = [_row("net", "torch", dev, "bare inference", p50) for dev, p50 in (("cpu", 10.0), ("cuda", 9.0))]
    text = to_markdown(measured, {}, smoke=False, stored_gpu=_stored(tmp_path))
    assert (
        "## policy on GPU, measured on" not in text and "| net, torch, cuda: bare inference | 10 × 1 | 9.00 |" in text
    )
    assert "At batch 1 the GPU is not slower than the CPU for any network measured (faster for net bare" in text


def test_device_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
