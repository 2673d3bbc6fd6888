"""Dual autoregression (paper Eq. 1): the model reads M true history steps, then feeds back its own
predictions for N forecast steps. Teacher forcing is the special case N = 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rwm.models.base import WorldModel, ensemble_gaussian
from rwm.training.latent_regularization import LatentNoise


@dataclass
class Forecast:
    """Predictions for the N forecast steps, normalized space: (B, N, .)."""

    mean: torch.Tensor
    std: torch.Tensor
    contact_logits: torch.Tensor
    member_mean: torch.Tensor
    """(K, B, N, 45): each ensemble member's mean (K = 1 for a single model)."""
    member_std: torch.Tensor
    fed_back: torch.Tensor
    """The states fed back as inputs (samples when training, means when evaluating)."""
    transitions: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    """(hidden in, hidden out) of each forecast step after the first, kept when asked for."""


def forecast(
    model: WorldModel,
    states_n: torch.Tensor,
    actions_n: torch.Tensor,
    history: int,
    horizon: int,
    sample: bool,
    latent_noise: LatentNoise | None = None,
    keep_transitions: bool = False,
    history_grad_steps: int = 0,
    params_n: torch.Tensor | None = None,
) -> Forecast:
    """Predict states history..history+horizon-1 of (B, history+horizon, .) windows.

    The model runs over the true history (inner autoregression); each forecast step then takes the
    previous prediction (a reparameterized sample if `sample`, else the mean) with the true action
    (outer autoregression). `latent_noise` perturbs the latent before each forecast step.
    `history_grad_steps` > 0 reads all but the last that many history steps without gradients (a
    burn-in, as in truncated backpropagation through time); 0 backpropagates through all of them.
    `params_n` (B, robot_param_dim): each window's robot parameters, for a model that takes them.
    """
    if states_n.shape[1] < history + horizon - 1:
        raise ValueError(f"windows of {states_n.shape[1]} steps are too short for M={history}, N={horizon}")
    perturb = latent_noise is not None and latent_noise.active and model.has_latent
    burn_in = history - history_grad_steps if 0 < history_grad_steps < history else 0
    hidden = None
    if burn_in:
        with torch.no_grad():
            _, hidden = model.features(states_n[:, :burn_in], actions_n[:, :burn_in], None, params_n)
    features, hidden = model.features(
        states_n[:, burn_in:history], actions_n[:, burn_in:history], hidden, params_n
    )
    m_k, s_k, contact = model.member_heads(
        features[:, -1], states_n[:, history - 1]
    )  # heads only where needed
    member_means, member_stds, contacts, fed, transitions = [m_k], [s_k], [contact], [], []
    mean, std = ensemble_gaussian(m_k, s_k)
    means, stds = [mean], [std]
    for k in range(1, horizon):
        # noise drawn like the (float32) mean, so that a bfloat16 forward draws the same numbers
        prev = means[-1] + stds[-1] * torch.randn_like(means[-1]) if sample else means[-1]
        fed.append(prev)
        if perturb:
            hidden = latent_noise(hidden)
        m_k, s_k, c, next_hidden = model.step_members(prev, actions_n[:, history + k - 1], hidden, params_n)
        if keep_transitions:
            transitions.append((hidden, next_hidden))
        hidden = next_hidden
        mean, std = ensemble_gaussian(m_k, s_k)
        means.append(mean)
        stds.append(std)
        member_means.append(m_k)
        member_stds.append(s_k)
        contacts.append(c)
    fed_back = torch.stack(fed, 1) if fed else means[0][:, None, :0]
    return Forecast(
        torch.stack(means, 1),
        torch.stack(stds, 1),
        torch.stack(contacts, 1),
        torch.stack(member_means, 2),
        torch.stack(member_stds, 2),
        fed_back,
        transitions,
    )
