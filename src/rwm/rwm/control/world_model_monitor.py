"""The world model as a live health monitor, without ROS: keep the GRU state in step with the robot,
predict the next state at every 50 Hz step, score the last prediction against what was measured, and
flag an anomaly when the error stays above a threshold.

The error is the paper's relative error of one step (normalized space, sum |pred - truth| over sum
|truth|), with the normalization the model was trained with (stored in the ONNX metadata).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rwm.export.runtime import OnnxWorldModel
from rwm.robot import contract as C


@dataclass(frozen=True)
class MonitorConfig:
    error_threshold: float = 0.5
    """One-step relative error above which a step counts as anomalous."""
    anomaly_steps: int = 25
    """Consecutive anomalous steps (0.5 s at 50 Hz) before the anomaly is raised."""
    warmup_steps: int = 32
    """Steps after a (re)start during which the GRU state settles and nothing is flagged."""


def validate_world_model(model: OnnxWorldModel) -> None:
    """Raise ValueError unless the model is a usable step: shapes, metadata, finite outputs."""
    meta = model.metadata
    for key in ("state_mean", "state_std", "hidden_layers", "hidden_size"):
        if key not in meta:
            raise ValueError(f"world-model metadata lacks {key!r}; re-export it with rwm")
    if len(meta["state_mean"]) != C.STATE_DIM or min(meta["state_std"]) <= 0:
        raise ValueError("world-model normalization must be 45 means and 45 positive stds")
    state = np.asarray(meta["state_mean"], dtype=np.float32)[None]
    mean, std, logits, hidden = model(state, C.DEFAULT_JOINT_POS[None], model.initial_hidden(1))
    if mean.shape != (1, C.STATE_DIM) or logits.shape != (1, C.CONTACT_DIM):
        raise ValueError(f"world-model outputs have shapes {mean.shape}, {logits.shape}")
    if not all(np.isfinite(x).all() for x in (mean, std, logits, hidden)):
        raise ValueError("world-model step returns non-finite values")


class WorldModelMonitor:
    def __init__(self, model: OnnxWorldModel, cfg: MonitorConfig = MonitorConfig()) -> None:
        validate_world_model(model)
        self.cfg = cfg
        self.model = model
        self._std = np.asarray(model.metadata["state_std"])
        self._mean = np.asarray(model.metadata["state_mean"])
        self.hidden = model.initial_hidden(1)
        self.prediction: np.ndarray | None = None
        """Predicted next state (45,), physical units."""
        self.error = float("nan")
        """Relative error of the last scored prediction."""
        self.steps = 0
        self.above = 0
        self.anomaly = False

    def reset(self) -> None:
        self.hidden = self.model.initial_hidden(1)
        self.prediction, self.steps, self.above, self.anomaly = None, 0, 0, False

    def swap(self, model: OnnxWorldModel) -> None:
        """Use a new model version (validated first; the old one stays if it is not usable)."""
        validate_world_model(model)
        self.model = model
        self._std = np.asarray(model.metadata["state_std"])
        self._mean = np.asarray(model.metadata["state_mean"])
        self.reset()

    def step(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Score the last prediction against `state`, then predict the state after `action`."""
        if self.prediction is not None:
            truth = (state - self._mean) / self._std
            pred = (self.prediction - self._mean) / self._std
            self.error = float(np.abs(pred - truth).sum() / max(np.abs(truth).sum(), 1e-9))
            if self.steps > self.cfg.warmup_steps:
                self.above = self.above + 1 if self.error > self.cfg.error_threshold else 0
                self.anomaly = self.above >= self.cfg.anomaly_steps
        mean, _, _, self.hidden = self.model(state[None], action[None], self.hidden)
        self.prediction = mean[0].astype(np.float64)
        self.steps += 1
        return self.prediction
