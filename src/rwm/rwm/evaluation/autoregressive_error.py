"""Relative autoregressive error as the reference implementation defines it.

In normalized space: after M true history steps the model predicts every later state from its own
predictions (means) and the true actions; per step, sum over dimensions of |prediction - truth|
over the sum of |truth|; averaged over the steps after the history and over the trajectories.
"""

from __future__ import annotations

import torch

from rwm.models.base import WorldModel
from rwm.training.latent_regularization import LatentNoise


def relative_error(pred_n: torch.Tensor, truth_n: torch.Tensor) -> torch.Tensor:
    """Per-step relative error (B, T) of (B, T, D) normalized predictions."""
    return (pred_n - truth_n).abs().sum(-1) / truth_n.abs().sum(-1)


@torch.no_grad()
def rollout_trajectories(
    model: WorldModel,
    states_n: torch.Tensor,
    actions_n: torch.Tensor,
    history: int,
    input_noise: float = 0.0,
    latent_noise: LatentNoise | None = None,
    generator: torch.Generator | None = None,
    params_n: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predict states history..T-1 of (B, T, .) normalized trajectories; returns (B, T - history, 45).

    `input_noise` adds N(0, sigma^2) to every state and action the model reads (history and fed-back
    predictions alike); `latent_noise` perturbs the latent before every forecast step. The truth it is
    scored against stays clean. `params_n` (B, robot_param_dim): the robots' parameters, for a model that
    takes them.
    """
    model.eval()

    def noisy(x: torch.Tensor) -> torch.Tensor:
        if input_noise <= 0:
            return x
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # on the CPU: any device, same draw
        return x + input_noise * noise.to(x.device)

    perturb = latent_noise is not None and latent_noise.active and model.has_latent
    seen = noisy(states_n[:, :history])
    features, hidden = model.features(seen, noisy(actions_n[:, :history]), None, params_n)
    pred = [model.heads(features[:, -1], seen[:, -1])[0]]
    for t in range(history, states_n.shape[1] - 1):
        if perturb:
            eps = torch.randn(hidden.shape, generator=generator).to(hidden.device)
            hidden = hidden + latent_noise.mu + latent_noise.sigma * eps
        m, _, _, hidden = model.step(noisy(pred[-1]), noisy(actions_n[:, t]), hidden, params_n)
        pred.append(m)
    return torch.stack(pred, 1)


def hold_last_prediction(states_n: torch.Tensor, history: int) -> torch.Tensor:
    """The baseline that predicts the last history state forever: (B, T - history, 45)."""
    last = states_n[:, history - 1 : history]
    return last.expand(-1, states_n.shape[1] - history, -1)


def autoregressive_error(pred_n: torch.Tensor, states_n: torch.Tensor, history: int) -> dict:
    """Mean relative error and its curve over forecast steps for predictions of states history..T-1."""
    err = relative_error(pred_n, states_n[:, history:])
    return {"mean": float(err.mean()), "per_step": err.mean(0).tolist()}
