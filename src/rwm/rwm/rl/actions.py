"""Raw policy output to joint targets (CONTRACT.md: a = q_default + 0.5 u), shared by simulation,
imagination and the robot's policy node; NumPy only, so the control path imports no torch."""

from __future__ import annotations

import numpy as np

from rwm.robot import contract as C

RAW_ACTION_LIMIT = 10.0
"""Raw actions are clipped to +-this before scaling (a is then within +-5 rad of the standing pose)."""


def raw_to_targets(u: np.ndarray) -> np.ndarray:
    """Joint targets from raw policy output."""
    return C.DEFAULT_JOINT_POS + C.ACTION_SCALE * np.clip(u, -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT)
