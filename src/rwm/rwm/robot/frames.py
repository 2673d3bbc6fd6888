"""Rotations between the world and the base frame, NumPy only (the bag loader and the nodes use them
without MuJoCo): quaternions are (w, x, y, z), world to base, as in CONTRACT.md."""

from __future__ import annotations

import math

import numpy as np


def quat_rotate_inverse(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Rotate world vectors into the frame of unit quaternions (w, x, y, z); batched over rows."""
    w = quat[..., 0:1]
    u = quat[..., 1:4]
    return (
        vec * (2.0 * w * w - 1.0)
        - np.cross(u, vec) * (2.0 * w)
        + u * (2.0 * (u * vec).sum(-1, keepdims=True))
    )


def projected_gravity(quat_wxyz: np.ndarray) -> np.ndarray:
    """The world's down direction (0, 0, -1) in the base frame of one quaternion: the state's gravity
    slice (`quat_rotate_inverse(q, down)` written out, for the 400 Hz paths)."""
    w, x, y, z = quat_wxyz.tolist()
    # third row of R^T (R: base to world) times -1
    return -np.array([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)])


def gravity_z_at_tilt(tilt_deg: float) -> float:
    """The projected gravity's z of a base tilted `tilt_deg` from upright (-1 upright): fall and
    start thresholds are given in degrees and compared with the state's gravity z."""
    return -math.cos(math.radians(tilt_deg))
