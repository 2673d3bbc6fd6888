"""RSSM baseline (Table S7; PlaNet/Dreamer): a 2-layer GRU of 256 carrying a deterministic state and
a stochastic 32 x 32 categorical latent (straight-through one-hot samples).

Per step: z_t ~ q(z | h_{t-1}, s_t) (the prior p(z | h_{t-1}) is trained towards it by a balanced
KL), h_t = GRU([z_t, a_t], h_{t-1}), and the heads predict s_{t+1} from [h_t, z_t]. Fed-back
predictions enter through the same posterior, exactly as observations do. In eval mode z is the
posterior's mode. The KL terms are gathered during the pass and collected by `auxiliary_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rwm.models.base import GaussianHeads, WorldModel, mlp_head
from rwm.robot import contract as C


@dataclass(frozen=True)
class RSSMConfig:
    hidden_size: int = 256
    num_layers: int = 2
    latents: int = 32
    categories: int = 32
    head_hidden: int = 128
    kl_weight: float = 0.1
    kl_balance: float = 0.8
    free_nats: float = 1.0


class RSSMWorldModel(WorldModel):
    has_latent = True

    def __init__(self, cfg: RSSMConfig = RSSMConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        z_dim = cfg.latents * cfg.categories
        self.cells = nn.ModuleList(
            nn.GRUCell(z_dim + C.ACTION_DIM if i == 0 else cfg.hidden_size, cfg.hidden_size)
            for i in range(cfg.num_layers)
        )
        self.posterior = mlp_head(cfg.hidden_size + C.STATE_DIM, cfg.hidden_size, z_dim)
        self.prior = mlp_head(cfg.hidden_size, cfg.hidden_size, z_dim)
        self.heads_module = GaussianHeads(cfg.hidden_size + z_dim, cfg.head_hidden)
        self._kl: list[torch.Tensor] = []

    def initial_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.cfg.num_layers, batch, self.cfg.hidden_size, device=self.device)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # a bfloat16 forward (`LearnerConfig.precision`) keeps exact one-hots
        probs = logits.softmax(-1)
        if self.training:  # Gumbel-max: a categorical sample without torch.multinomial's overhead
            gumbel = -torch.empty_like(logits).exponential_().log()
            idx = (logits + gumbel).argmax(-1)
        else:
            idx = probs.argmax(-1)
        onehot = F.one_hot(idx, probs.shape[-1]).to(probs)
        return (onehot + probs - probs.detach()).flatten(-2)  # straight-through gradients

    def _kl_loss(self, post: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Balanced KL(q || p) of Dreamer-v2 with free nats."""
        c = self.cfg

        def kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
            q = q_logits.log_softmax(-1)
            return (q.exp() * (q - p_logits.log_softmax(-1))).sum((-1, -2))

        post, prior = post.float(), prior.float()  # the loss in float32 whatever the forward's precision
        value = c.kl_balance * kl(post.detach(), prior) + (1 - c.kl_balance) * kl(post, prior.detach())
        return value.clamp_min(c.free_nats).mean()

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        shape = (*state_n.shape[:1], c.latents, c.categories)
        if hidden is None:
            hidden = self.initial_hidden(state_n.shape[0]).to(state_n)
        h = list(hidden.unbind(0))
        features, posts, priors_from = [], [], []
        for t in range(state_n.shape[1]):
            post = self.posterior(torch.cat([h[-1], state_n[:, t]], -1)).reshape(shape)
            posts.append(post)
            priors_from.append(h[-1])
            z = self._sample(post)
            x = torch.cat([z, action_n[:, t]], -1)
            for i, cell in enumerate(self.cells):
                h[i] = x = cell(x, h[i])
            features.append(torch.cat([h[-1], z], -1))
        if torch.is_grad_enabled() and self.training:  # the prior of every step in one batch
            post = torch.stack(posts, 1)
            prior = self.prior(torch.stack(priors_from, 1)).reshape(post.shape)
            self._kl.append(self._kl_loss(post, prior))
        return torch.stack(features, 1), torch.stack(h, 0)

    def auxiliary_loss(self) -> torch.Tensor:
        """Weighted mean KL over the steps run since the last call."""
        if not self._kl:
            return torch.zeros(())
        loss = self.cfg.kl_weight * torch.stack(self._kl).mean()
        self._kl = []
        return loss
