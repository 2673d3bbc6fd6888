"""Latent perturbations and Jacobian regularization from "Generalization in world models".

Latent noise perturbs the recurrent state before each forecast step: zero drift N(0, sigma^2) acts as
an implicit regularizer; a non-zero drift mu biases the latent and lets errors compound. Jacobian
regularization penalizes ||d h_{t+1} / d h_t||_F^2 of the latent transition, estimated without
forming the Jacobian: for v ~ N(0, I), E ||J^T v||^2 = ||J||_F^2 (Hutchinson), one vector-Jacobian
product per projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentNoise:
    """h <- h + mu + sigma * eps, eps ~ N(0, I), applied before every forecast step."""

    sigma: float = 0.0
    mu: float = 0.0

    @property
    def active(self) -> bool:
        return self.sigma > 0 or self.mu != 0

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.mu + self.sigma * torch.randn_like(hidden)


def jacobian_frobenius_sq(
    next_hidden: torch.Tensor, hidden: torch.Tensor, projections: int = 1
) -> torch.Tensor:
    """Hutchinson estimate of ||d next_hidden / d hidden||_F^2 per sample, averaged over the batch.

    `hidden` must be part of the graph that produced `next_hidden`; the result stays differentiable
    (create_graph), so it can be added to the loss. Hidden tensors are (layers, B, H).
    """
    total = next_hidden.new_zeros(())
    for _ in range(projections):
        v = torch.randn_like(next_hidden)
        (vjp,) = torch.autograd.grad(next_hidden, hidden, v, create_graph=True)
        total = total + vjp.pow(2).sum() / next_hidden.shape[1]
    return total / projections
