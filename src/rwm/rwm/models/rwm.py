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

from rwm.models.base import INPUT_DIM, GaussianHeads, WorldModel


@dataclass(frozen=True)
class RWMConfig:
    """Table S6: GRU base 2 x 256, MLP heads of 128 ReLU."""

    hidden_size: int = 256
    num_layers: int = 2
    head_hidden: int = 128
    min_std: float = 1e-3
    max_std: float = 5.0
    ensemble_size: int = 1
    """State-head members (RWM-U); 1 is the paper's RWM."""
    robot_param_dim: int = 0
    """Robot parameters appended to every GRU input (a model of a simulated family told which robot
    it steps); 0 is the paper's RWM, which infers the robot from its history."""


class RobotWorldModel(WorldModel):
    """GRU world model; `hidden` is the GRU state (num_layers, B, hidden_size)."""

    has_latent = True

    def __init__(self, cfg: RWMConfig = RWMConfig()) -> None:
        super().__init__(cfg.robot_param_dim)
        self.cfg = cfg
        self.gru = nn.GRU(INPUT_DIM + cfg.robot_param_dim, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.heads_module = GaussianHeads(
            cfg.hidden_size, cfg.head_hidden, cfg.min_std, cfg.max_std, cfg.ensemble_size
        )

    def initial_hidden(self, batch: int) -> torch.Tensor:
        """(num_layers, batch, hidden) zeros."""
        return torch.zeros(self.cfg.num_layers, batch, self.cfg.hidden_size, device=self.device)

    def recurrent(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor | None = None,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU features for (B, T, .) inputs and the last hidden state (the inner autoregression);
        a model of the family reads its (B, robot_param_dim) robot parameters with every step."""
        if hidden is None:
            hidden = self.initial_hidden(state_n.shape[0]).to(state_n)
        return gru_features(self.gru, state_n, action_n, hidden, params_n)

    def gru_modules(self) -> list[nn.GRU]:
        """The GRU whose state is `hidden` (what the ONNX step writes out)."""
        return [self.gru]


def gru_features(
    gru: nn.GRU,
    state_n: torch.Tensor,
    action_n: torch.Tensor,
    hidden: torch.Tensor,
    params_n: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A GRU over (B, T, .) states and actions, with each robot's (B, .) parameters on every step when
    given: (B, T, hidden) features and the last hidden."""
    inputs = [state_n, action_n]
    if params_n is not None:
        inputs.append(params_n[:, None].expand(-1, state_n.shape[1], -1))
    return gru(torch.cat(inputs, -1), hidden)
