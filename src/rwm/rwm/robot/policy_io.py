"""The policy's interface to the robot, in one home: the observation (Table S4 of the RWM paper, plus
the last raw action), its sizes and layout, the raw action's limit and raw output -> joint targets
(CONTRACT.md: a = q_default + 0.5 u).

The simulator, imagination in a world model, data collection, ONNX export and the robot's policy node
all call these functions, so a policy sees the same numbers wherever it runs. They work on NumPy
arrays and torch tensors alike (batch dimensions first), as `rwm.sim.reward` does; torch is never
imported here, so the control path stays NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rwm.robot import contract as C

OBS_BASE = slice(0, 9)
"""Base linear velocity, angular velocity and projected gravity: the state's first 9 entries."""
OBS_COMMAND = slice(9, 12)
"""The velocity command (vx, vy, yaw rate)."""
OBS_JOINT_POS = slice(12, 24)
"""Joint positions relative to the standing pose."""
OBS_JOINT_VEL = slice(24, 36)
"""Joint velocities."""
OBS_LAST_ACTION = slice(36, 48)
"""The last raw action (only in the 48-wide observation)."""
OBS_DIM = OBS_JOINT_VEL.stop
"""Width of Table S4's observation."""
OBS_DIM_WITH_LAST_ACTION = OBS_LAST_ACTION.stop
"""Width with the last raw action appended (the shipped policies)."""
RAW_ACTION_LIMIT = 10.0
"""Raw actions are clipped to +-this before scaling (a is then within +-5 rad of the standing pose)."""


def obs_dim(include_last_action: bool) -> int:
    return OBS_DIM_WITH_LAST_ACTION if include_last_action else OBS_DIM


def includes_last_action(width: int) -> bool:
    """Whether an observation of this width carries the last action; other widths are refused."""
    if width not in (OBS_DIM, OBS_DIM_WITH_LAST_ACTION):
        raise ValueError(
            f"a policy observation is {OBS_DIM} or {OBS_DIM_WITH_LAST_ACTION} wide "
            f"(Table S4 [+ last action]), got {width}"
        )
    return width == OBS_DIM_WITH_LAST_ACTION


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] == "torch"


def _constant(like: Any, values: np.ndarray) -> Any:
    """`values` as the kind of `like` (a tensor on its device and dtype, or the NumPy array itself)."""
    return like.new_tensor(values) if _is_torch(like) else values


def targets_to_raw(targets: Any) -> Any:
    """The raw action that gives these joint targets: u = (a - q_default) / 0.5."""
    return (targets - _constant(targets, C.DEFAULT_JOINT_POS)) / C.ACTION_SCALE


def raw_to_targets(raw: Any, out: np.ndarray | None = None) -> Any:
    """Joint targets from raw policy output (clipped to the limit first); NumPy may write into `out`."""
    if _is_torch(raw):
        return _constant(raw, C.DEFAULT_JOINT_POS) + C.ACTION_SCALE * raw.clamp(
            -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT
        )
    if out is None:  # float64 targets, whatever the policy's output type
        return C.DEFAULT_JOINT_POS + C.ACTION_SCALE * np.clip(raw, -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT)
    np.clip(raw, -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT, out=out)
    out *= C.ACTION_SCALE
    out += C.DEFAULT_JOINT_POS
    return out


def policy_observation(state: Any, command: Any, last_targets: Any | None, out: Any | None = None) -> Any:
    """(..., 36) or (..., 48): v, w, g, command, q - q_default, dq[, last raw action].

    `state` is the world-model state (CONTRACT.md); `last_targets` are the joint targets last sent
    (rad, absolute), turned back into the raw action; None leaves the last action out. Writes into
    `out` when given (float32, the policy's input type).
    """
    dim = obs_dim(last_targets is not None)
    shape = (*state.shape[:-1], dim)
    if out is None:
        out = state.new_zeros(shape) if _is_torch(state) else np.empty(shape, dtype=np.float32)
    out[..., OBS_BASE] = state[..., C.LIN_VEL.start : C.GRAVITY.stop]
    out[..., OBS_COMMAND] = command
    out[..., OBS_JOINT_POS] = state[..., C.JOINT_POS] - _constant(state, C.DEFAULT_JOINT_POS)
    out[..., OBS_JOINT_VEL] = state[..., C.JOINT_VEL]
    if last_targets is not None:
        out[..., OBS_LAST_ACTION] = targets_to_raw(last_targets)
    return out
