"""An ensemble of RWMs trained apart: each member has its own GRU and heads (a deep ensemble).

RWM-U (arXiv 2504.16680) puts an ensemble of state heads on one GRU (`RWMConfig.ensemble_size`).
Grown here from a trained RWM, those heads agreed where a policy fine-tuned in their imagination
went wrong: adapting to an icy robot, their disagreement fell while the candidate fell more often on
the simulated robot (models/README.md). Members that each read the history with their own GRU,
trained apart from their own initialization and sample order, agree only where training made them
agree. Measured on the same ice bags, they predict better (AR error 0.31 against RWM-U's 0.45), but
their disagreement also fell as the candidate went wrong (models/README.md, "RWMs trained apart").
They are composed from separately trained checkpoints that share one normalization
(`compose_ensemble`). Afterwards the ensemble trains as one model (refinement): each member on its
own bootstrap of every batch, all members forecasting from the ensemble's fed-back samples
(`rwm.training.rollout`), which ties them somewhat.

`hidden` is the members' GRU states side by side, (layers, B, K * hidden_size), and the features the
heads read are their last layers side by side, so that imagination, refinement and the ONNX step treat
it as any recurrent model. With `member_per_robot`, an imagined robot steps on its member's state
and the members' mean contacts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rwm.models.base import INPUT_DIM, GaussianHeads, WorldModel
from rwm.models.rwm import RobotWorldModel, RWMConfig, gru_features


@dataclass(frozen=True)
class RWMEnsembleConfig:
    members: int = 5
    """RWMs in the ensemble, each trained apart first."""
    member: RWMConfig = field(default_factory=RWMConfig)
    """Every member's architecture (one state head each: `ensemble_size` 1)."""

    def __post_init__(self) -> None:
        if isinstance(self.member, dict):  # as a checkpoint stores it
            object.__setattr__(self, "member", RWMConfig(**self.member))
        if self.members < 2:
            raise ValueError(f"an ensemble has at least two members, got {self.members}")
        if self.member.ensemble_size != 1:
            raise ValueError("each member of an ensemble of RWMs has one state head (ensemble_size 1)")


class RWMMember(nn.Module):
    """One member: RWM's GRU and heads, under the same names as in `RobotWorldModel`."""

    def __init__(self, cfg: RWMConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(INPUT_DIM + cfg.robot_param_dim, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.heads_module = GaussianHeads(cfg.hidden_size, cfg.head_hidden, cfg.min_std, cfg.max_std)


class RWMEnsemble(WorldModel):
    """K RWMs on one normalizer; the state is the members' Gaussians, the contacts their mean
    probability."""

    has_latent = True

    def __init__(self, cfg: RWMEnsembleConfig = RWMEnsembleConfig()) -> None:
        super().__init__(cfg.member.robot_param_dim)
        self.cfg = cfg
        self.members = nn.ModuleList(RWMMember(cfg.member) for _ in range(cfg.members))

    @property
    def ensemble_size(self) -> int:
        return self.cfg.members

    @property
    def latent_blocks(self) -> int:
        return self.cfg.members

    def initial_hidden(self, batch: int) -> torch.Tensor:
        """(num_layers, batch, members * hidden) zeros."""
        m = self.cfg.member
        return torch.zeros(m.num_layers, batch, self.cfg.members * m.hidden_size, device=self.device)

    def recurrent(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor | None = None,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's GRU over the inputs; features and hidden side by side."""
        if hidden is None:
            hidden = self.initial_hidden(state_n.shape[0]).to(state_n)
        outs = [
            gru_features(member.gru, state_n, action_n, h, params_n)
            for member, h in zip(self.members, hidden.chunk(self.cfg.members, -1), strict=True)
        ]
        return torch.cat([f for f, _ in outs], -1), torch.cat([h for _, h in outs], -1)

    def member_heads(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(K, ..., 45) means and stds, each member from its own features; the contact logits of the
        members' mean probability."""
        outs = [
            member.heads_module.member_outputs(f, state_n)
            for member, f in zip(self.members, features.chunk(self.cfg.members, -1), strict=True)
        ]
        means = torch.cat([m for m, _, _ in outs])
        stds = torch.cat([s for _, s, _ in outs])
        # a sum, not .mean(), as in the ONNX step: the exporter would name the value "mean"
        p_contact = torch.stack([torch.sigmoid(c) for _, _, c in outs]).sum(0) / len(outs)
        return means, stds, torch.logit(p_contact, eps=1e-6)

    def gru_modules(self) -> list[nn.GRU]:
        """The members' GRUs, in the order their states sit in `hidden` (the ONNX step runs each)."""
        return [member.gru for member in self.members]


def compose_ensemble(members: list[WorldModel]) -> RWMEnsemble:
    """One ensemble of separately trained single-head RWMs of the same architecture and
    normalization (the same training data); their weights are copied."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two trained members")
    first = members[0]
    for i, model in enumerate(members):
        if type(model) is not RobotWorldModel or model.cfg.ensemble_size != 1:
            raise ValueError(f"member {i} is not a single-head RWM")
        if asdict(model.cfg) != asdict(first.cfg):
            raise ValueError(f"member {i}'s architecture differs from member 0's")
        for key, value in model.normalizer.state_dict().items():
            if not torch.equal(value, first.normalizer.state_dict()[key]):
                raise ValueError(f"member {i}'s normalization differs from member 0's (other training data)")
    ensemble = RWMEnsemble(RWMEnsembleConfig(members=len(members), member=first.cfg))
    ensemble.normalizer.load_state_dict(first.normalizer.state_dict())
    for member, model in zip(ensemble.members, members, strict=True):
        member.gru.load_state_dict(model.gru.state_dict())
        member.heads_module.load_state_dict(model.heads_module.state_dict())
    return ensemble.eval()
