"""The health monitor's rule, in one home: the one-step error of a world-model step, its median (or
mean) over a sliding window, and the threshold that statistic is held against (`AnomalyDetector`,
used by the monitor node and by its evaluation in simulation alike), calibrated from the model's own
validation data and stored in the exported file (`rwm_world_model` metadata, `anomaly`).

One step's error is the prediction's absolute error in units of the std the model predicted with it
(aleatoric and, for an ensemble, epistemic), averaged over the state: how surprised the model is.
Not the paper's relative error (sum |pred - truth| over sum |truth|, normalized space): its
denominator grows with the robot's speed, so a fast walker's error is diluted, and a 15 kg payload
on robots walking fast was flagged seconds late. On the validation seed 4343 of `rwm eval-monitor`
both flagged every payload robot within 2 s, and this error the late delay robots sooner; nor the
plain error in training stds (a nominal robot's bursts are then 4x its median, and a 15 kg payload
hid under the threshold: 2 of 20 robots flagged). A single step is noisy (a foot touching down a
tick early), so the alarm looks at the median (or mean, `AnomalyCalibration.statistic`) over
`window_steps` steps; the threshold is a high quantile of that statistic over validation trajectories
of the nominal robot, times a margin. numpy only: the control path loads no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ERROR_TOPIC = "/rwm/world_model/error"
"""Where the monitor node publishes each step's error (std_msgs/Float32), recorded with the bags so
that a live alarm can be set against the same model scored offline (`rwm eval-monitor --bags`)."""


@dataclass(frozen=True)
class AnomalyCalibration:
    """How the threshold is derived from validation errors."""

    window_steps: int = 25
    """Steps (0.5 s at 50 Hz) the one-step error is summarized over before it is compared: a robot that
    differs errs all the time, a nominal one in bursts (a foot slipping under a small command). With
    a 1 s mean the stack, whose robot starts to walk about a second after the monitor, flagged a
    payload, weak motors or delay 2.01 and 2.35 s after the first step in 2 of 9 runs: the window had
    to fill first (`models/README.md`, RWM-U)."""
    statistic: str = "median"
    """"median" or "mean" of the window. The median ignores a burst shorter than half the window: in a
    ten-minute soak of the stack under load, a few commands paired with states a tick off gave steps
    with errors of 5-7 (the robot was nominal) and the 0.5 s mean rose to 1.26x its threshold, the
    0.5 s median to 0.88x. A robot that differs errs at every step, and its median rises as fast as
    its mean. The median's false alarms on nominal robots standing (7 in a 30-minute soak; 12 of 160
    robots standing 8 s from the start) were robots moving on the stand hold's targets, rocking on
    the last tick's and later tipping over a diagonal: fixed in the hold (`SafetyConfig`)."""
    quantile: float = 1.0
    """Quantile of the windowed error over the validation windows (1: their maximum; the validation
    data is the deployed policy walking the nominal robot as deployed, minutes of it, so that every
    kind of burst it has is in there)."""
    margin: float = 1.1
    """Factor on that quantile: validation data is finite, deployment runs for hours. Chosen on a
    validation seed of `rwm eval-monitor` (4343; `models/README.md`): at the 0.999 quantile x 1.2 of
    0.5 s means the nominal robot raised 1 to 3 false alarms in 20 robot-minutes."""
    warmup_steps: int = 32
    """Steps after a (re)start whose errors are not scored (the GRU state settles)."""
    hold_steps: int = 5
    """Consecutive steps (0.1 s) the windowed error must stay above the threshold: a stumble is not
    an anomaly of the robot."""
    error: str = "mean_abs_z"
    """The one-step error the threshold is calibrated on (`monitor_step_error`); stored with the
    rule, so that a model calibrated on another error is refused instead of misread."""


WINDOW_STATISTICS = ("mean", "median")


def monitor_step_error(prediction: np.ndarray, predicted_std: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean over the state of |prediction - truth| / predicted std for (..., 45) physical-unit
    predictions and measured states: (...)."""
    return (np.abs(prediction - truth) / predicted_std).mean(-1)


def check_rule_error(rule: dict) -> None:
    """Raise ValueError unless the `anomaly` rule was calibrated on `monitor_step_error`, with a
    window statistic the monitor knows."""
    expected = AnomalyCalibration.error
    if rule.get("error") != expected:
        raise ValueError(
            f"the world model's anomaly threshold is calibrated on another one-step error "
            f"({rule.get('error', 'relative')!r}, the monitor scores {expected!r}); "
            "re-export it with `rwm export-wm`, or set error_threshold"
        )
    if rule_statistic(rule) not in WINDOW_STATISTICS:
        raise ValueError(f"unknown window statistic in the world model's anomaly rule: {rule['statistic']!r}")


def rule_statistic(rule: dict) -> str:
    """The rule's window statistic; a model exported before the median (12-04) used the mean."""
    return rule.get("statistic", "mean")


def windowed_mean(errors: np.ndarray, window: int) -> np.ndarray:
    """Mean of every full window of `window` consecutive steps along axis 0: (T - window + 1, ...)."""
    if len(errors) < window:
        return errors[:0]
    csum = np.cumsum(np.concatenate([np.zeros_like(errors[:1]), errors]), axis=0)
    return (csum[window:] - csum[:-window]) / window


def windowed(errors: np.ndarray, window: int, statistic: str) -> np.ndarray:
    """The rule's statistic of every full window of `window` steps along axis 0: (T - window + 1, ...)
    (NaN where a window holds a NaN)."""
    if statistic == "mean":
        return windowed_mean(errors, window)
    if len(errors) < window:
        return errors[:0]
    return np.median(sliding_window_view(errors, window, axis=0), axis=-1)


def calibrate_threshold(errors: Sequence[np.ndarray], cfg: AnomalyCalibration = AnomalyCalibration()) -> dict:
    """The `anomaly` metadata entry from sets of (T, B) one-step validation errors, each set a batch
    of trajectories from their start (row 0 holds no error: no prediction yet; NaN where not scored).
    The windows are those `AnomalyDetector` judges: from the first scored error after the warm-up.
    Windows holding a NaN are left out."""
    windows = [windowed(e[1 + cfg.warmup_steps :], cfg.window_steps, cfg.statistic).ravel() for e in errors]
    values = np.concatenate(windows) if windows else np.zeros(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(
            f"no validation window of {cfg.window_steps} steps after {cfg.warmup_steps} warm-up steps"
        )
    level = float(np.quantile(values, cfg.quantile))
    return {
        **asdict(cfg),
        "threshold": round(level * cfg.margin, 5),
        "validation_windows": int(values.size),
        "validation_median": round(float(np.median(values)), 5),
        "validation_max": round(float(values.max()), 5),
    }


class AnomalyDetector:
    """The alarm for `n` robots at once: the median (or mean) of each robot's last `window_steps`
    one-step errors is compared with `threshold`; the anomaly is raised after `hold_steps` consecutive
    steps above it and cleared at the first step below. Preallocated ring buffers: nothing grows per
    step (numpy's partition takes a transient scratch of about 3 kB for the median). Errors must be
    finite: the caller skips a step it cannot score (a NaN would sort last in the median)."""

    def __init__(
        self,
        threshold: float,
        window_steps: int,
        hold_steps: int,
        warmup_steps: int,
        n: int = 1,
        *,
        statistic: str,
    ) -> None:
        if threshold <= 0 or window_steps < 1 or hold_steps < 1:
            raise ValueError(
                f"anomaly rule needs a positive threshold, window and hold "
                f"(got {threshold}, {window_steps}, {hold_steps})"
            )
        if statistic not in WINDOW_STATISTICS:
            raise ValueError(f"window statistic must be one of {WINDOW_STATISTICS}, got {statistic!r}")
        self.statistic = statistic
        self.threshold, self.window, self.hold, self.warmup = (
            threshold,
            window_steps,
            hold_steps,
            warmup_steps,
        )
        self._ring = np.zeros((window_steps, n))
        self._sorted = np.zeros((window_steps, n) if statistic == "median" else (0, n))
        """Scratch copy of the ring, partitioned in place for the median."""
        self._middle = (window_steps - 1) // 2, window_steps // 2
        self._sum = np.zeros(n)
        self.windowed = np.full(n, np.nan)
        """The statistic of the errors in the last window (NaN until the window after warm-up is full)."""
        self.above = np.zeros(n, dtype=np.int64)
        """Consecutive steps each robot's windowed error has been above the threshold."""
        self.anomaly = np.zeros(n, dtype=bool)
        self._over = np.zeros(n, dtype=bool)
        self.steps = 0

    def reset(self) -> None:
        self._ring[:] = 0.0
        self._sum[:] = 0.0
        self.windowed[:] = np.nan
        self.above[:] = 0
        self.anomaly[:] = False
        self.steps = 0

    def update(self, errors: np.ndarray) -> np.ndarray:
        """Add one step's (n,) errors (scored steps only); returns the anomaly flags."""
        self.steps += 1
        if self.steps <= self.warmup:
            return self.anomaly
        k = (self.steps - self.warmup - 1) % self.window
        if self.statistic == "mean":
            self._sum -= self._ring[k]
            self._sum += errors
        self._ring[k] = errors
        if self.statistic == "mean" and k == self.window - 1:
            self._ring.sum(0, out=self._sum)  # no rounding drift over hours of running sums
        if self.steps - self.warmup < self.window:
            return self.anomaly
        if self.statistic == "median":
            np.copyto(self._sorted, self._ring)
            self._sorted.partition(self._middle, axis=0)
            np.add(self._sorted[self._middle[0]], self._sorted[self._middle[1]], out=self.windowed)
            self.windowed *= 0.5
        else:
            np.divide(self._sum, self.window, out=self.windowed)
        np.greater(self.windowed, self.threshold, out=self._over)
        self.above += 1
        self.above *= self._over
        np.greater_equal(self.above, self.hold, out=self.anomaly)
        return self.anomaly

    @classmethod
    def from_rule(cls, rule: dict, n: int = 1, warmup_steps: int = 0) -> AnomalyDetector:
        """The detector of a model's `anomaly` rule (`warmup_steps`: instead of the rule's, if set)."""
        return cls(
            rule["threshold"],
            int(rule["window_steps"]),
            int(rule["hold_steps"]),
            int(warmup_steps or rule["warmup_steps"]),
            n,
            statistic=rule_statistic(rule),
        )
