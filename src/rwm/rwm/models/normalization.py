"""Fixed normalization of states and actions, computed from training data and saved with the model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rwm.robot import contract as C

MIN_STD = 1e-3
"""Floor on a dimension's std, so near-constant dimensions do not blow up."""


class StateActionNormalizer(nn.Module):
    """x_n = (x - mean) / std for the 45-d state and 12-d action, and for the robot's parameters of a
    model given them (`robot_param_dim` > 0); buffers travel in the checkpoint."""

    def __init__(self, robot_param_dim: int = 0) -> None:
        super().__init__()
        self.robot_param_dim = robot_param_dim
        """Width of the robot parameters normalized here (0: none, no buffers for them)."""
        if robot_param_dim:
            self.register_buffer("robot_params_mean", torch.zeros(robot_param_dim))
            self.register_buffer("robot_params_std", torch.ones(robot_param_dim))
        self.register_buffer("state_mean", torch.zeros(C.STATE_DIM))
        self.register_buffer("state_std", torch.ones(C.STATE_DIM))
        self.register_buffer("action_mean", torch.zeros(C.ACTION_DIM))
        self.register_buffer("action_std", torch.ones(C.ACTION_DIM))

    @torch.no_grad()
    def fit(
        self, states: np.ndarray, actions: np.ndarray, robot_params: np.ndarray | None = None
    ) -> StateActionNormalizer:
        """Set the statistics from (N, 45) states, (N, 12) actions and, for a model given the robot's
        parameters, (N, robot_param_dim) of them (a parameter that never varies is refused: the data
        cannot teach what it does)."""
        if (robot_params is None) != (self.robot_param_dim == 0):
            raise ValueError(
                f"the normalizer has {self.robot_param_dim} robot-parameter dimensions; "
                f"robot parameters given: {robot_params is not None}"
            )
        pairs = [("state", states), ("action", actions)]
        if robot_params is not None:
            if (np.ptp(robot_params, axis=0) == 0).any():
                raise ValueError(
                    "a robot parameter is the same in all the data: train on a randomized family"
                )
            pairs.append(("robot_params", robot_params))
        for name, x in pairs:
            x = np.asarray(x, dtype=np.float64)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(np.maximum(x.std(0), MIN_STD)))
        return self

    def state(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.state_mean) / self.state_std

    def action(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_mean) / self.action_std

    def robot_params(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.robot_params_mean) / self.robot_params_std

    def state_inverse(self, s_n: torch.Tensor) -> torch.Tensor:
        return s_n * self.state_std + self.state_mean
