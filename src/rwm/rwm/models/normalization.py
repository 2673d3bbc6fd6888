"""Fixed normalization of states and actions, computed from training data and saved with the model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rwm.robot import contract as C

MIN_STD = 1e-3
"""Floor on a dimension's std, so near-constant dimensions do not blow up."""


class StateActionNormalizer(nn.Module):
    """x_n = (x - mean) / std for the 45-d state and 12-d action; buffers travel in the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("state_mean", torch.zeros(C.STATE_DIM))
        self.register_buffer("state_std", torch.ones(C.STATE_DIM))
        self.register_buffer("action_mean", torch.zeros(C.ACTION_DIM))
        self.register_buffer("action_std", torch.ones(C.ACTION_DIM))

    @torch.no_grad()
    def fit(self, states: np.ndarray, actions: np.ndarray) -> StateActionNormalizer:
        """Set the statistics from (N, 45) states and (N, 12) actions."""
        for name, x in (("state", states), ("action", actions)):
            x = np.asarray(x, dtype=np.float64)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(np.maximum(x.std(0), MIN_STD)))
        return self

    def state(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.state_mean) / self.state_std

    def action(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_mean) / self.action_std

    def state_inverse(self, s_n: torch.Tensor) -> torch.Tensor:
        return s_n * self.state_std + self.state_mean
