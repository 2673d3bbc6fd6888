"""Export one world-model step to ONNX: (state, action, hidden) -> (mean, std, contact logits, hidden,
spread), spread being the ensemble members' disagreement (std of their means; zeros for one model).

Inputs and outputs are in physical units (normalization is inside the graph), so the ROS
world-model node feeds the robot's state and the commanded targets directly. The health monitor's
anomaly threshold is calibrated on the model's validation trajectories at export and stored with it
(`rwm.export.anomaly`), so every version carries its own. Export writes a temporary file, checks
parity over an autoregressive rollout, then renames (atomic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from rwm.export.anomaly import AnomalyCalibration, calibrate_threshold, monitor_step_error
from rwm.export.onnx_files import strip_debug_metadata
from rwm.export.runtime import WM_INPUTS, WM_METADATA_KEY, WM_OUTPUTS, OnnxWorldModel
from rwm.models.ensemble import RWMEnsemble
from rwm.models.rwm import RobotWorldModel
from rwm.robot import contract as C

INPUTS, OUTPUTS, METADATA_KEY = WM_INPUTS, WM_OUTPUTS, WM_METADATA_KEY


class _Step(nn.Module):
    """The model's step in physical units, batch-first hidden (B, layers, size) for ONNX.

    The GRU cell is written out from nn.GRU's own weights (gates r, z, n in PyTorch's order): the
    exporter cannot trace nn.GRU's sequence loop, and one step needs no loop. An ensemble of RWMs
    keeps its members' GRU states side by side in `hidden`, each stepped by its own GRU.
    """

    def __init__(self, model: RobotWorldModel | RWMEnsemble) -> None:
        super().__init__()
        self.model = model
        self.grus = model.gru_modules()

    @staticmethod
    def _gru_step(gru: nn.GRU, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        out = []
        for layer in range(gru.num_layers):
            h = hidden[:, layer]
            gi = x @ getattr(gru, f"weight_ih_l{layer}").T + getattr(gru, f"bias_ih_l{layer}")
            gh = h @ getattr(gru, f"weight_hh_l{layer}").T + getattr(gru, f"bias_hh_l{layer}")
            i_r, i_z, i_n = gi.chunk(3, -1)
            h_r, h_z, h_n = gh.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            x = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
            out.append(x)
        return torch.stack(out, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor, hidden: torch.Tensor):
        norm = self.model.normalizer
        state_n = norm.state(state)
        x = torch.cat([state_n, norm.action(action)], -1)
        next_hidden = torch.cat(
            [
                self._gru_step(gru, x, h)
                for gru, h in zip(self.grus, hidden.chunk(len(self.grus), -1), strict=True)
            ],
            -1,
        )
        means_n, stds_n, logits = self.model.member_heads(next_hidden[:, -1], state_n)
        # ensemble_gaussian written with sums: the exporter names an aten.mean value "mean", which
        # would clash with the output of that name
        k = len(means_n)
        mean_n = means_n.sum(0) / k
        epistemic = (means_n - mean_n).square().sum(0) / k
        std_n = (stds_n.square().sum(0) / k + epistemic).sqrt()
        spread_n = epistemic.sqrt()
        scale = norm.state_std
        return norm.state_inverse(mean_n), std_n * scale, logits, next_hidden, spread_n * scale


@torch.no_grad()
def validation_errors(
    model: RobotWorldModel | RWMEnsemble, trajectories: dict[str, torch.Tensor]
) -> np.ndarray:
    """(T, B) one-step errors of the model following (B, T, .) physical-unit trajectories step by
    step, as the monitor does (row 0, with no prediction yet, is NaN)."""
    model.eval()
    norm = model.normalizer
    state, action = trajectories["state"], trajectories["action"]
    mean_n, std_n = model.sequence(norm.state(state[:, :-1]), norm.action(action[:, :-1]))[:2]
    errors = monitor_step_error(
        norm.state_inverse(mean_n).double().numpy(),
        (std_n * norm.state_std).double().numpy(),
        state[:, 1:].double().numpy(),
    )
    return np.concatenate([np.full((1, len(state)), np.nan), errors.T])


def export_world_model(
    model: RobotWorldModel | RWMEnsemble,
    path: str | Path,
    metadata: dict,
    validation: list[dict[str, torch.Tensor]],
    calibration: AnomalyCalibration = AnomalyCalibration(),
    tolerance: float = 1e-4,
) -> float:
    """Write the step graph to `path`, with the anomaly rule calibrated on `validation` (sets of
    (B, T, .) trajectories); returns the max parity error over a 100-step rollout. A model given the
    robots' parameters is refused: the robot's monitor does not know them."""
    if model.robot_param_dim:
        raise ValueError(
            "this world model takes a simulated robot's parameters, which the robot's monitor does not know; "
            "export a model trained without --robot-params"
        )
    path = Path(path)
    anomaly = calibrate_threshold([validation_errors(model, v) for v in validation], calibration)
    step = _Step(model).eval()
    layers, _, width = model.initial_hidden(1).shape
    tmp = path.with_suffix(".onnx.tmp")
    batch = torch.export.Dim("batch", min=1)
    dummy = (
        torch.zeros(2, C.STATE_DIM),
        torch.zeros(2, C.ACTION_DIM),
        torch.zeros(2, layers, width),
    )
    torch.onnx.export(
        step,
        dummy,
        str(tmp),
        input_names=list(INPUTS),
        output_names=list(OUTPUTS),
        dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
        external_data=False,
    )
    graph = onnx.load(str(tmp))
    strip_debug_metadata(graph)
    entry = graph.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(
        {
            "hidden_layers": layers,
            "hidden_size": width,
            "ensemble_size": model.ensemble_size,
            "joint_names": list(C.JOINT_NAMES),
            "state_mean": model.normalizer.state_mean.tolist(),
            "state_std": model.normalizer.state_std.tolist(),
            "robot": "anymal_d",  # the robot rwm.sim trains on; the caller's metadata may name another
            "anomaly": anomaly,
            **metadata,
        }
    )
    onnx.checker.check_model(graph)
    onnx.save(graph, str(tmp))
    err = rollout_parity(step, tmp)
    if err > tolerance:
        tmp.unlink()
        raise RuntimeError(
            f"world-model ONNX parity error {err:.2e} exceeds {tolerance:.0e}; {path} not written"
        )
    os.replace(tmp, path)
    return err


def rollout_parity(
    step: _Step, onnx_path: str | Path, steps: int = 100, batch: int = 4, seed: int = 0
) -> float:
    """Max |torch - onnxruntime| of the means (normalized state units, so that 80 Nm torques and unit
    gravity weigh alike) over an autoregressive rollout, each fed its own means.

    The torch side is the model's own `step` (nn.GRU), so the written-out cell is checked too.
    """
    onnx_model = OnnxWorldModel(onnx_path)
    model, norm = step.model, step.model.normalizer
    rng = np.random.default_rng(seed)
    s_t = norm.state_mean + norm.state_std * torch.from_numpy(rng.normal(size=(batch, C.STATE_DIM))).float()
    noise = torch.from_numpy(rng.normal(size=(steps, batch, C.ACTION_DIM))).float()
    actions = norm.action_mean + norm.action_std * noise
    s_o = s_t.numpy()
    h_t = model.initial_hidden(batch)
    h_o = onnx_model.initial_hidden(batch)
    err = 0.0
    with torch.no_grad():
        for k in range(steps):
            mean_n, _, _, h_t = model.step(norm.state(s_t), norm.action(actions[k]), h_t)
            s_t = norm.state_inverse(mean_n)
            s_o, _, _, h_o, _ = onnx_model(s_o, actions[k].numpy(), h_o)
            diff = (s_t - torch.from_numpy(s_o)) / norm.state_std  # normalized units: scale-free
            err = max(err, float(diff.abs().max()))
    return err


__all__ = ["OnnxWorldModel", "export_world_model", "rollout_parity"]
