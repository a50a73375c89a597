"""The policy on a GPU (``device: cuda``) against the CPU, batch 1, onnxruntime and torch (issue 16).

Networks: ``go2_walk`` (its ONNX file, and the TorchScript copy the policy suite builds from its
weights) and the trained ``go2_rough`` network (the bundle's ONNX, which holds the observation
normalizer as Sub and Div before the Gemm/Elu MLP, and a TorchScript module converted from that
ONNX file by ``onnx_to_torchscript``). Every TorchScript copy must equal onnxruntime's output to
``SAME_TOL`` on random inputs before anything is timed.

For each network × backend × device (cpu, cuda), in one run on one machine:

- bare: one inference from a host numpy array to a host result, what the node pays each tick:
  onnxruntime ``session.run`` on the numpy array (with the CUDA provider the copies to and from
  the GPU are inside it); torch ``module(torch.from_numpy(x).to(device)).cpu()`` under
  ``torch.inference_mode`` (on the CPU the two moves are no-ops; ``.cpu()`` waits for the GPU).
- node: ``PolicyNode.on_state`` with ``device: cpu|cuda`` through a ``NodeHarness``, as the policy
  suite's node rows.

The cuda rows' notes give cuda/cpu at p50 of the same network, backend and kind. onnxruntime's
CUDA provider is used only if ``onnxruntime.get_available_providers()`` lists it and a session
really runs on it (``session.get_providers()``: onnxruntime falls back to the CPU silently);
otherwise its rows are skipped with the reason. Without a CUDA device (``torch.cuda.is_available()``
false) the cuda rows are skipped and no cpu rows are measured: the policy suite has this machine's
CPU figures, and a cuda/cpu ratio needs both on the same machine.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.nodes.policy import load_backend, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR

from . import placement
from .policy import GO2, bare_call, mlp_from_onnx, start_node, time_calls, write_contract, write_torchscript
from .stats import Row, skipped, summarize

GROUP = "policy on GPU"
BACKENDS = ("onnxruntime", "torch")
DEVICES = ("cpu", "cuda")
KINDS = ("bare inference", "PolicyNode.on_state")
SAME_TOL = 1e-5  # max |torch − onnxruntime| / max(1, max |onnxruntime|) on random inputs
SAME_BAND = 0.05  # cuda/cpu within 1 ± this: "about as fast"
CONVERTIBLE_OPS = ("Sub", "Div", "Gemm", "Elu")  # what go2_rough's exported ONNX holds


# -- ONNX → TorchScript ------------------------------------------------------------------------------


@dataclass
class _Step:
    op: str
    args: list[tuple[str, str]]  # ("value", name) or ("const", buffer name)
    out: str
    alpha: float = 1.0  # Elu's


def _gemm_constants(node: Any, weights: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Gemm ``alpha·x·B' + beta·C`` as ``linear(x, W, b)``: W ``[out, in]`` and b with alpha and beta folded in."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) != 0 or node.input[1] not in weights:
        raise ValueError(f"{path.name}: Gemm {node.name!r} is not x·B + C with constant B; cannot convert it")
    w = weights[node.input[1]].astype(np.float32)
    w = w if attrs.get("transB", 0) == 1 else w.T
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in weights:
            raise ValueError(f"{path.name}: Gemm {node.name!r} has a non-constant C; cannot convert it")
        b = weights[node.input[2]].astype(np.float32).reshape(-1)
    else:
        b = np.zeros(w.shape[0], np.float32)
    return np.float32(attrs.get("alpha", 1.0)) * w, np.float32(attrs.get("beta", 1.0)) * b


def _onnx_steps(path: Path) -> tuple[list[_Step], dict[str, np.ndarray], str, str, int]:
    """The graph's nodes as steps, their constants by buffer name, input and output names, input size."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(
            f"{path.name}: {len(inputs)} inputs and {len(graph.output)} outputs; the converter takes 1 and 1"
        )
    consts: dict[str, np.ndarray] = {}
    buffer_of: dict[str, str] = {}
    steps: list[_Step] = []

    def const(array: np.ndarray, key: str | None = None) -> tuple[str, str]:
        if key is not None and key in buffer_of:
            return ("const", buffer_of[key])
        name = f"c{len(consts)}"
        consts[name] = np.ascontiguousarray(array, dtype=np.float32)
        if key is not None:
            buffer_of[key] = name
        return ("const", name)

    for node in graph.node:
        if node.op_type not in CONVERTIBLE_OPS:
            raise ValueError(
                f"{path.name}: op {node.op_type} (node {node.name!r}) is not one the converter knows "
                f"({', '.join(CONVERTIBLE_OPS)}); export this network to TorchScript with torch instead"
            )
        if node.op_type == "Gemm":
            w, b = _gemm_constants(node, weights, path)
            args = [("value", node.input[0]), const(w), const(b)]
        else:
            args = [const(weights[n], n) if n in weights else ("value", n) for n in node.input]
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0) if node.op_type == "Elu" else 1.0
        steps.append(_Step(node.op_type, args, node.output[0], alpha))
    dims = inputs[0].type.tensor_type.shape.dim
    return steps, consts, inputs[0].name, graph.output[0].name, int(dims[-1].dim_value)


def onnx_to_torchscript(onnx_path: Path, out: Path) -> None:
    """Write a TorchScript module computing what ``onnx_path`` computes (ops ``CONVERTIBLE_OPS`` only;
    ValueError naming any other). The graph is replayed on torch ops and traced at batch 1."""
    import torch

    steps, consts, input_name, output_name, in_dim = _onnx_steps(onnx_path)
    ops: dict[str, Callable[..., torch.Tensor]] = {
        "Sub": torch.sub,
        "Div": torch.div,
        "Gemm": torch.nn.functional.linear,
    }

    class OnnxGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, array in consts.items():
                self.register_buffer(name, torch.from_numpy(array.copy()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = {input_name: x}
            for step in steps:
                args = [values[n] if kind == "value" else getattr(self, n) for kind, n in step.args]
                if step.op == "Elu":
                    values[step.out] = torch.nn.functional.elu(args[0], step.alpha)
                else:
                    values[step.out] = ops[step.op](*args)
            return values[output_name]

    with torch.no_grad(), warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(OnnxGraph().eval(), torch.zeros(1, in_dim))
        torch.jit.save(traced, str(out))


def relative_difference(onnx_path: Path, torch_path: Path, samples: int = 64) -> float:
    """Largest ``max|TorchScript − onnxruntime| / max(1, max|onnxruntime|)`` (both on the CPU) over
    ``samples`` random batch-1 inputs: float32 sums in another order differ by ~1e-7 of the output's
    scale, and these networks' raw outputs reach tens, so an absolute bound would test rounding."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dim = session.get_inputs()[0].shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(torch_path), map_location="cpu")
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(samples):
        x = rng.uniform(-1, 1, (1, dim)).astype(np.float32)
        ref = session.run(None, {name: x})[0]
        with torch.inference_mode():
            got = module(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref))))))
    return worst


def checked_torch_copy(onnx_path: Path, out: Path, convert: Callable[[Path, Path], None]) -> float:
    """``convert(onnx_path, out)``, then ValueError unless it equals onnxruntime to ``SAME_TOL``
    (``relative_difference``); returns that difference."""
    convert(onnx_path, out)
    diff = relative_difference(onnx_path, out)
    if not diff <= SAME_TOL:
        raise ValueError(f"{out.name} differs from {onnx_path.name} by {diff:.2e} (relative) > {SAME_TOL:g}; not timed")
    return diff


# -- devices -------------------------------------------------------------------------------------------


def cuda_problem() -> str | None:
    """Why torch cannot run on a CUDA device here, or None if it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA device here (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


def ort_cuda_problem(onnx_path: Path) -> str | None:
    """Why onnxruntime cannot run ``onnx_path`` on its CUDA provider here, or None if a session does."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return (
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (it lists {', '.join(available)}); "
            "the onnxruntime-gpu package brings it"
        )
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        x = np.zeros([d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape], np.float32)
        session.run(None, {session.get_inputs()[0].name: x})
    except Exception as exc:  # onnxruntime raises its own exception types
        return f"onnxruntime's CUDA provider failed to run {onnx_path.name}: {str(exc).splitlines()[0]}"
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return f"onnxruntime fell back to {session.get_providers()[0]} (the CUDA provider did not load)"
    return None


def device_info() -> dict[str, Any]:
    """The GPU's name, memory, driver and the CUDA torch was built for ({} without a CUDA device)."""
    if cuda_problem() is not None:
        return {}
    import torch

    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {"gpu": props.name, "gpu memory GiB": round(props.total_memory / 2**30)}
    info["torch cuda"] = torch.version.cuda
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        driver = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        if driver:
            info["nvidia driver"] = driver.splitlines()[0]
    with contextlib.suppress(ImportError):
        import onnxruntime as ort

        info["onnxruntime providers"] = ", ".join(ort.get_available_providers())
    return info


# -- the networks ----------------------------------------------------------------------------------------


@dataclass
class Network:
    label: str
    robot: str
    contracts: dict[str, Path]  # backend -> contract path
    torch_diff: float  # the TorchScript copy's relative_difference from onnxruntime


def rough_label(onnx_path: Path) -> str:
    """``go2_rough (232 → 512 → … → 12, …)`` from the ONNX file's layer sizes."""
    steps, consts, *_ = _onnx_steps(onnx_path)
    gemms = [consts[s.args[1][1]].shape for s in steps if s.op == "Gemm"]
    sizes = " → ".join(str(n) for n in [gemms[0][1], *(shape[0] for shape in gemms)])
    extra = {s.op for s in steps} - {"Gemm", "Elu"}
    return f"go2_rough ({sizes}{', normalizer ' + '/'.join(sorted(extra)) + ' in the ONNX' if extra else ''})"


def go2_walk_network(tmp: Path) -> Network:
    """go2_walk: its ONNX contract, and a TorchScript copy of its weights written in ``tmp`` (checked)."""
    onnx_path = load_backend(load_contract("go2_walk")).path
    diff = checked_torch_copy(
        onnx_path, tmp / "go2_walk.pt", lambda src, dst: write_torchscript(mlp_from_onnx(src), dst)
    )
    torch_contract = write_contract("go2_walk", tmp / "go2_walk.pt", "torchscript", tmp)
    return Network(
        GO2, "go2", {"onnxruntime": BUNDLES_DIR / "go2_walk" / "contract.yaml", "torch": torch_contract}, diff
    )


def go2_rough_network(tmp: Path) -> Network:
    """go2_rough: the bundle's ONNX contract, and its ONNX converted to TorchScript in ``tmp`` (checked)."""
    contract = BUNDLES_DIR / "go2_rough" / "contract.yaml"
    onnx_path = load_contract(str(contract)).weights_file()
    diff = checked_torch_copy(onnx_path, tmp / "go2_rough.pt", onnx_to_torchscript)
    torch_contract = write_contract("go2_rough", tmp / "go2_rough.pt", "torchscript", tmp)
    return Network(rough_label(onnx_path), "go2", {"onnxruntime": contract, "torch": torch_contract}, diff)


NETWORKS: dict[str, Callable[[Path], Network]] = {"go2_walk": go2_walk_network, "go2_rough": go2_rough_network}


# -- timing ------------------------------------------------------------------------------------------------


def node_timer(contract_path: Path, robot: str, device: str) -> Callable[[], None]:
    """``PolicyNode.on_state`` with ``device``; RuntimeError if onnxruntime did not put it there."""
    h, call = start_node(contract_path, robot, device)
    session = getattr(h.node.backend, "session", None)
    if session is not None and device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"the node's onnxruntime session runs on {session.get_providers()[0]}, not CUDA")
    return call


BARE_NOTES = {
    "onnxruntime": "session.run on a host numpy array",
    "torch": "from_numpy → .to(device) → forward → .cpu() under torch.inference_mode",
}


def _host_output(fn: Callable[[], object]) -> np.ndarray:
    out = fn()
    return np.asarray(out[0] if isinstance(out, list) else out, dtype=np.float32).reshape(-1)


def measure(net: Network, backend: str, device: str, count: int, repeats: int, where: str) -> list[Row]:
    """The bare and node rows of one network, backend and device (bare first)."""
    path = net.contracts[backend]
    bare_fn, node_fn = bare_call(path, device, host_io=True), node_timer(path, net.robot, device)
    bare = summarize(
        GROUP, f"{net.label}, {backend}, {device}: {KINDS[0]}", [time_calls(bare_fn, count) for _ in range(repeats)]
    )
    node = summarize(
        GROUP, f"{net.label}, {backend}, {device}: {KINDS[1]}", [time_calls(node_fn, count) for _ in range(repeats)]
    )
    bare.note = BARE_NOTES[backend]
    if backend == "torch":
        bare.note += f"; the TorchScript copy equals onnxruntime to {net.torch_diff:.0e} (relative)"
    node.note = f"device: {device}, threads: 1, through a NodeHarness"
    bare.extra["output"] = _host_output(bare_fn).tolist()  # compared across devices by add_ratios
    for row, kind in zip((bare, node), KINDS, strict=True):
        row.placement = where
        row.extra.update(network=net.label, backend=backend, device=device, kind=kind)
    return [bare, node]


def skipped_rows(label: str, backend: str, device: str, why: str, where: str) -> list[Row]:
    """Both kinds of row for one network, backend and device, not measured because ``why``."""
    rows = [skipped(GROUP, f"{label}, {backend}, {device}: {kind}", why, placement=where) for kind in KINDS]
    for row, kind in zip(rows, KINDS, strict=True):
        row.extra.update(network=label, backend=backend, device=device, kind=kind)
    return rows


def add_ratios(rows: list[Row]) -> None:
    """On each measured cuda row: cuda/cpu at p50 against the cpu row of the same network, backend and
    kind; on bare rows also the largest difference between the two devices' outputs."""
    cpu = {_key(r): r for r in rows if r.ran and r.extra.get("device") == "cpu"}
    for r in rows:
        base = cpu.get(_key(r))
        if not r.ran or r.extra.get("device") != "cuda" or base is None:
            continue
        ratio = r.p50 / base.p50
        r.extra["ratio_cuda_cpu_p50"] = ratio
        r.note += f"; cuda/cpu p50 {ratio:.2f}× (cpu {base.p50:.1f} µs): {verdict(ratio)}"
        if "output" in r.extra and "output" in base.extra:
            diff = float(np.max(np.abs(np.subtract(r.extra["output"], base.extra["output"]))))
            r.extra["max_abs_diff_vs_cpu"] = diff
            r.note += f"; output max |cuda − cpu| {diff:.1e}"
    for r in rows:
        r.extra.pop("output", None)


def verdict(ratio: float) -> str:
    """cuda/cpu time at p50 in words; within ``SAME_BAND`` of 1 is "about as fast"."""
    if ratio > 1 + SAME_BAND:
        return "the GPU is SLOWER than the CPU at batch 1"
    if ratio < 1 - SAME_BAND:
        return "the GPU is faster than the CPU at batch 1"
    return "the GPU is about as fast as the CPU at batch 1"


def _key(row: Row) -> tuple[str, str, str]:
    return tuple(row.extra.get(k, "") for k in ("network", "backend", "kind"))


def run(count: int, repeats: int) -> list[Row]:
    cpu_where = f"one thread, core {placement.main_core()}; inference on 1 CPU thread"
    no_cuda = cuda_problem()
    if no_cuda is not None:
        why = f"{no_cuda}; the cpu rows run only beside cuda ones (the policy section has this machine's CPU figures)"
        where = f"one thread, core {placement.main_core()}; inference on a CUDA device (none here)"
        return [row for net in (GO2, "go2_rough") for b in BACKENDS for row in skipped_rows(net, b, "cuda", why, where)]
    import torch

    gpu_where = f"one thread, core {placement.main_core()}; inference on {torch.cuda.get_device_name(0)}"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="krabgraph-bench-gpu-") as tmpdir:
        for name, build in NETWORKS.items():
            try:
                net = build(Path(tmpdir))
            except Exception as exc:
                why = f"could not build the network: {str(exc).splitlines()[0]}"
                rows.append(skipped(GROUP, f"{name}: every row", why, placement=gpu_where, extra={"network": name}))
                continue
            ort_problem = ort_cuda_problem(load_contract(str(net.contracts["onnxruntime"])).weights_file())
            for backend in BACKENDS:
                for device in DEVICES:
                    problem = ort_problem if (backend, device) == ("onnxruntime", "cuda") else None
                    where = cpu_where if device == "cpu" else gpu_where
                    rows += _rows(net, backend, device, count, repeats, where, problem)
    add_ratios(rows)
    return rows


def _rows(
    net: Network, backend: str, device: str, count: int, repeats: int, where: str, problem: str | None
) -> list[Row]:
    """Measured rows, or skipped ones saying why (``problem``, or the failure)."""
    if problem is None:
        try:
            return measure(net, backend, device, count, repeats, where)
        except Exception as exc:
            problem = f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return skipped_rows(net.label, backend, device, problem, where)
