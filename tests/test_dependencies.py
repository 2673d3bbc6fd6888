"""The core's one dependency order: a package imports only from its own layer or the layers below it,
the ROS-free core never imports the nodes, and reading bags or running the control path loads
neither MuJoCo nor torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "src" / "rwm" / "rwm"
LAYERS = [
    "robot",  # contract, description, URDF -> MuJoCo, kinematics, the policy's interface
    "sim",  # the simulated robot and the batched environment
    "data",  # trajectories, bags, array datasets
    "storage",  # the replay buffer
    "models",  # world models (torch)
    "export",  # ONNX files and their runtime
    "training",  # the world-model learner and its loss
    "rl",  # rsl-rl environments: simulation and imagination
    "evaluation",  # policies and world models measured
    "control",  # the 50 Hz control path and the health monitor
    "runners",  # pretraining, refinement, PPO, MBPO-PPO: collect -> update -> evaluate -> save
    "experiments",  # tables and sweeps of runs
    "cli",
]
"""Lowest first."""


def _layer(module: str) -> int:
    """Layer of 'rwm.x.y' (or 'rwm.cli')."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def test_every_import_goes_down_the_layers() -> None:
    wrong = []
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        module = "rwm." + ".".join(path.relative_to(CORE).with_suffix("").parts)
        own = _layer(module)
        for line, name in _imports(path):
            if name.startswith("rwm_ros"):
                wrong.append(
                    f"{path.relative_to(CORE)}:{line} imports {name}: the core never imports the nodes"
                )
            elif name.startswith("rwm.") and _layer(name) > own:
                wrong.append(
                    f"{path.relative_to(CORE)}:{line} imports {name}: {LAYERS[_layer(name)]} is above "
                    f"{LAYERS[own] if own < len(LAYERS) else module}"
                )
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from rwm.runners.world_model import train_world_model\nimport rwm.rl.vec_env\n")
    assert [_layer(name) for _, name in _imports(bad)] == [LAYERS.index("runners"), LAYERS.index("rl")]
    assert _layer("rwm.cli") == LAYERS.index("cli") and _layer("rwm.data.bag_loader") < _layer("rwm.sim") + 2


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (["rwm.data.bag_loader", "rwm.data.bag_recovery", "rwm.data.bag_recorder"], ["mujoco", "torch"]),
        (["rwm.data.array_dataset", "rwm.data.trajectory"], ["mujoco", "torch"]),
        (["rwm.control.policy_loop", "rwm.control.world_model_monitor"], ["mujoco", "torch"]),
        (["rwm.runners.refinement"], ["mujoco"]),  # what the trainer node needs
    ],
)
def test_light_paths_import_nothing_heavy(modules: list[str], absent: list[str]) -> None:
    code = f"import sys; import {', '.join(modules)}; print([m for m in {absent!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": str(CORE.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.strip() == "[]", f"{modules} import {out.strip()}"
