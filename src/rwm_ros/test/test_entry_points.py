"""Every console script that colcon installs into lib/rwm_ros points at an importable node main()."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict(s.replace(" ", "").split("=", 1) for s in scripts)
    raise AssertionError("setup.py declares no entry_points")


def test_every_entry_point_imports():
    scripts = _console_scripts()
    assert "sim_node" in scripts
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
