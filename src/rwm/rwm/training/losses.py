"""Multi-step prediction loss (paper Eq. 2): Gaussian NLL of states plus BCE of contacts, decayed by
alpha^k over the forecast steps; teacher forcing (N = 1) scores every position of the window."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rwm.models.rwm import RobotWorldModel
from rwm.training.rollout import forecast


def gaussian_nll(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-element negative log-likelihood without the constant."""
    return 0.5 * ((target - mean) / std) ** 2 + torch.log(std)


def world_model_loss(
    model: RobotWorldModel,
    states_n: torch.Tensor,
    actions_n: torch.Tensor,
    contacts: torch.Tensor,
    history: int,
    horizon: int,
    decay: float = 1.0,
    contact_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Loss terms for (B, history + horizon, .) windows; 'total' is what is minimized."""
    if horizon == 1:
        mean, std, logits, _ = model.sequence(states_n[:, :-1], actions_n[:, :-1])
        state_loss = gaussian_nll(mean, std, states_n[:, 1:]).mean()
        contact_loss = F.binary_cross_entropy_with_logits(logits, contacts[:, 1:])
    else:
        f = forecast(model, states_n, actions_n, history, horizon, sample=True)
        target = states_n[:, history : history + horizon]
        weights = decay ** torch.arange(horizon, dtype=states_n.dtype)
        weights = weights / weights.sum()
        state_loss = (gaussian_nll(f.mean, f.std, target).mean((0, 2)) * weights).sum()
        bce = F.binary_cross_entropy_with_logits(
            f.contact_logits, contacts[:, history : history + horizon], reduction="none"
        )
        contact_loss = (bce.mean((0, 2)) * weights).sum()
    return {"total": state_loss + contact_weight * contact_loss, "state": state_loss, "contact": contact_loss}
