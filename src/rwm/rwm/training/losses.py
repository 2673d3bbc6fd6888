"""Multi-step prediction loss (paper Eq. 2): Gaussian NLL of states plus BCE of contacts, decayed by
alpha^k over the forecast steps; teacher forcing (N = 1) scores every position of the window.
Optional terms: the model's own (RSSM KL) and the Jacobian penalty on the latent transition."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rwm.models.base import WorldModel
from rwm.training.latent_regularization import LatentNoise, jacobian_frobenius_sq
from rwm.training.rollout import forecast


def gaussian_nll(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-element negative log-likelihood without the constant."""
    return 0.5 * ((target - mean) / std) ** 2 + torch.log(std)


def ensemble_nll(member_mean: torch.Tensor, member_std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, ...) NLL of the target under each of K members ((K, B, ..., D) Gaussians), each member
    weighing the batch by its own bootstrap (Poisson(1) weights per window, the online bootstrap);
    a single model (K = 1) weighs every window 1, which is plain NLL."""
    nll = gaussian_nll(member_mean, member_std, target).mean(-1)  # (K, B, ...)
    if len(member_mean) == 1:
        return nll[0]
    shape = nll.shape[:2] + (1,) * (nll.dim() - 2)
    weights = torch.poisson(torch.ones(shape, dtype=nll.dtype, device=nll.device))
    return (weights * nll).mean(0)


def contact_bce(logits: torch.Tensor, contacts: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Binary cross-entropy of the contact logits averaged over `dims`, over the known flags only:
    NaN flags (bags of a robot without /anymal/contacts) teach nothing rather than "no contact"."""
    known = torch.isfinite(contacts)
    bce = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(contacts), reduction="none")
    return (bce * known).sum(dims) / known.sum(dims).clamp(min=1)


def _jacobian_on_history(
    model: WorldModel, states_n: torch.Tensor, actions_n: torch.Tensor, params_n: torch.Tensor | None
) -> torch.Tensor:
    """Jacobian penalty for teacher forcing: the transition out of a mid-window latent."""
    mid = states_n.shape[1] // 2
    _, hidden = model.features(states_n[:, :mid], actions_n[:, :mid], None, params_n)
    next_hidden = model.step(states_n[:, mid], actions_n[:, mid], hidden, params_n)[3]
    return jacobian_frobenius_sq(next_hidden, hidden)


def world_model_loss(
    model: WorldModel,
    states_n: torch.Tensor,
    actions_n: torch.Tensor,
    contacts: torch.Tensor,
    history: int,
    horizon: int,
    decay: float = 1.0,
    contact_weight: float = 1.0,
    latent_noise: LatentNoise | None = None,
    jacobian_weight: float = 0.0,
    history_grad_steps: int = 0,
    params_n: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms for (B, history + horizon, .) windows (and (B, robot_param_dim) robot parameters for a
    model that takes them); 'total' is what is minimized."""
    jacobian = torch.zeros((), device=states_n.device)
    use_jacobian = jacobian_weight > 0 and model.has_latent
    if horizon == 1:
        if history_grad_steps:
            raise ValueError("history_grad_steps needs a forecast (horizon > 1), not teacher forcing")
        features, _ = model.features(states_n[:, :-1], actions_n[:, :-1], None, params_n)
        member_mean, member_std, logits = model.member_heads(features, states_n[:, :-1])
        state_loss = ensemble_nll(member_mean, member_std, states_n[:, 1:]).mean()
        contact_loss = contact_bce(logits, contacts[:, 1:], (0, 1, 2))
        if use_jacobian:
            jacobian = _jacobian_on_history(model, states_n, actions_n, params_n)
    else:
        f = forecast(
            model,
            states_n,
            actions_n,
            history,
            horizon,
            True,
            latent_noise,
            keep_transitions=use_jacobian,
            history_grad_steps=history_grad_steps,
            params_n=params_n,
        )
        target = states_n[:, history : history + horizon]
        weights = decay ** torch.arange(horizon, dtype=states_n.dtype, device=states_n.device)
        weights = weights / weights.sum()
        state_loss = (ensemble_nll(f.member_mean, f.member_std, target).mean(0) * weights).sum()
        per_step = contact_bce(f.contact_logits, contacts[:, history : history + horizon], (0, 2))
        contact_loss = (per_step * weights).sum()
        if use_jacobian:
            k = int(torch.randint(len(f.transitions), ()))
            jacobian = jacobian_frobenius_sq(f.transitions[k][1], f.transitions[k][0])
    aux = model.auxiliary_loss()
    jacobian = jacobian.float() / model.latent_blocks
    total = state_loss + contact_weight * contact_loss + aux + jacobian_weight * jacobian
    return {"total": total, "state": state_loss, "contact": contact_loss, "aux": aux, "jacobian": jacobian}
