"""The policy observation (Table S4, plus the last raw action): one definition for simulation,
data collection and the robot's policy node."""

from __future__ import annotations

import numpy as np

from rwm.robot import contract as C


def policy_observation(
    state: np.ndarray, command: np.ndarray, last_targets: np.ndarray | None, out: np.ndarray | None = None
) -> np.ndarray:
    """(..., 36) or (..., 48): v, w, g, command, q - q_default, dq[, last raw action].

    `last_targets` are the joint targets last sent (rad, absolute), turned back into the raw action
    u = (a - q_default) / 0.5; None leaves the last action out (36-d observation).
    """
    dim = 36 if last_targets is None else 48
    if out is None:
        out = np.empty((*state.shape[:-1], dim), dtype=np.float32)
    out[..., 0:9] = state[..., 0:9]
    out[..., 9:12] = command
    out[..., 12:24] = state[..., C.JOINT_POS] - C.DEFAULT_JOINT_POS
    out[..., 24:36] = state[..., C.JOINT_VEL]
    if last_targets is not None:
        out[..., 36:48] = (last_targets - C.DEFAULT_JOINT_POS) / C.ACTION_SCALE
    return out
