"""Inference backends: ONNX (onnxruntime), TorchScript and rsl_rl checkpoints, one interface.

``backend(obs)`` takes the float32 observation ``[obs_dim]`` and returns the raw network output
``[action_dim]`` (float32, before the contract's action clip and scale). ``load_backend(contract)``
picks the backend for the contract's ``format`` and checks the network's input and output sizes
against the dimensions the contract derives. torch is imported only for TorchScript and rsl_rl.

rsl_rl checkpoints (``torch.save`` of the runner's dict) hold the actor MLP as alternating
``Linear``/activation modules, so its linear layers are the state-dict keys ``<prefix><i>.weight``
and ``<prefix><i>.bias``:

- rsl-rl-lib >= 4: ``actor_state_dict``, prefix ``mlp.``; normalizer ``obs_normalizer.*``.
- rsl-rl-lib 2.3-3.x: ``model_state_dict`` (ActorCritic), prefix ``actor.``; normalizer
  ``actor_obs_normalizer.*``.
- rsl-rl-lib <= 2.2: ``model_state_dict``, prefix ``actor.``; normalizer in ``obs_norm_state_dict``.

The empirical normalizer computes ``(x - _mean) / (_std + 0.01)``. The action noise (``std``,
``log_std``, ``distribution.*``) is ignored: inference uses the mean. The activation is not in the
checkpoint; it comes from the contract (``elu``, as in Isaac Lab's rsl_rl configs).
"""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from krabgraph.nodes.policy.contract import Contract

NORMALIZER_EPS = 1e-2  # rsl_rl EmpiricalNormalization default


class PolicyBackend(ABC):
    """A loaded network: ``backend(obs[obs_dim]) -> actions[action_dim]``, float32."""

    path: Path
    input_dim: int | None = None  # None: not knowable before a forward pass
    output_dim: int | None = None

    @abstractmethod
    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None:  # noqa: B027 - optional hook, a no-op for feed-forward policies
        """Clear any recurrent state."""

    def bind(self) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """For a caller that runs the network once per tick: ``(x, run)``, where ``x`` is a float32
        ``[input_dim]`` array to write the observation into and ``run()`` returns ``self(x)``. The
        result may be a buffer the next ``run()`` overwrites: copy what outlives the tick."""
        x = np.zeros(self.input_dim or 0, dtype=np.float32)
        return x, lambda: self(x)


# -- ONNX ----------------------------------------------------------------------------------------

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxBackend(PolicyBackend):
    """onnxruntime session tuned for one small batch-1 call per tick.

    ``threads=1`` runs the graph on the calling thread (no pool, no spinning): for policy-sized
    MLPs this is the lowest latency and leaves the other cores to the simulator.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_name: str | None = None,
        output_name: str | None = None,
        threads: int = 1,
        device: str = "cpu",
    ):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"device {device!r}: onnxruntime has no CUDAExecutionProvider; use device 'cpu'")
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ValueError(f"device {device!r} is not supported by the ONNX backend; use 'cpu' or 'cuda'")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if input_name is None:
            if len(inputs) != 1:
                raise KeyError(f"the model has inputs {sorted(inputs)}; name the observation one with `input`")
            input_name = next(iter(inputs))
        if input_name not in inputs:
            raise KeyError(f"the model has no input {input_name!r} (inputs: {sorted(inputs)})")
        if output_name is None:
            output_name = outputs[0]
        if output_name not in outputs:
            raise KeyError(f"the model has no output {output_name!r} (outputs: {outputs})")
        self.input_name, self.output_name = input_name, output_name
        spec = inputs[input_name]
        self._input_shape = [d if isinstance(d, int) else 1 for d in spec.shape] or [1]
        self._dtype = _ONNX_DTYPES.get(spec.type, np.float32)
        self.input_dim = _static_last_dim(spec.shape)
        out_spec = next(o for o in self.session.get_outputs() if o.name == output_name)
        self.output_dim = _static_last_dim(out_spec.shape)
        self._fetch = [output_name]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=self._dtype).reshape(self._input_shape)
        out = self.session.run(self._fetch, {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def bind(self) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """``PolicyBackend.bind`` through an ``IOBinding`` on preallocated arrays: no per-call input
        checks, allocation or output copy (a few µs of a ~15 µs MLP call). Only on the CPU, for a
        float32 model with static output shape, and only if one call gives what ``self(x)`` gives;
        otherwise the plain call."""
        bound = self._bound_call() if self.session.get_providers()[0] == "CPUExecutionProvider" else None
        return bound if bound is not None else super().bind()

    def _bound_call(self) -> tuple[np.ndarray, Callable[[], np.ndarray]] | None:
        import onnxruntime as ort

        out_spec = next(o for o in self.session.get_outputs() if o.name == self.output_name)
        out_shape = [d if isinstance(d, int) else None for d in out_spec.shape]
        if self._dtype is not np.float32 or _ONNX_DTYPES.get(out_spec.type) is not np.float32 or None in out_shape:
            return None
        x = np.zeros(self._input_shape, dtype=np.float32)
        y = np.zeros(out_shape, dtype=np.float32)
        binding = self.session.io_binding()
        values = ort.OrtValue.ortvalue_from_numpy(x), ort.OrtValue.ortvalue_from_numpy(y)  # views of x and y
        binding.bind_ortvalue_input(self.input_name, values[0])
        binding.bind_ortvalue_output(self.output_name, values[1])
        options = ort.RunOptions()
        session, raw = getattr(self.session, "_sess", None), getattr(binding, "_iobinding", None)
        if session is None or raw is None:  # onnxruntime's internals moved: its checked wrapper is slower
            return None
        run_bound, flat_x, flat_y = session.run_with_iobinding, x.reshape(-1), y.reshape(-1)

        def run(keep: tuple = (binding, values)) -> np.ndarray:  # ``keep``: the binding lives as long as ``run``
            run_bound(raw, options)
            return flat_y

        probe = np.linspace(-1.0, 1.0, flat_x.size, dtype=np.float32)
        flat_x[:] = probe
        try:
            same = np.array_equal(run(), self(probe))
        except Exception:  # onnxruntime raises its own exception types
            same = False
        flat_x[:] = 0.0
        return (flat_x, run) if same else None


def _static_last_dim(shape: list[Any]) -> int | None:
    if not shape:
        return None
    last = shape[-1]
    return last if isinstance(last, int) else None


# -- TorchScript ---------------------------------------------------------------------------------


class TorchScriptBackend(PolicyBackend):
    """A ``torch.jit`` module called on a ``[1, obs_dim]`` tensor under ``torch.inference_mode``."""

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
        import torch

        self.path = Path(path)
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; Isaac Lab still exports it
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(self.path), map_location=self.device)
        except RuntimeError as exc:
            raise ValueError(
                f"{self.path}: not a TorchScript module ({str(exc).splitlines()[0]}); "
                "a training checkpoint is format rsl_rl"
            ) from None
        self.module.eval()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.asarray(obs, dtype=np.float32).reshape(1, -1)).to(self.device)
        with torch.inference_mode():
            out = self.module(x)
        return out.detach().to("cpu").numpy().astype(np.float32, copy=False).reshape(-1)

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()


# -- rsl_rl checkpoints --------------------------------------------------------------------------


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf, otypes=[x.dtype])(x / np.sqrt(2.0)))


def _selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = np.float32(1.6732632423543772), np.float32(1.0507009873554805)
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x).astype(x.dtype)


ACTIVATIONS = {
    "elu": _elu,
    "crelu": _elu,  # torch CELU with alpha 1 is ELU
    "selu": _selu,
    "relu": lambda x: np.maximum(x, 0),
    "lrelu": lambda x: np.where(x > 0, x, np.float32(0.01) * x),
    "tanh": np.tanh,
    "sigmoid": lambda x: (1.0 / (1.0 + np.exp(-x))).astype(x.dtype),
    "softplus": _softplus,
    "gelu": _gelu,
    "swish": lambda x: (x / (1.0 + np.exp(-x))).astype(x.dtype),
    "mish": lambda x: x * np.tanh(_softplus(x)),
}

# (state-dict key, MLP prefix, normalizer prefix) per checkpoint layout, newest first.
_LAYOUTS = (
    ("actor_state_dict", "mlp.", "obs_normalizer."),
    ("model_state_dict", "actor.", "actor_obs_normalizer."),
)
_NOISE_KEYS = ("std", "log_std", "distribution.std_param", "distribution.log_std_param")


class RslRlBackend(PolicyBackend):
    """The actor MLP of an rsl_rl training checkpoint, evaluated in NumPy (float32).

    Only torch.load needs torch; inference does not. Feed-forward Gaussian actors only: actors with
    a state-dependent distribution (two output heads) must be exported to ONNX by rsl_rl instead.
    """

    def __init__(self, path: str | Path, *, activation: str = "elu"):
        self.path = Path(path)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self._activation = ACTIVATIONS[activation]
        weights, biases, mean, std, noise = _read_actor(_torch_load(self.path), self.path)
        self.weights = weights
        self.biases = biases
        self.obs_mean, self.obs_std = mean, std
        self.input_dim = weights[0].shape[1]
        self.output_dim = weights[-1].shape[0]
        self.noise_dim = noise  # size of the std parameter; None for deterministic or two-headed actors

    @property
    def normalizes(self) -> bool:
        return self.obs_mean is not None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if self.obs_mean is not None:
            x = (x - self.obs_mean) / (self.obs_std + np.float32(NORMALIZER_EPS))
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = w @ x + b
            if i < last:
                x = self._activation(x)
        return x.astype(np.float32, copy=False)


def _torch_load(path: Path) -> Mapping[str, Any]:
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise ValueError(
            f"{path}: not a loadable rsl_rl checkpoint ({str(exc).splitlines()[0]}); "
            "it must be torch.save of plain state dicts (TorchScript files are format torchscript)"
        ) from None
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def _numpy(t: Any) -> np.ndarray:
    return t.detach().to("cpu").float().numpy().copy()


def _read_actor(ckpt: Mapping[str, Any], path: Path) -> tuple[list, list, Any, Any, int | None]:
    """(weights, biases, obs mean or None, obs std or None, action noise size or None)."""
    layout = next((entry for entry in _LAYOUTS if entry[0] in ckpt), None)
    if layout is None:
        keys = ", ".join(sorted(map(str, ckpt))[:8])
        raise ValueError(
            f"{path}: no actor_state_dict (rsl-rl-lib >= 4) or model_state_dict (<= 3) in the checkpoint (keys: {keys})"
        )
    dict_key, mlp_prefix, norm_prefix = layout
    state = ckpt[dict_key]
    pattern = re.compile(re.escape(mlp_prefix) + r"(\d+)\.(weight|bias)$")
    layers: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        match = pattern.match(key)
        if match:
            layers.setdefault(int(match[1]), {})[match[2]] = value
        elif key.startswith(mlp_prefix):
            raise ValueError(f"{path}: unsupported actor parameter {key!r}; only Linear layers are supported")
    if not layers:
        raise ValueError(f"{path}: {dict_key} has no {mlp_prefix}<i>.weight keys; not an MLP actor")
    weights, biases = [], []
    for index in sorted(layers):
        layer = layers[index]
        if set(layer) != {"weight", "bias"} or layer["weight"].dim() != 2:
            raise ValueError(f"{path}: actor layer {mlp_prefix}{index} is not a Linear layer with bias")
        w, b = _numpy(layer["weight"]), _numpy(layer["bias"])
        if weights and w.shape[1] != weights[-1].shape[0]:
            raise ValueError(
                f"{path}: actor layer {mlp_prefix}{index} takes {w.shape[1]} inputs after a layer of "
                f"{weights[-1].shape[0]} outputs"
            )
        weights.append(w)
        biases.append(b)
    norm = {k[len(norm_prefix) :]: v for k, v in state.items() if k.startswith(norm_prefix)}
    if not norm and dict_key == "model_state_dict" and "obs_norm_state_dict" in ckpt:
        norm = dict(ckpt["obs_norm_state_dict"])
    mean = std = None
    if norm:
        if "_mean" not in norm or "_std" not in norm:
            raise ValueError(f"{path}: observation normalizer lacks _mean/_std (has {sorted(norm)})")
        mean, std = _numpy(norm["_mean"]).reshape(-1), _numpy(norm["_std"]).reshape(-1)
        if mean.shape != (weights[0].shape[1],) or std.shape != mean.shape:
            raise ValueError(f"{path}: observation normalizer size {mean.size} != actor input {weights[0].shape[1]}")
    noise = next((int(state[k].numel()) for k in _NOISE_KEYS if k in state), None)
    return weights, biases, mean, std, noise


# -- choosing and checking -----------------------------------------------------------------------


def load_backend(contract: Contract, *, device: str = "cpu", threads: int | None = 1) -> PolicyBackend:
    """The contract's network, loaded and checked against its observation and action sizes.

    Raises ``ContractError`` naming the contract file when the weights cannot be loaded or do not
    fit the contract (the most common cause: terms, history or joints differ from training).
    """
    path = contract.weights_file()
    try:
        if contract.format == "onnx":
            backend: PolicyBackend = OnnxBackend(
                path,
                input_name=contract.input_name,
                output_name=contract.output_name,
                threads=threads or 1,
                device=device,
            )
        elif contract.format == "torchscript":
            backend = TorchScriptBackend(path, device=device, threads=threads)
        else:
            backend = RslRlBackend(path, activation=contract.activation)
    except (ValueError, KeyError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise contract.error("weights", message) from None
    _check_dims(contract, backend)
    return backend


def _check_dims(contract: Contract, backend: PolicyBackend) -> None:
    obs_dim, action_dim = contract.obs_dim, contract.action_dim
    terms = ", ".join(f"{t.name}={t.size}" for t in contract.observations)
    if isinstance(backend, RslRlBackend) and backend.noise_dim is None and backend.output_dim == 2 * action_dim:
        raise contract.error(
            "format",
            f"{backend.path.name}: the actor outputs {backend.output_dim} = 2 x {action_dim} values (a state-dependent "
            "distribution); export it to ONNX with rsl_rl and use format onnx",
        )
    if backend.input_dim is None or backend.output_dim is None:
        try:
            out = backend(np.zeros(obs_dim, dtype=np.float32))
        except Exception as exc:  # the network's own shape error, whatever its type
            raise contract.error(
                "observations",
                f"{backend.path.name} rejects an observation of {obs_dim} values ({terms}): "
                f"{str(exc).splitlines()[0]}; make the terms match the network's input",
            ) from None
        backend.reset()
        backend.input_dim = backend.input_dim or obs_dim
        backend.output_dim = backend.output_dim or int(out.size)
    if backend.input_dim != obs_dim:
        raise contract.error(
            "observations",
            f"the terms add up to {obs_dim} values ({terms}) but {backend.path.name} takes {backend.input_dim}; "
            "make the terms, their history and the joints match the training configuration",
        )
    if backend.output_dim != action_dim:
        raise contract.error(
            "joints",
            f"{action_dim} joints are listed but {backend.path.name} outputs {backend.output_dim} actions; "
            "list exactly the joints the policy drives, in its order",
        )
