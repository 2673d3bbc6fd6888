"""Transformer baseline (Table S7): a causal decoder, dimension 64, 8 heads, 2 layers, context 32,
sinusoidal positions. Its `hidden` is the buffer of the last `context` inputs; positions count from
the oldest input in the window, so a full window always spans positions 0..context-1, and a
prediction never sees more than `context` inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rwm.models.base import INPUT_DIM, GaussianHeads, WorldModel, extend_context


@dataclass(frozen=True)
class TransformerConfig:
    dim: int = 64
    heads: int = 8
    layers: int = 2
    context: int = 32
    feedforward: int = 256
    head_hidden: int = 128


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sine/cosine encodings of Vaswani et al."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)
    return enc


class TransformerWorldModel(WorldModel):
    def __init__(self, cfg: TransformerConfig = TransformerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(INPUT_DIM, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, cfg.feedforward, dropout=0.0, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.register_buffer("positions", sinusoidal_positions(cfg.context, cfg.dim), persistent=False)
        self.heads_module = GaussianHeads(cfg.dim, cfg.head_hidden)

    def initial_hidden(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 0, INPUT_DIM, device=self.device)

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device, dtype=tokens.dtype)
        return self.decoder(self.embed(tokens) + self.positions[:t], mask=mask, is_causal=True)

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.cfg.context
        x = torch.cat([state_n, action_n], -1)
        past = hidden if hidden is not None else x[:, :0]
        if past.shape[1] == 0:
            b, t = x.shape[:2]
            if t <= k:
                return self._decode(x), x
            # Longer than the context: every later position sees exactly the last k inputs, as in `step`.
            later = x.unfold(1, k, 1)[:, 1:].transpose(2, 3).reshape(b * (t - k), k, x.shape[-1])
            tail = self._decode(later)[:, -1].reshape(b, t - k, -1)
            features = torch.cat([self._decode(x[:, :k]), tail], 1)
            return features, x[:, -k:]
        if x.shape[1] != 1:
            raise ValueError("with a non-empty context buffer the Transformer advances one step at a time")
        window = extend_context(past, x, k)
        return self._decode(window)[:, -1:], window
