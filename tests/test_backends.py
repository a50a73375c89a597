"""Inference backends: an rsl_rl checkpoint, its TorchScript and its ONNX export give one answer.

Networks are generated at test time (seeded) in Isaac Lab's ANYmal-D flat layout: 48 observations,
actor MLP 48 -> 128 -> 128 -> 12 with ELU, saved in each rsl-rl-lib checkpoint layout.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from krabgraph.nodes.policy import ContractError, load_backend, load_contract
from krabgraph.nodes.policy.backends import OnnxBackend, RslRlBackend, TorchScriptBackend

torch = pytest.importorskip("torch")

ANYMAL_JOINTS = [f"{leg}_{j}" for leg in ("LF", "LH", "RF", "RH") for j in ("HAA", "HFE", "KFE")]
FLAT_TERMS = [  # Isaac Lab velocity-tracking policy observations: 48 values with 12 joints
    "base_lin_vel",
    "base_ang_vel",
    "projected_gravity",
    "velocity_commands",
    "joint_pos_rel",
    "joint_vel_rel",
    "last_action",
]
OBS_DIM, ACT_DIM, HIDDEN = 48, 12, (128, 128)


class Normalizer(torch.nn.Module):
    """Reference empirical normalizer: (x - mean) / (std + 0.01), as rsl_rl computes it."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.std + 0.01)


def make_mlp(activation: type[torch.nn.Module]) -> torch.nn.Sequential:
    dims = (OBS_DIM, *HIDDEN, ACT_DIM)
    layers: list[torch.nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(activation())
    mlp = torch.nn.Sequential(*layers)
    for layer in mlp:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.bias, std=0.3)  # non-zero biases so a bias mix-up shows
    return mlp


def state_dict(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: Path, layout: str, mlp: torch.nn.Sequential, norm: Normalizer | None) -> None:
    """``torch.save`` of the runner dict as rsl-rl-lib 2.2 (v2), 2.3-3.x (v3) or >= 4 (v5) writes it."""
    critic = make_mlp(torch.nn.ELU)
    stats = {}
    if norm is not None:
        stats = {
            "_mean": norm.mean.reshape(1, -1).clone(),
            "_var": (norm.std**2).reshape(1, -1).clone(),
            "_std": norm.std.reshape(1, -1).clone(),
            "count": torch.tensor(1000, dtype=torch.long),
        }
    if layout == "v5":
        actor = state_dict(mlp, "mlp.") | {"obs_normalizer." + k: v for k, v in stats.items()}
        actor["distribution.std_param"] = torch.ones(ACT_DIM)
        ckpt = {"actor_state_dict": actor, "critic_state_dict": state_dict(critic, "mlp."), "iter": 1500}
    else:
        model = state_dict(mlp, "actor.") | state_dict(critic, "critic.") | {"std": torch.ones(ACT_DIM)}
        ckpt = {"model_state_dict": model, "optimizer_state_dict": {}, "iter": 1500, "infos": None}
        if layout == "v3":
            model.update({"actor_obs_normalizer." + k: v for k, v in stats.items()})
        elif stats:
            ckpt["obs_norm_state_dict"] = stats
    torch.save(ckpt, path)


def export_onnx(module: torch.nn.Module, path: Path) -> None:
    pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, OBS_DIM),),
            str(path),
            dynamo=False,
            input_names=["obs"],
            output_names=["actions"],
            opset_version=17,
        )


def write_contract(directory: Path, weights: str, fmt: str, **extra) -> Path:
    data = {
        "name": "anymal_d_flat",
        "robot": "anymal_d",
        "weights": weights,
        "format": fmt,
        "control_dt": 0.02,
        "joints": extra.pop("joints", ANYMAL_JOINTS),
        "default_joint_pos": {".*HAA": 0.0, "(LF|RF)_HFE": 0.4, "(LH|RH)_HFE": -0.4, "(LF|RF)_KFE": -0.8}
        | {"(LH|RH)_KFE": 0.8},
        "observations": {"terms": extra.pop("terms", FLAT_TERMS)},
        "actions": {"scale": 0.5},
        "gains": {"kp": 80.0, "kd": 2.0},
        **extra,
    }
    path = directory / f"{Path(weights).stem}.{fmt}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module", params=["v3", "v5", "v2"])
def exported(request, tmp_path_factory):
    """(directory, reference module): one actor as rsl_rl checkpoint, TorchScript and ONNX."""
    layout = request.param
    torch.manual_seed({"v2": 2, "v3": 3, "v5": 5}[layout])
    mlp = make_mlp(torch.nn.ELU)
    norm = None
    if layout != "v3":
        norm = Normalizer(torch.randn(OBS_DIM) * 0.5, torch.rand(OBS_DIM) * 2 + 0.1)
    reference = torch.nn.Sequential(norm, mlp) if norm is not None else mlp
    reference.eval()
    directory = tmp_path_factory.mktemp(f"actor_{layout}")
    save_checkpoint(directory / "model_1500.pt", layout, mlp, norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(reference).save(str(directory / "policy.pt"))
    export_onnx(reference, directory / "policy.onnx")
    return directory, reference


def test_rsl_rl_torchscript_and_onnx_backends_agree(exported):
    directory, reference = exported
    backends = {
        "rsl_rl": load_backend(load_contract(write_contract(directory, "model_1500.pt", "rsl_rl"))),
        "torchscript": load_backend(load_contract(write_contract(directory, "policy.pt", "torchscript"))),
        "onnx": load_backend(load_contract(write_contract(directory, "policy.onnx", "onnx"))),
    }
    assert isinstance(backends["rsl_rl"], RslRlBackend)
    assert isinstance(backends["torchscript"], TorchScriptBackend)
    assert isinstance(backends["onnx"], OnnxBackend)
    rng = np.random.default_rng(0)
    obs = rng.normal(scale=2.0, size=(32, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(obs)).numpy()
    assert np.abs(expected).max() > 0.5  # a meaningful comparison, not all zeros
    for name, backend in backends.items():
        got = np.stack([backend(o) for o in obs])
        assert got.shape == (32, ACT_DIM) and got.dtype == np.float32, name
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_rsl_rl_normalizer_is_read_from_each_layout(exported):
    directory, reference = exported
    backend = load_backend(load_contract(write_contract(directory, "model_1500.pt", "rsl_rl")))
    has_norm = isinstance(reference[0], Normalizer) if isinstance(reference, torch.nn.Sequential) else False
    assert backend.normalizes == has_norm
    if has_norm:
        np.testing.assert_allclose(backend.obs_mean, reference[0].mean.numpy())


def test_rsl_rl_activation_comes_from_the_contract(tmp_path):
    torch.manual_seed(11)
    mlp = make_mlp(torch.nn.Tanh).eval()
    save_checkpoint(tmp_path / "tanh.pt", "v5", mlp, None)
    obs = np.random.default_rng(1).normal(size=OBS_DIM).astype(np.float32)
    with torch.no_grad():
        expected = mlp(torch.from_numpy(obs)).numpy()
    tanh = load_backend(load_contract(write_contract(tmp_path, "tanh.pt", "rsl_rl", activation="tanh")))
    np.testing.assert_allclose(tanh(obs), expected, rtol=1e-5, atol=1e-5)
    elu = load_backend(load_contract(write_contract(tmp_path, "tanh.pt", "rsl_rl")))  # default elu
    assert np.abs(elu(obs) - expected).max() > 1e-2


# -- dimension checks and load errors ------------------------------------------------------------


def test_observation_size_mismatch_is_reported_with_the_terms(exported):
    directory, _ = exported
    terms = FLAT_TERMS[1:]  # no base_lin_vel: 45 values (the go2 layout) for a 48-input network
    for weights, fmt, message in [
        ("policy.onnx", "onnx", "the terms add up to 45 values (base_ang_vel=3, projected_gravity=3, "),
        ("model_1500.pt", "rsl_rl", "but model_1500.pt takes 48; make the terms, their history and the joints"),
        ("policy.pt", "torchscript", "policy.pt rejects an observation of 45 values (base_ang_vel=3,"),
    ]:
        contract = load_contract(write_contract(directory, weights, fmt, terms=terms))
        with pytest.raises(ContractError, match="observations: ") as info:
            load_backend(contract)
        assert message in str(info.value)
        assert str(info.value).startswith(str(contract.path))


def test_action_size_mismatch_is_reported_against_the_joints(exported):
    directory, _ = exported
    joints = ANYMAL_JOINTS[:11]
    terms = [*FLAT_TERMS[:4], {"name": "joint_pos_rel", "scale": 1.0}, "joint_vel_rel", "last_action", "base_ang_vel"]
    # 12 + 3 * 11 + 3 = 48 inputs again, but 11 actions for a 12-output network.
    for weights, fmt in [("policy.onnx", "onnx"), ("model_1500.pt", "rsl_rl"), ("policy.pt", "torchscript")]:
        contract = load_contract(_contract_for_joints(directory, weights, fmt, joints, terms))
        with pytest.raises(ContractError, match=r"joints: 11 joints are listed but .* outputs 12 actions"):
            load_backend(contract)


def _contract_for_joints(directory: Path, weights: str, fmt: str, joints: list[str], terms: list) -> Path:
    path = write_contract(directory, weights, fmt, joints=joints, terms=terms)
    data = yaml.safe_load(path.read_text())
    data["default_joint_pos"] = {".*": 0.0}
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_headed_actor_is_refused(tmp_path):
    mlp = torch.nn.Sequential(torch.nn.Linear(OBS_DIM, 32), torch.nn.ELU(), torch.nn.Linear(32, 2 * ACT_DIM))
    torch.save({"actor_state_dict": state_dict(mlp, "mlp.")}, tmp_path / "hetero.pt")
    contract = load_contract(write_contract(tmp_path, "hetero.pt", "rsl_rl"))
    with pytest.raises(ContractError, match=r"format: hetero.pt: the actor outputs 24 = 2 x 12 values"):
        load_backend(contract)


def test_wrong_format_and_unknown_layout_errors(exported, tmp_path):
    directory, _ = exported
    as_script = load_contract(write_contract(directory, "model_1500.pt", "torchscript"))
    with pytest.raises(ContractError, match=r"weights: .*not a TorchScript module.*format rsl_rl"):
        load_backend(as_script)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ContractError, match=r"no actor_state_dict .* or model_state_dict .* \(keys: state_dict\)"):
        load_backend(load_contract(write_contract(tmp_path, "other.pt", "rsl_rl")))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ContractError, match=r"weights: .*junk\.onnx: not a loadable ONNX model"):
        load_backend(load_contract(write_contract(tmp_path, "junk.onnx", "onnx")))


def test_onnx_input_and_output_names_are_checked(exported):
    directory, _ = exported
    contract = load_contract(write_contract(directory, "policy.onnx", "onnx", input="observations"))
    with pytest.raises(ContractError, match=r"weights: the model has no input 'observations' \(inputs: \['obs'\]\)"):
        load_backend(contract)


# -- the shipped go2 policy ----------------------------------------------------------------------


def test_go2_walk_onnx_session_is_single_threaded_and_deterministic():
    backend = load_backend(load_contract("go2_walk"))
    assert isinstance(backend, OnnxBackend)
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert (backend.input_dim, backend.output_dim) == (45, 12)
    obs = np.random.default_rng(3).normal(size=45).astype(np.float32)
    a, b = backend(obs), backend(obs)
    assert a.shape == (12,) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, backend(np.zeros(45, dtype=np.float32)))


def test_onnx_path_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "from krabgraph.nodes.policy import load_backend, load_contract\n"
        "from krabgraph.nodes.policy.node import PolicyNode\n"
        "b = load_backend(load_contract('go2_walk'))\n"
        "b(np.zeros(45, dtype=np.float32))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
