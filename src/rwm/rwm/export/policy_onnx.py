"""Export a PPO actor to ONNX (observation normalization inside the graph); `OnnxPolicy` runs it.

The file carries its contract in metadata: observation layout, action scale, default pose and the
real transitions its training used, so that the ROS policy node and `rwm eval-policy` need nothing
else. Export writes a temporary file and renames it after the parity check (atomic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from rsl_rl.models import MLPModel
from tensordict import TensorDict

from rwm.export.onnx_files import strip_debug_metadata
from rwm.export.runtime import POLICY_INPUT, POLICY_METADATA_KEY, POLICY_OUTPUT, OnnxPolicy
from rwm.robot import contract as C
from rwm.robot.policy_io import includes_last_action

INPUT_NAME, OUTPUT_NAME, METADATA_KEY = POLICY_INPUT, POLICY_OUTPUT, POLICY_METADATA_KEY


def actor_from_checkpoint(path: str | Path, runner_cfg: dict, obs_dim: int) -> MLPModel:
    """Rebuild the rsl-rl actor of a training checkpoint (`model_<it>.pt`)."""
    obs = TensorDict({"policy": torch.zeros(1, obs_dim)}, batch_size=[1])
    actor_cfg = {k: v for k, v in runner_cfg["actor"].items() if k != "class_name"}
    actor = MLPModel(obs, runner_cfg["obs_groups"], "actor", C.ACTION_DIM, **actor_cfg)
    state = torch.load(path, map_location="cpu", weights_only=True)
    actor.load_state_dict(state["actor_state_dict"])
    return actor.eval()


def load_actor_from_onnx(actor: MLPModel, path: str | Path, transitions: int = 10_000_000) -> None:
    """Put an exported policy's weights into an rsl-rl actor of the same architecture, so that a
    training stage can start from any shipped ONNX policy (its critic and optimizer start fresh).

    The MLP's initializers keep the actor's parameter names; the normalization is read from the
    graph's first two nodes, (obs - mean) / (std + eps). `transitions` becomes the normalizer's
    count, so that new data moves its statistics as slowly as that much data would.
    """
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.load(str(path))
    if not any(p.key == METADATA_KEY for p in model.metadata_props):
        raise ValueError(f"{path}: not an rwm policy export (no '{METADATA_KEY}' metadata)")
    graph = model.graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    sub, div = graph.node[0], graph.node[1]
    if (sub.op_type, div.op_type) != ("Sub", "Div") or div.input[0] != sub.output[0]:
        raise ValueError(f"{path}: not an rwm policy export (no observation normalization at its input)")
    state = actor.state_dict()
    norm = actor.obs_normalizer
    std = weights[div.input[1]] - norm.eps
    new = {
        "obs_normalizer._mean": weights[sub.input[1]],
        "obs_normalizer._std": std,
        "obs_normalizer._var": std.square(),
        "obs_normalizer.count": torch.tensor(transitions, dtype=state["obs_normalizer.count"].dtype),
    }
    new.update({k: weights[k] for k in state if k.startswith("mlp.")})
    for key, value in new.items():
        if value.shape != state[key].shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, the actor {tuple(state[key].shape)}"
            )
    actor.load_state_dict({**state, **new})


def export_policy(
    actor: MLPModel, path: str | Path, metadata: dict, parity_samples: int = 1000, tolerance: float = 1e-5
) -> float:
    """Write `actor` (normalizer + MLP, deterministic) to `path`; returns the max parity error."""
    path = Path(path)
    module = actor.as_onnx(verbose=False).cpu().eval()
    obs_dim = actor.obs_dim
    tmp = path.with_suffix(".onnx.tmp")
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        module,
        (torch.zeros(2, obs_dim),),
        str(tmp),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        external_data=False,
    )
    model = onnx.load(str(tmp))
    strip_debug_metadata(model)
    meta = {
        "obs_dim": obs_dim,
        "action_dim": C.ACTION_DIM,
        "action_scale": C.ACTION_SCALE,
        "default_joint_pos": C.DEFAULT_JOINT_POS.tolist(),
        "joint_names": list(C.JOINT_NAMES),
        "include_last_action": includes_last_action(obs_dim),
        "robot": "anymal_d",  # the robot rwm.sim trains on; the caller's metadata may name another
        **metadata,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    err = policy_parity(module, tmp, parity_samples)
    if err > tolerance:
        tmp.unlink()
        raise RuntimeError(f"ONNX parity error {err:.2e} exceeds {tolerance:.0e}; {path} not written")
    os.replace(tmp, path)
    return err


def policy_parity(
    module: torch.nn.Module, onnx_path: str | Path, samples: int = 1000, seed: int = 0
) -> float:
    """Max |torch - onnxruntime| over random observations."""
    obs_dim = OnnxPolicy(onnx_path).obs_dim
    x = torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.0, (samples, obs_dim)).astype(np.float32))
    with torch.no_grad():
        ref = module(x).numpy()
    got = OnnxPolicy(onnx_path)(x.numpy())
    return float(np.abs(ref - got).max())


__all__ = ["OnnxPolicy", "actor_from_checkpoint", "export_policy", "policy_parity"]
