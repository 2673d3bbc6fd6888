"""The velocity-tracking reward of the RWM paper (Table S5), as a pure function of a transition.

It scores a transition from its arrays alone: (state, next state, action, previous action,
command, contacts) plus the explicit feet air-time carry, so the same code scores transitions of
the simulator and transitions predicted by the world model. Works on NumPy arrays and on torch
tensors (batch dimension first). Like Isaac Lab's reward manager, the weighted sum is scaled by the
step time `dt`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rwm.robot import contract as C


@dataclass(frozen=True)
class RewardConfig:
    """Weights (Table S5) and kernel parameters."""

    lin_vel_tracking: float = 1.0
    yaw_rate_tracking: float = 0.5
    vertical_velocity: float = -2.0
    roll_pitch_rate: float = -0.05
    joint_torque: float = -2.5e-5
    joint_acceleration: float = -2.5e-7
    action_rate: float = -0.01
    feet_air_time: float = 0.5
    undesired_contacts: float = -1.0
    flat_orientation: float = -5.0
    stand_still: float = 0.0
    """Not in Table S5 (0 there): legged_gym's term, the joints' L1 distance from the standing pose
    while the command is zero, so that a robot told to stand stops stepping instead of shuffling."""
    tracking_sigma: float = 0.25
    """Exp-kernel temperature: exp(-error^2 / sigma)."""
    air_time_target: float = 0.5
    """Feet air time is rewarded above this duration, s."""
    air_time_min_command: float = 0.1
    """A command slower than this (m/s; rad/s for its yaw rate in `stand_still`) is standing: no
    air-time reward, so standing is not penalized, and `stand_still` applies."""
    dt: float = C.POLICY_DT
    """Step time; the weighted sum is multiplied by it."""

    def weights(self) -> dict[str, float]:
        skip = {"tracking_sigma", "air_time_target", "air_time_min_command", "dt"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def _exp(x: Any) -> Any:
    return x.exp() if hasattr(x, "exp") else np.exp(x)


def _where(cond: Any, a: Any, b: Any) -> Any:
    if hasattr(cond, "logical_not"):  # torch
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def _like(value: np.ndarray, x: Any) -> Any:
    """A constant in the dtype (and device) of `x`, so that a term does not promote the reward."""
    return x.new_tensor(value) if hasattr(x, "new_tensor") else value.astype(x.dtype)


def tracking_terms(command: Any, lin_vel_xy: Any, yaw_rate: Any, cfg: RewardConfig = RewardConfig()) -> dict:
    """The reward's two tracking terms: exp-kernels of the error of the base's planar velocity (..., 2)
    and yaw rate (...,) against the command (..., 3), in the base frame."""
    lin_err = ((command[..., 0:2] - lin_vel_xy) ** 2).sum(-1)
    yaw_err = (command[..., 2] - yaw_rate) ** 2
    return {
        "lin_vel_tracking": _exp(-lin_err / cfg.tracking_sigma),
        "yaw_rate_tracking": _exp(-yaw_err / cfg.tracking_sigma),
    }


def reward_terms(
    state: Any,
    next_state: Any,
    action: Any,
    prev_action: Any,
    command: Any,
    contacts: Any,
    air_time: Any,
    cfg: RewardConfig = RewardConfig(),
) -> tuple[dict[str, Any], Any]:
    """Unweighted terms of one transition, and the feet air time carried to the next step.

    state, next_state: (..., 45); action, prev_action: (..., 12) joint targets; command: (..., 3);
    contacts: (..., 8) flags observed with `next_state`; air_time: (..., 4) time each foot has been
    in the air before this step, s. Returns ({term: (...,)}, new air_time (..., 4)).
    """
    v = next_state[..., C.LIN_VEL]
    w = next_state[..., C.ANG_VEL]
    g = next_state[..., C.GRAVITY]
    q = next_state[..., C.JOINT_POS]
    dq_dot = (next_state[..., C.JOINT_VEL] - state[..., C.JOINT_VEL]) / cfg.dt

    foot = contacts[..., C.FOOT_CONTACTS] > 0.5
    knee = contacts[..., C.KNEE_CONTACTS] > 0.5
    first_contact = foot & (air_time > 0)
    moving = ((command[..., 0:2] ** 2).sum(-1) > cfg.air_time_min_command**2) * 1.0
    still = (1.0 - moving) * (abs(command[..., 2]) <= cfg.air_time_min_command)
    air_reward = ((air_time + cfg.dt - cfg.air_time_target) * first_contact).sum(-1) * moving
    new_air_time = _where(foot, air_time * 0, air_time + cfg.dt)

    terms = {
        **tracking_terms(command, v[..., 0:2], w[..., 2], cfg),
        "vertical_velocity": v[..., 2] ** 2,
        "roll_pitch_rate": (w[..., 0:2] ** 2).sum(-1),
        "joint_torque": (next_state[..., C.JOINT_TORQUE] ** 2).sum(-1),
        "joint_acceleration": (dq_dot**2).sum(-1),
        "action_rate": ((action - prev_action) ** 2).sum(-1),
        "feet_air_time": air_reward,
        "undesired_contacts": knee.sum(-1) * 1.0,
        "flat_orientation": (g[..., 0:2] ** 2).sum(-1),
        "stand_still": abs(q - _like(C.DEFAULT_JOINT_POS, q)).sum(-1) * still,
    }
    return terms, new_air_time


def total_reward(terms: dict[str, Any], cfg: RewardConfig = RewardConfig()) -> Any:
    """dt * sum of weighted terms."""
    weights = cfg.weights()
    total = None
    for name, value in terms.items():
        part = weights[name] * value
        total = part if total is None else total + part
    return total * cfg.dt


def tracking_reward(terms: dict[str, Any], cfg: RewardConfig = RewardConfig()) -> Any:
    """Tracking part normalized to [0, 1]: weighted lin + yaw tracking over the sum of their weights."""
    wl, wy = cfg.lin_vel_tracking, cfg.yaw_rate_tracking
    return (wl * terms["lin_vel_tracking"] + wy * terms["yaw_rate_tracking"]) / (wl + wy)
