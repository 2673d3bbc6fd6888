"""RWM: a GRU world model with Gaussian state heads and contact heads (paper, Sec. III-B, Table S6).

One step maps (normalized state, normalized action, hidden) to the mean and std of the next
normalized state (the mean as a residual on the input state), 8 contact logits and the next hidden
state. Inner autoregression is the GRU's own recurrence over the history; outer autoregression
(feeding predictions back) lives in `rwm.training.rollout` so that every model shares it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rwm.models.normalization import StateActionNormalizer
from rwm.robot import contract as C


@dataclass(frozen=True)
class RWMConfig:
    """Table S6: GRU base 2 x 256, MLP heads of 128 ReLU."""

    hidden_size: int = 256
    num_layers: int = 2
    head_hidden: int = 128
    min_std: float = 1e-3
    max_std: float = 5.0


def _head(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, out))


class RobotWorldModel(nn.Module):
    """GRU world model: `step` advances one 0.02 s step for a batch."""

    def __init__(self, cfg: RWMConfig = RWMConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateActionNormalizer()
        self.gru = nn.GRU(C.STATE_DIM + C.ACTION_DIM, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.mean_head = _head(cfg.hidden_size, cfg.head_hidden, C.STATE_DIM)
        self.std_head = _head(cfg.hidden_size, cfg.head_hidden, C.STATE_DIM)
        self.contact_head = _head(cfg.hidden_size, cfg.head_hidden, C.CONTACT_DIM)

    def initial_hidden(self, batch: int) -> torch.Tensor:
        """(num_layers, batch, hidden) zeros."""
        return torch.zeros(self.cfg.num_layers, batch, self.cfg.hidden_size)

    def heads(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(mean, std, contact logits) of the next normalized state from GRU features."""
        mean = state_n + self.mean_head(features)
        std = nn.functional.softplus(self.std_head(features)).clamp(self.cfg.min_std, self.cfg.max_std)
        return mean, std, self.contact_head(features)

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU features for (B, T, .) inputs and the last hidden state (the inner autoregression)."""
        if hidden is None:
            hidden = self.initial_hidden(state_n.shape[0]).to(state_n)
        return self.gru(torch.cat([state_n, action_n], -1), hidden)

    def sequence(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over (B, T, .) inputs: predictions for every next step and the last hidden."""
        features, hidden = self.recurrent(state_n, action_n, hidden)
        mean, std, contact = self.heads(features, state_n)
        return mean, std, contact, hidden

    def step(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for (B, .) inputs: (mean, std, contact logits, hidden)."""
        mean, std, contact, hidden = self.sequence(state_n[:, None], action_n[:, None], hidden)
        return mean[:, 0], std[:, 0], contact[:, 0], hidden
