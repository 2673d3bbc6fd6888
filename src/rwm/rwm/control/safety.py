"""Safety layer between a policy and the drives: soft start, joint-limit clamp, a bound on the target
change per step, and the hold posture used by the watchdog and the e-stop.

The drives of the contract take position targets under a fixed PD (kp 80, kd 2), so the "damping
posture" is a position hold: the joint positions measured when the stop began, held still, which
the drives' PD turns into a damped stop around that pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rwm.robot import contract as C


@dataclass(frozen=True)
class SafetyConfig:
    """The safety layer's settings (the policy node's parameters of the same names, with these ranges)."""

    soft_start_s: float = field(default=2.0, metadata={"range": (0.0, 30.0)})
    """Longest ramp from the measured pose to the standing pose (its stance targets) before the policy
    takes over, s."""
    soft_start_speed: float = field(default=0.5, metadata={"range": (0.0, 10.0)})
    """The ramp moves the farthest joint target at this mean speed, rad/s (smoothstep: 1.5x at its
    peak), and ends when they are there (at most `soft_start_s`; 0: always `soft_start_s`). A robot
    already standing is handed to the policy in a fraction of a second: held passively for 2 s, a
    robot with a 15 kg payload 10 cm forward rocked and slid, and 11 of 100 fell within 2.5 s of the
    policy taking over (0 with the bare policy)."""
    max_target_step: float = field(default=0.5, metadata={"range": (0.01, 2.0)})
    """Largest change of any joint target between two 50 Hz commands, rad."""
    watchdog_periods: int = field(default=3, metadata={"range": (1, 50)})
    """Hold the posture when no fresh robot state arrived for this many control periods."""
    joint_margin: float = field(default=0.0, metadata={"range": (0.0, 0.5)})
    """Targets stay this far inside the URDF limits, rad."""
    max_lin_accel: float = field(default=2.0, metadata={"range": (0.0, 100.0)})
    """/cmd_vel's linear velocity reaches the policy ramped at most this fast, m/s^2 (0: a step). A
    step in the command is where the policies fall; 2 m/s^2 takes a 0-to-1 m/s change over 0.5 s."""
    max_yaw_accel: float = field(default=4.0, metadata={"range": (0.0, 100.0)})
    """The same for the yaw rate, rad/s^2 (0: a step)."""
    swap_blend_s: float = field(default=0.5, metadata={"range": (0.0, 10.0)})
    """A new policy's raw actions are blended in over this long after a swap, s."""
    rollback_window_s: float = field(default=5.0, metadata={"range": (0.0, 600.0)})
    """After a swap, a fall, a watchdog hold or a world-model anomaly within this long brings the
    previous policy back, s."""
    stand_hold_after_s: float = field(default=1.0, metadata={"range": (0.0, 600.0)})
    """After this long at zero command, once the robot is still, hold the policy's recent targets
    (`stand_hold_average_s`) instead of running the policy, until a command comes or the robot moves
    (`stand_release_base_speed`), s (0: never). Left standing, the shipped policy rests, then
    shuffles about 0.6 m per minute, for as long as it stands."""
    stand_still_s: float = field(default=0.1, metadata={"range": (0.02, 10.0)})
    """Still for this long before the hold starts: every joint and the base below the speeds below, s
    (a foot in swing moves, so a still robot stands on its four feet). With 0.2 s a stopped robot
    that shuffled could take 28 s to be held and wander 0.42 m meanwhile; with 0.1 s at most 3.6 s
    (`tools/stand_hold_study.py`, 40 robots, seed 777). Held sooner, it is held mid-motion more often:
    hence the mean of `stand_hold_average_s`."""
    stand_hold_average_s: float = field(default=0.5, metadata={"range": (0.02, 5.0)})
    """The hold's targets are the mean of those the policy sent over this long before it (at most
    `stand_hold_after_s`, so no walking targets), s (one period: the last alone)."""
    stand_still_joint_speed: float = field(default=0.2, metadata={"range": (0.0, 10.0)})
    """Still: no joint faster than this, rad/s."""
    stand_still_base_speed: float = field(default=0.05, metadata={"range": (0.0, 1.0)})
    """Still: the base's horizontal speed below this, m/s; and its angular speed below twice this, rad/s."""
    stand_release_base_speed: float = field(default=0.1, metadata={"range": (0.0, 5.0)})
    """A push, or a robot that tips on its held targets: the base's horizontal speed above this (or its
    angular speed above twice this, rad/s) ends the hold and the policy catches the robot, m/s. The
    drives' PD (kp 80) makes a held stance soft, and a robot held with its weight on one diagonal
    pair of feet can roll over it, slowly, until a foot lifts (`tools/stand_hold_trace.py`): at
    0.3 m/s the monitor flagged such robots before the hold let go (`models/README.md`, the hold)."""


class SafetyFilter:
    """Clamps targets to the joint limits and bounds their change per step; never outputs non-finite."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, cfg: SafetyConfig = SafetyConfig()) -> None:
        self.lower = np.asarray(lower, dtype=np.float64) + cfg.joint_margin
        self.upper = np.asarray(upper, dtype=np.float64) - cfg.joint_margin
        if self.lower.shape != (C.NUM_JOINTS,) or not (self.lower < self.upper).all():
            raise ValueError("joint limits must be 12 intervals with lower < upper (after the margin)")
        self.cfg = cfg
        self.clamped_limit = 0
        """Commands in which the joint-limit clamp changed a target (a counter for diagnostics)."""
        self.clamped_rate = 0
        """Commands in which the rate bound changed a target."""

    def apply(self, targets: np.ndarray, previous: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Filtered targets into `out`; `previous` is the last command sent (finite)."""
        if not np.isfinite(targets).all():
            raise ValueError("non-finite joint targets")
        step = self.cfg.max_target_step
        np.clip(targets, previous - step, previous + step, out=out)
        if not np.array_equal(out, targets):
            self.clamped_rate += 1
        if (out < self.lower).any() or (out > self.upper).any():
            self.clamped_limit += 1
            np.clip(out, self.lower, self.upper, out=out)
        return out

    def clamp(self, targets: np.ndarray) -> np.ndarray:
        """Targets inside the joint limits only (for postures built from measurements)."""
        return np.clip(targets, self.lower, self.upper)


def soft_start_targets(start: np.ndarray, end: np.ndarray, progress: float, out: np.ndarray) -> np.ndarray:
    """Blend from `start` to `end` targets; progress in [0, 1] (smoothstep timing)."""
    p = min(max(progress, 0.0), 1.0)
    s = p * p * (3.0 - 2.0 * p)
    np.multiply(start, 1.0 - s, out=out)
    out += s * end
    return out
