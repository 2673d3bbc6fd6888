"""The interface every world model shares, so that one trainer, one rollout and one evaluation serve
RWM and the baselines alike.

All tensors are in normalized space. A model reads (state, action) pairs; `recurrent` runs over a
(B, T, .) sequence and returns per-step features and a carried `hidden`; `heads` turns features into
the Gaussian of the next state (mean as a residual on the input state) and contact logits; `step`
advances one step from a carried `hidden`. What `hidden` is depends on the model: the GRU state
(RWM, RSSM) or a buffer of the last context inputs (MLP, Transformer).
"""

from __future__ import annotations

import torch
from torch import nn

from rwm.models.normalization import StateActionNormalizer
from rwm.robot import contract as C

INPUT_DIM = C.STATE_DIM + C.ACTION_DIM


def mlp_head(inp: int, hidden: int, out: int) -> nn.Sequential:
    """The paper's heads: one hidden ReLU layer."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, out))


def ensemble_gaussian(means: torch.Tensor, stds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (K, ..., D) members as one Gaussian: their mean, and the std of both uncertainties
    (the members' mean variance, aleatoric, plus the variance of their means, epistemic)."""
    if len(means) == 1:
        return means[0], stds[0]
    return means.mean(0), (stds.square().mean(0) + means.var(0, unbiased=False)).sqrt()


class GaussianHeads(nn.Module):
    """Mean (residual), std (softplus, clamped) and contact logits from features.

    With `members` > 1 the state heads are an ensemble (RWM-U, arXiv 2504.16680) on the shared
    features: each member predicts its own Gaussian, trained on its own bootstrap of every batch, so
    their disagreement measures what the data did not pin down (epistemic uncertainty) while each
    member's std is the noise it expects (aleatoric). Member 0 is `mean_head`/`std_head`, so a
    single model's checkpoint is a one-member ensemble and an ensemble can start from it.
    """

    def __init__(
        self, features: int, hidden: int, min_std: float = 1e-3, max_std: float = 5.0, members: int = 1
    ) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble has at least one member, got {members}")
        self.mean_head = mlp_head(features, hidden, C.STATE_DIM)
        self.std_head = mlp_head(features, hidden, C.STATE_DIM)
        self.member_mean_heads = nn.ModuleList(
            mlp_head(features, hidden, C.STATE_DIM) for _ in range(members - 1)
        )
        self.member_std_heads = nn.ModuleList(
            mlp_head(features, hidden, C.STATE_DIM) for _ in range(members - 1)
        )
        self.contact_head = mlp_head(features, hidden, C.CONTACT_DIM)
        self.min_std, self.max_std = min_std, max_std

    @property
    def members(self) -> int:
        return 1 + len(self.member_mean_heads)

    def member_outputs(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(K, ..., 45) means and stds of the K members, and the contact logits: float32 even when the
        layers ran in bfloat16 (`LearnerConfig.precision`), so that stds, the probabilities of sure
        contacts and the losses built on them keep their resolution."""
        mean_heads = [self.mean_head, *self.member_mean_heads]
        std_heads = [self.std_head, *self.member_std_heads]
        means = torch.stack([state_n + h(features).float() for h in mean_heads])
        stds = torch.stack([nn.functional.softplus(h(features).float()) for h in std_heads])
        return means, stds.clamp(self.min_std, self.max_std), self.contact_head(features).float()


class WorldModel(nn.Module):
    """Base class: normalizer, heads and the step/sequence API built on `recurrent`."""

    has_latent: bool = False
    """True when `hidden` is a learned latent state (GRU), the object of latent noise and Jacobian
    regularization; False when it is only a buffer of past inputs."""

    def __init__(self, robot_param_dim: int = 0) -> None:
        super().__init__()
        self.normalizer = StateActionNormalizer(robot_param_dim)
        self.heads_module: GaussianHeads

    @property
    def robot_param_dim(self) -> int:
        """Parameters of the robot the model is given with every input
        (`rwm.sim.variants.ROBOT_PARAM_FIELDS`, normalized); 0: the model knows the robot only from
        the history it reads."""
        return self.normalizer.robot_param_dim

    @property
    def ensemble_size(self) -> int:
        """State-head members whose disagreement is the model's epistemic uncertainty (1: none)."""
        return self.heads_module.members

    @property
    def latent_blocks(self) -> int:
        """Independent recurrent cores whose states sit side by side in `hidden`: the Jacobian
        penalty on the latent is their sum, so the loss takes their mean, as it does the members'
        likelihoods."""
        return 1

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (its initial hidden states are made there)."""
        return self.normalizer.state_mean.device

    def initial_hidden(self, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def recurrent(
        self, state_n: torch.Tensor, action_n: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) features for (B, T, .) inputs, and the hidden after the last step: each model's
        own; callers use `features`, which checks the robot parameters."""
        raise NotImplementedError

    def features(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor | None = None,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`recurrent`, given the (B, robot_param_dim) normalized parameters of each robot when the model
        takes them: a model of the family is refused without them, any other with them."""
        if (params_n is None) != (self.robot_param_dim == 0):
            raise ValueError(
                f"this world model takes {self.robot_param_dim} robot parameters per input; "
                + (
                    "none were given (it needs a simulated robot's parameters)"
                    if params_n is None
                    else "some were given"
                )
            )
        if params_n is None:
            return self.recurrent(state_n, action_n, hidden)
        return self.recurrent(state_n, action_n, hidden, params_n)

    def heads(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(mean, std, contact logits) of the next normalized state: the members as one Gaussian
        (`ensemble_gaussian`; a single model is its one member)."""
        means, stds, contact = self.member_heads(features, state_n)
        return (*ensemble_gaussian(means, stds), contact)

    def member_heads(self, features: torch.Tensor, state_n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(K, ..., 45) member means and stds and the contact logits (K = 1 for a single model)."""
        return self.heads_module.member_outputs(features, state_n)

    def step_members(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`step` with each member's prediction: ((K, B, 45) means, stds, contact logits, hidden)."""
        features, hidden = self.features(state_n[:, None], action_n[:, None], hidden, params_n)
        means, stds, contact = self.member_heads(features[:, -1], state_n)
        return means, stds, contact, hidden

    def sequence(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor | None = None,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: predictions for every next step and the last hidden."""
        features, hidden = self.features(state_n, action_n, hidden, params_n)
        mean, std, contact = self.heads(features, state_n)
        return mean, std, contact, hidden

    def step(
        self,
        state_n: torch.Tensor,
        action_n: torch.Tensor,
        hidden: torch.Tensor,
        params_n: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for (B, .) inputs: (mean, std, contact logits, hidden)."""
        features, hidden = self.features(state_n[:, None], action_n[:, None], hidden, params_n)
        mean, std, contact = self.heads(features[:, -1], state_n)
        return mean, std, contact, hidden

    def auxiliary_loss(self) -> torch.Tensor:
        """Model-specific loss gathered since the last call (RSSM's KL); zero for the others."""
        return torch.zeros(())


def extend_context(hidden: torch.Tensor | None, inputs: torch.Tensor, context: int) -> torch.Tensor:
    """For models whose `hidden` is the last `context` inputs (B, L <= context, 57): append, keep the last."""
    full = inputs if hidden is None or hidden.shape[1] == 0 else torch.cat([hidden, inputs], 1)
    return full[:, -context:]
