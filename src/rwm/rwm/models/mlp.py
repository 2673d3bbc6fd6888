"""MLP baseline (Table S7: 256-256 ReLU): the next state from a flat window of the last inputs.

It gets the same context as the recurrent models: its `hidden` is a buffer of the last `context`
(state, action) pairs, zero-padded at the start of a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rwm.models.base import INPUT_DIM, GaussianHeads, WorldModel, extend_context


@dataclass(frozen=True)
class MLPConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    context: int = 32
    head_hidden: int = 128


class MLPWorldModel(WorldModel):
    def __init__(self, cfg: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        inp = INPUT_DIM * cfg.context
        for width in cfg.hidden_dims:
            layers += [nn.Linear(inp, width), nn.ReLU()]
            inp = width
        self.body = nn.Sequential(*layers)
        self.heads_module = GaussianHeads(inp, cfg.head_hidden)

    def initial_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 0, INPUT_DIM, device=self.device)

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k, (b, t) = self.cfg.context, state_n.shape[:2]
        x = torch.cat([state_n, action_n], -1)
        past = hidden if hidden is not None else x.new_zeros(b, 0, INPUT_DIM)
        pad = x.new_zeros(b, k - 1 - min(past.shape[1], k - 1), INPUT_DIM)
        full = torch.cat([pad, past[:, -(k - 1) :] if k > 1 else past[:, :0], x], 1)  # (B, k-1+T, 57)
        windows = full.unfold(1, k, 1).transpose(2, 3).reshape(b, t, k * INPUT_DIM)
        return self.body(windows), extend_context(past, x, k)
