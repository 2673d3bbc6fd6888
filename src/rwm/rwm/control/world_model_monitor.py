"""The world model as a live health monitor, without ROS: keep the GRU state in step with the robot,
predict the next state at every 50 Hz step, score the last prediction against what was measured, and
flag an anomaly when the error's median (or mean) over a short window stays above a threshold.

The error is one step's absolute error in units of the std the model predicted with it
(`rwm.export.anomaly.monitor_step_error`, which says why not the paper's relative error); the
window, the threshold and how long it must be exceeded are the rule calibrated into the model's own
metadata at export (`rwm.export.anomaly`), so a new model version brings its own threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rwm.export.anomaly import AnomalyCalibration, AnomalyDetector, check_rule_error, monitor_step_error
from rwm.export.runtime import OnnxWorldModel
from rwm.robot import contract as C


@dataclass(frozen=True)
class MonitorConfig:
    error_threshold: float = 0.0
    """Windowed one-step error above which a step counts as anomalous; 0: the threshold calibrated
    into the model's metadata (recommended)."""
    anomaly_steps: int = 0
    """Consecutive steps above the threshold before the anomaly is raised; 0: the model's."""
    warmup_steps: int = 0
    """Steps after a (re)start during which the GRU state settles and nothing is flagged; 0: the model's."""


def anomaly_detector(model: OnnxWorldModel, cfg: MonitorConfig) -> AnomalyDetector:
    """The model's calibrated rule, with any value the configuration sets instead."""
    rule = model.metadata.get("anomaly")
    if rule is None and not cfg.error_threshold:
        raise ValueError(
            "the world model carries no calibrated anomaly threshold (exported before calibration); "
            "re-export it with `rwm export-wm`, or set error_threshold"
        )
    if rule and not cfg.error_threshold:
        check_rule_error(rule)
    rule = dict(rule) if rule else asdict(AnomalyCalibration())  # none: today's window and statistic
    rule["threshold"] = cfg.error_threshold or rule["threshold"]
    rule["hold_steps"] = cfg.anomaly_steps or rule["hold_steps"]
    return AnomalyDetector.from_rule(rule, warmup_steps=cfg.warmup_steps)


def validate_world_model(model: OnnxWorldModel) -> None:
    """Raise ValueError unless the model is a usable step: shapes, metadata, finite outputs."""
    meta = model.metadata
    for key in ("state_mean", "state_std", "hidden_layers", "hidden_size"):
        if key not in meta:
            raise ValueError(f"world-model metadata lacks {key!r}; re-export it with rwm")
    if len(meta["state_mean"]) != C.STATE_DIM or min(meta["state_std"]) <= 0:
        raise ValueError("world-model normalization must be 45 means and 45 positive stds")
    state = np.asarray(meta["state_mean"], dtype=np.float32)[None]
    mean, std, logits, hidden, spread = model(state, C.DEFAULT_JOINT_POS[None], model.initial_hidden(1))
    if mean.shape != (1, C.STATE_DIM) or logits.shape != (1, C.CONTACT_DIM) or spread.shape != mean.shape:
        raise ValueError(f"world-model outputs have shapes {mean.shape}, {logits.shape}, {spread.shape}")
    if not all(np.isfinite(x).all() for x in (mean, std, logits, hidden, spread)):
        raise ValueError("world-model step returns non-finite values")


class WorldModelMonitor:
    def __init__(self, model: OnnxWorldModel, cfg: MonitorConfig = MonitorConfig()) -> None:
        self.cfg = cfg
        self._use(model)

    def _use(self, model: OnnxWorldModel) -> None:
        validate_world_model(model)
        detector = anomaly_detector(model, self.cfg)
        self.model, self.detector = model, detector
        self._std = np.asarray(model.metadata["state_std"])
        self._error = np.zeros(1)
        self.reset()

    @property
    def threshold(self) -> float:
        return self.detector.threshold

    @property
    def windowed_error(self) -> float:
        """The rule's statistic (mean or median) of the one-step errors in its window (NaN while it fills)."""
        return float(self.detector.windowed[0])

    def reset(self) -> None:
        self.hidden = self.model.initial_hidden(1)
        self.prediction: np.ndarray | None = None
        """Predicted next state (45,), physical units."""
        self.prediction_std = np.ones(C.STATE_DIM)
        """The std predicted with it (45,), physical units."""
        self.error = float("nan")
        """One-step error of the last scored prediction (`monitor_step_error`)."""
        self.uncertainty = float("nan")
        """Epistemic uncertainty of the last prediction: the ensemble members' disagreement (std of
        their means, normalized units, averaged over the state); 0 for a single model."""
        self.steps = 0
        self.anomaly = False
        self.detector.reset()

    def swap(self, model: OnnxWorldModel) -> None:
        """Use a new model version and its calibrated rule (validated first; the old one stays if
        it is not usable)."""
        self._use(model)

    def skip(self) -> None:
        """A step without a usable state: its successor is not scored against a prediction two steps old.
        The GRU state carries on over the gap (a restart would blind the monitor for its warm-up)."""
        self.prediction = None

    def step(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Score the last prediction against `state`, then predict the state after `action`."""
        if self.prediction is not None:
            self.error = float(monitor_step_error(self.prediction, self.prediction_std, state))
            self._error[0] = self.error
            self.anomaly = bool(self.detector.update(self._error)[0])
        mean, std, _, self.hidden, spread = self.model(state[None], action[None], self.hidden)
        self.prediction = mean[0].astype(np.float64)
        self.prediction_std[:] = std[0]
        self.uncertainty = float((spread[0] / self._std).mean())
        self.steps += 1
        return self.prediction
