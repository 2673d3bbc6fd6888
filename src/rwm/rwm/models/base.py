"""The interface every world model shares, so that one trainer, one rollout and one evaluation serve
RWM and the baselines alike.

All tensors are in normalized space. A model reads (state, action) pairs; `recurrent` runs over a
(B, T, .) sequence and returns per-step features and a carried `hidden`; `heads` turns features into
the Gaussian of the next state (mean as a residual on the input state) and contact logits; `step`
advances one step from a carried `hidden`. What `hidden` is depends on the model: the GRU state
(RWM, RSSM) or a buffer of the last context inputs (MLP, Transformer).
"""

from __future__ import annotations

import torch
from torch import nn

from rwm.models.normalization import StateActionNormalizer
from rwm.robot import contract as C

INPUT_DIM = C.STATE_DIM + C.ACTION_DIM


def mlp_head(inp: int, hidden: int, out: int) -> nn.Sequential:
    """The paper's heads: one hidden ReLU layer."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, out))


class GaussianHeads(nn.Module):
    """Mean (residual), std (softplus, clamped) and contact logits from features."""

    def __init__(self, features: int, hidden: int, min_std: float = 1e-3, max_std: float = 5.0) -> None:
        super().__init__()
        self.mean_head = mlp_head(features, hidden, C.STATE_DIM)
        self.std_head = mlp_head(features, hidden, C.STATE_DIM)
        self.contact_head = mlp_head(features, hidden, C.CONTACT_DIM)
        self.min_std, self.max_std = min_std, max_std

    def forward(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean = state_n + self.mean_head(features)
        std = nn.functional.softplus(self.std_head(features)).clamp(self.min_std, self.max_std)
        return mean, std, self.contact_head(features)


class WorldModel(nn.Module):
    """Base class: normalizer, heads and the step/sequence API built on `recurrent`."""

    has_latent: bool = False
    """True when `hidden` is a learned latent state (GRU), the object of latent noise and Jacobian
    regularization; False when it is only a buffer of past inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.normalizer = StateActionNormalizer()
        self.heads_module: GaussianHeads

    def initial_hidden(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) features for (B, T, .) inputs, and the hidden after the last step."""
        raise NotImplementedError

    def heads(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(mean, std, contact logits) of the next normalized state."""
        return self.heads_module(features, state_n)

    def sequence(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: predictions for every next step and the last hidden."""
        features, hidden = self.recurrent(state_n, action_n, hidden)
        mean, std, contact = self.heads(features, state_n)
        return mean, std, contact, hidden

    def step(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for (B, .) inputs: (mean, std, contact logits, hidden)."""
        features, hidden = self.recurrent(state_n[:, None], action_n[:, None], hidden)
        mean, std, contact = self.heads(features[:, -1], state_n)
        return mean, std, contact, hidden

    def auxiliary_loss(self) -> torch.Tensor:
        """Model-specific loss gathered since the last call (RSSM's KL); zero for the others."""
        return torch.zeros(())


def extend_context(hidden: torch.Tensor | None, inputs: torch.Tensor, context: int) -> torch.Tensor:
    """For models whose `hidden` is the last `context` inputs (B, L <= context, 57): append, keep the last."""
    full = inputs if hidden is None or hidden.shape[1] == 0 else torch.cat([hidden, inputs], 1)
    return full[:, -context:]
