"""The launch and parameter files that rwm_bringup installs are well formed and refer to each other."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

PKG = Path(__file__).resolve().parents[1]


def test_parameter_files_are_ros2_params_files():
    files = sorted((PKG / "config").glob("*.yaml"))
    assert files
    for f in files:
        data = yaml.safe_load(f.read_text())
        if f.name == "robot_variants.yaml":  # the simulated robots, not node parameters
            from rwm.sim.variants import load_variants

            assert "nominal" in load_variants(f)
            continue
        for node, body in data.items():
            assert set(body) == {"ros__parameters"}, f"{f.name}: {node} must hold only ros__parameters"


def test_launch_file_uses_existing_config():
    source = (PKG / "launch" / "anymal.launch.py").read_text()
    tree = ast.parse(source)
    yamls = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and n.value.endswith(".yaml")
        and n.value != ".yaml"  # the suffix of the per-node parameter files it writes
    }
    assert yamls, "the launch file loads parameter files"
    for name in yamls:
        assert (PKG / "config" / name).is_file(), name
