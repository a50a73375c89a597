"""Policy node vs bare inference, onnxruntime and torch, for two networks.

Networks: the Go2 walking policy (``go2_walk``: 45 → 512 → 256 → 128 → 12, ELU; its ONNX file,
and a TorchScript copy built from the ONNX weights), and a 235 → 512 → 256 → 128 → 12 ELU MLP
with random weights made at run time (ANYmal-D rough-terrain sized: 48 proprioceptive values and
a 187-point height scan), written to ONNX and TorchScript in a temporary directory.

- bare: ``session.run`` on a prebuilt ``[1, obs_dim]`` float32 array (the same session options as
  the node's backend: one thread), or the TorchScript module's forward under ``torch.no_grad`` on
  a prebuilt tensor (``torch.set_num_threads(1)``).
- node: ``PolicyNode.on_state`` through a ``NodeHarness`` with the same network: decode the
  ``RobotState`` (joints by name, IMU; the latest command and height scan), build and clip the
  observation, inference, action clip/scale/offset, and publish two messages (the
  ``JointCommand`` and the debug observation). The harness collects published messages in a
  list: it does not serialize or send them (the executor adds that, see the hop rows).

The GPU comparison (``device: cuda``, batch 1) is its own suite, ``policy_gpu.py``.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from krabgraph.launch.api.harness import NodeHarness
from krabgraph.msgs import HeightScan, RobotState, VelocityCommand, set_array
from krabgraph.nodes.policy import load_backend, load_contract
from krabgraph.nodes.policy.contract import BUNDLES_DIR
from krabgraph.nodes.policy.node import PolicyNode
from krabgraph.nodes.robots import load_robot

from . import placement
from .stats import Row, interleaved, skipped, summarize

HIDDEN = (512, 256, 128)
GO2 = "go2_walk (45 → 512 → 256 → 128 → 12)"
MLP = "MLP 235 → 512 → 256 → 128 → 12 (random weights)"
# node ≤ this × bare inference at p50 (issue 16), with onnxruntime; the torch rows have no target
TARGETS = {(GO2, "onnxruntime"): 1.5, (MLP, "onnxruntime"): 1.3}
Layers = list[tuple[np.ndarray, np.ndarray]]  # (weight [out, in], bias [out]) per Linear layer; ELU between


def random_mlp(sizes: tuple[int, ...], seed: int = 0) -> Layers:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32), np.zeros(n_out, np.float32))
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def mlp_from_onnx(path: Path) -> Layers:
    """The layers of an exported rsl_rl actor (a chain of Gemm(transB=1) and Elu), else ValueError."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transB") != 1 or len(node.input) != 3:
                raise ValueError(f"{path.name}: Gemm {node.name} is not x·Wᵀ + b")
            layers.append((weights[node.input[1]].astype(np.float32), weights[node.input[2]].astype(np.float32)))
        elif node.op_type != "Elu":
            raise ValueError(f"{path.name}: {node.op_type} is not part of an ELU MLP")
    return layers


def write_onnx(layers: Layers, path: Path) -> None:
    """The MLP as ONNX: Gemm + Elu per layer, input ``obs`` [1, in], output ``actions`` [1, out]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "obs"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = "actions" if i == len(layers) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y if y == "actions" else f"g{i}"], transB=1))
        if y != "actions":
            nodes.append(helper.make_node("Elu", [f"g{i}"], [y], alpha=1.0))
        x = y
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, layers[0][0].shape[1]])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, layers[-1][0].shape[0]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def write_torchscript(layers: Layers, path: Path) -> None:
    import torch

    mods: list[torch.nn.Module] = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin] if i == len(layers) - 1 else [lin, torch.nn.ELU()]
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; Isaac Lab still exports it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Sequential(*mods).eval()), str(path))


def write_contract(base: str, weights: Path, fmt: str, out: Path) -> Path:
    """A copy of bundle ``base``'s contract pointing at ``weights`` in format ``fmt``."""
    data = yaml.safe_load((BUNDLES_DIR / base / "contract.yaml").read_text())
    data.update(weights=str(weights), format=fmt)
    if fmt != "onnx":
        data.pop("input", None)
        data.pop("output", None)
    path = out / f"{base}-{fmt}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- inputs ------------------------------------------------------------------------------------------


def robot_state(robot: str) -> RobotState:
    """A plausible state of ``robot`` (description joint order, default pose + noise, base velocity)."""
    r = load_robot(robot)
    rng = np.random.default_rng(1)
    msg = RobotState()
    msg.joints.name.extend(r.joint_names)
    set_array(msg.joints.position, r.default_pos + rng.uniform(-0.1, 0.1, r.num_joints))
    set_array(msg.joints.velocity, rng.uniform(-1, 1, r.num_joints))
    msg.imu.orientation.w = 1.0
    msg.imu.angular_velocity.x, msg.imu.angular_velocity.z = 0.1, -0.05
    msg.has_base = True
    msg.base.linear_velocity.x = 0.4
    return msg


def height_scan(contract_path: Path) -> HeightScan | None:
    """A flat-ground scan of the contract's grid, if its observations have a height_scan term."""
    term = next((t for t in load_contract(str(contract_path)).observations if t.name == "height_scan"), None)
    if term is None:
        return None
    msg = HeightScan(offset=term.options.get("offset", 0.0))
    set_array(msg.heights, np.full(term.options["shape"], 0.3, dtype=np.float32))
    return msg


# -- timing --------------------------------------------------------------------------------------------


def time_calls(call: Callable[[], object], count: int, warmup: int = 200) -> np.ndarray:
    """Wall time (µs) of ``count`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    out = np.empty(count)
    clock = time.perf_counter_ns
    for i in range(count):
        t = clock()
        call()
        out[i] = clock() - t
    return out / 1e3


def bare_call(contract_path: Path, device: str = "cpu", host_io: bool = False) -> Callable[[], object]:
    """One inference on a prebuilt input, with the node's backend's session or module (one thread) on
    ``device``. onnxruntime always takes and returns host arrays; torch takes a prebuilt tensor, or
    with ``host_io`` a host array moved to ``device`` and its result moved back (what the node does)."""
    contract = load_contract(str(contract_path))
    backend = load_backend(contract, device=device, threads=1)
    x = np.random.default_rng(2).uniform(-1, 1, (1, contract.obs_dim)).astype(np.float32)
    if hasattr(backend, "session"):
        session, fetch, feed = backend.session, [backend.output_name], {backend.input_name: x}
        return lambda: session.run(fetch, feed)
    import torch

    module, tx, dev = backend.module, torch.from_numpy(x), torch.device(device)
    if host_io:

        def round_trip() -> object:
            with torch.inference_mode():
                return module(torch.from_numpy(x).to(dev)).cpu().numpy()

        return round_trip

    def forward() -> object:
        with torch.no_grad():
            return module(tx)

    return forward


def start_node(contract_path: Path, robot: str, device: str = "cpu") -> tuple[NodeHarness, Callable[[], None]]:
    """A started ``PolicyNode`` (through a NodeHarness) on ``device`` and a call that feeds it one state,
    its outputs discarded untimed; RuntimeError if the first state publishes no command."""
    h = NodeHarness(PolicyNode, bundle=str(contract_path), threads=1, device=device).start()
    h.feed("command", VelocityCommand(vx=0.5, yaw_rate=0.2))
    scan = height_scan(contract_path)
    if scan is not None:
        h.feed("height_scan", scan)
    state = robot_state(robot)
    dt_ns = round(load_contract(str(contract_path)).control_dt * 1e9)
    outs = h.outputs
    tick = [0]

    def call() -> None:
        tick[0] += 1
        state.header.stamp_ns, state.header.seq = tick[0] * dt_ns, tick[0]
        h.feed("state", state)
        if tick[0] % 1000 == 0:
            for v in outs.values():
                v.clear()

    call()
    if not outs["joint_command"]:
        raise RuntimeError(f"{contract_path.name}: the policy node published no command")
    return h, call


def node_call(contract_path: Path, robot: str) -> tuple[Callable[[], object], dict[str, Callable[[], object]]]:
    """``PolicyNode.on_state`` for one state (through a NodeHarness), outputs discarded untimed, and
    the steps around inference on their own (``glue_parts``)."""
    h, call = start_node(contract_path, robot)
    return call, glue_parts(h, robot_state(robot))


def glue_parts(h: NodeHarness, state: RobotState) -> dict[str, Callable[[], object]]:
    """The node's work around inference, one step at a time on the same inputs (for the row's note)."""
    node = h.node
    command, scan, action = node.command.latest, node.height_scan.latest, node.last_action
    obs = node.builder.observe(state, command, scan, action)
    raw = node.backend(obs)
    targets = node.contract.actions.process(raw)[1]
    outs = h.outputs

    def publish() -> None:
        node._publish(state, obs, targets)
        if len(outs["observation"]) >= 1000:
            for v in outs.values():
                v.clear()

    return {
        "observation": lambda: node.builder.observe(state, command, scan, action),
        "action map": lambda: node.contract.actions.process(raw),
        "2 messages": publish,
    }


def _models(tmp: Path) -> dict[str, tuple[dict[str, Path], str]]:
    """``{network: ({backend: contract path}, robot)}``, writing the generated weights into ``tmp``."""
    go2 = load_backend(load_contract("go2_walk")).path
    write_torchscript(mlp_from_onnx(go2), tmp / "go2_walk.pt")
    mlp = random_mlp((235, *HIDDEN, 12))
    write_onnx(mlp, tmp / "mlp235.onnx")
    write_torchscript(mlp, tmp / "mlp235.pt")
    return {
        GO2: (
            {
                "onnxruntime": BUNDLES_DIR / "go2_walk" / "contract.yaml",
                "torch": write_contract("go2_walk", tmp / "go2_walk.pt", "torchscript", tmp),
            },
            "go2",
        ),
        MLP: (
            {
                "onnxruntime": write_contract("anymal_d_rough", tmp / "mlp235.onnx", "onnx", tmp),
                "torch": write_contract("anymal_d_rough", tmp / "mlp235.pt", "torchscript", tmp),
            },
            "anymal_d",
        ),
    }


def run(count: int, repeats: int) -> list[Row]:
    where = f"one thread, core {placement.main_core()}; inference on 1 thread"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="krabgraph-bench-") as tmpdir:
        try:
            models = _models(Path(tmpdir))
        except Exception as exc:
            why = f"could not build the models: {exc}"
            return [skipped("policy", "policy node vs bare inference", why, placement=where)]
        for network, (contracts, robot) in models.items():
            for backend, path in contracts.items():
                name = f"{network}, {backend}"
                try:
                    bare_fn, (node_fn, node_parts) = bare_call(path), node_call(path, robot)
                    runs = interleaved(
                        {
                            "bare": lambda f=bare_fn: time_calls(f, count),
                            "node": lambda f=node_fn: time_calls(f, count),
                        },
                        repeats,
                    )
                    bare, node = runs["bare"], runs["node"]
                    parts = {k: float(np.median(time_calls(f, count))) for k, f in node_parts.items()}
                except Exception as exc:
                    kinds = ("bare inference", "PolicyNode.on_state")
                    rows += [skipped("policy", f"{name}: {k}", f"failed: {exc}", placement=where) for k in kinds]
                    continue
                r_bare = summarize("policy", f"{name}: bare inference", bare, placement=where)
                r_node = summarize("policy", f"{name}: PolicyNode.on_state", node, placement=where)
                ratio = r_node.p50 / r_bare.p50
                r_bare.note = "session.run" if backend == "onnxruntime" else "forward under torch.no_grad"
                split = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
                r_node.note = (
                    f"{ratio:.2f}× bare p50 (+{r_node.p50 - r_bare.p50:.0f} µs: state decode, observation, "
                    f"action map, 2 messages built; p50 of each alone: {split} µs)"
                )
                r_node.extra = {"ratio_p50": ratio, "parts_p50": parts}
                target = TARGETS.get((network, backend))
                if target is None:
                    r_node.note += "; no target for this backend"
                else:
                    met = ratio <= target
                    r_node.note += f"; target ≤ {target}×: {'met' if met else 'MISSED'}"
                    r_node.extra["target_met"] = met
                rows += [r_bare, r_node]
    return rows
