"""An aligned 50 Hz trajectory: the unit that bags and datasets are turned into for learning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rwm.robot import contract as C
from rwm.sim.variants import ROBOT_PARAM_DIM


@dataclass
class Trajectory:
    """Row t holds the state s_t, the action a_t applied at s_t, the contacts observed with s_t and
    the velocity command in force at t. s_{t+1} is the next row; the last action has no successor.
    """

    time: np.ndarray
    """(T,) float64 stamps, s."""
    state: np.ndarray
    """(T, 45) float32 world-model state o."""
    action: np.ndarray
    """(T, 12) float32 joint position targets, rad."""
    contacts: np.ndarray
    """(T, 8) float32 contact flags (0/1); NaN where unknown (a robot without /anymal/contacts)."""
    command: np.ndarray
    """(T, 3) float32 velocity command (vx, vy, yaw rate)."""
    robot_params: np.ndarray | None = None
    """(T, 8) float32 parameters of the simulated robot (`rwm.sim.variants.ROBOT_PARAM_FIELDS`), the same
    on every row; None where they are unknown (a real robot, a bag)."""

    def __post_init__(self) -> None:
        n = len(self.time)
        for name, dim in (
            ("state", C.STATE_DIM),
            ("action", C.ACTION_DIM),
            ("contacts", C.CONTACT_DIM),
            ("command", C.COMMAND_DIM),
        ):
            arr = getattr(self, name)
            if arr.shape != (n, dim):
                raise ValueError(f"Trajectory.{name} must have shape ({n}, {dim}), got {arr.shape}")
        if self.robot_params is not None:
            if self.robot_params.shape != (n, ROBOT_PARAM_DIM):
                raise ValueError(
                    f"Trajectory.robot_params must have shape ({n}, {ROBOT_PARAM_DIM}), "
                    f"got {self.robot_params.shape}"
                )
            if n and (self.robot_params != self.robot_params[0]).any():
                raise ValueError(
                    "Trajectory.robot_params must be the same on every row: one trajectory is one robot"
                )

    def __len__(self) -> int:
        return len(self.time)

    def slice(self, start: int, stop: int) -> Trajectory:
        return Trajectory(
            self.time[start:stop],
            self.state[start:stop],
            self.action[start:stop],
            self.contacts[start:stop],
            self.command[start:stop],
            None if self.robot_params is None else self.robot_params[start:stop],
        )
