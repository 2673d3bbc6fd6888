"""The world-model learner: one optimizer step of RWM's multi-step loss on a batch of windows.

The algorithm half of rsl_rl's split (its runners sequence collect -> update -> evaluate -> save):
pretraining (`rwm.runners.world_model`), refinement from bags (`rwm.runners.refinement`) and the
MBPO-PPO loop (`rwm.runners.mbpo`) all train through `WorldModelLearner.update`, with one loss
configuration, which a checkpoint carries so that a model is refined with the loss it was trained on.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rwm.models.base import WorldModel
from rwm.training.distributed import Parallel
from rwm.training.latent_regularization import LatentNoise
from rwm.training.losses import world_model_loss

PRECISIONS = ("float32", "bfloat16")


def forward_precision(device: torch.device, precision: str) -> torch.autocast:
    """The autocast region a forward pass of `precision` runs in (disabled for float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


@dataclass
class LearnerConfig:
    """The loss and the optimizer (paper: M = 32, N = 8, lr 1e-4, weight decay 1e-5)."""

    history: int = 32
    horizon: int = 8
    """Forecast steps N; 1 is teacher forcing."""
    decay: float = 1.0
    """Forecast decay alpha: weight alpha^k on forecast step k."""
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    """constant, or cosine: annealed to zero over the run's updates, so the final model is not a
    snapshot of an optimizer still bouncing at full step size."""
    weight_decay: float = 1e-5
    latent_noise: LatentNoise = field(default_factory=LatentNoise)
    jacobian_weight: float = 0.0
    """lambda of the Jacobian penalty on the latent transition (0 = off)."""
    history_grad_steps: int = 0
    """Backpropagate through only the last this many history steps (0: all M, the paper). The rest
    is read without gradients. Backward passes cost about twice the forward ones and the GRU's
    matrix products are most of both (`bench/bench_world_model_training.py`), so 8 of 32 trains
    about 1.6x faster; the held-out figures of the comparison are in
    docs/world_model/history_grad_steps.md. Teacher forcing (horizon 1) has no history to cut."""
    precision: str = "float32"
    """float32, or bfloat16: the loss's forward pass under `torch.autocast` (its matrix products in
    bfloat16), while the weights, the optimizer's state and the loss terms stay float32. On a CPU with
    AMX a bfloat16 product of the GRU's shape runs 6x a float32 one (`bench --profile`); the
    speed-up and the held-out figures are in docs/world_model/precision.md."""
    compile: bool = False
    """Compile the loss's forward and backward passes (`torch.compile`, inductor): the GRU's many
    small elementwise steps fused into C++ kernels, the first update paying about two minutes of
    compilation. Pays with bfloat16, where those steps, not the products, take most of the time; not
    with the Jacobian penalty, whose double backward compiled graphs do not support."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: one of {', '.join(PRECISIONS)}")
        if self.compile and self.jacobian_weight > 0:
            raise ValueError(
                "compile: the Jacobian penalty differentiates twice, which compiled graphs cannot"
            )

    @property
    def window(self) -> int:
        """Rows a training window holds: history plus forecast."""
        return self.history + max(self.horizon, 1)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LearnerConfig:
        """The loss of a saved training configuration (a checkpoint's `train_config`), computed in
        float32 without compilation: precision and compilation say how that run computed, and on
        refinement's short runs or another machine they may not pay."""
        known = {f.name for f in fields(cls)} - {"precision", "compile"}
        kept = {k: v for k, v in values.items() if k in known}
        if isinstance(kept.get("latent_noise"), dict):
            kept["latent_noise"] = LatentNoise(**kept["latent_noise"])
        return cls(**kept)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BatchLoss(nn.Module):
    """The loss terms of a batch as one module call: what DistributedDataParallel wraps."""

    def __init__(self, model: WorldModel, cfg: LearnerConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        contacts: torch.Tensor,
        robot_params: torch.Tensor | None = None,
    ) -> dict:
        model, cfg = self.model, self.cfg
        # the Jacobian penalty differentiates twice, which cuDNN's fused GRU cannot
        with (
            torch.backends.cudnn.flags(enabled=cfg.jacobian_weight <= 0),
            forward_precision(state.device, cfg.precision),
        ):
            return world_model_loss(
                model,
                model.normalizer.state(state),
                model.normalizer.action(action),
                contacts,
                cfg.history,
                cfg.horizon,
                cfg.decay,
                latent_noise=cfg.latent_noise,
                jacobian_weight=cfg.jacobian_weight,
                history_grad_steps=cfg.history_grad_steps,
                params_n=None if robot_params is None else model.normalizer.robot_params(robot_params[:, 0]),
            )


class WorldModelLearner:
    """Adam on the multi-step loss; `update(batch)` normalizes, steps and returns the loss terms.

    With a `parallel` of several processes, the loss runs under DistributedDataParallel: each
    process passes its slice of the batch and the gradients are averaged before the step."""

    def __init__(
        self,
        model: WorldModel,
        cfg: LearnerConfig,
        total_updates: int | None = None,
        parallel: Parallel | None = None,
    ) -> None:
        if cfg.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule {cfg.lr_schedule!r}: constant or cosine")
        if cfg.lr_schedule == "cosine" and not total_updates:
            raise ValueError("a cosine schedule needs the run's total number of updates")
        self.model, self.cfg = model, cfg
        self.device = model.device
        loss = _BatchLoss(model, cfg)
        if cfg.compile:
            if parallel is not None and parallel.world_size > 1:
                raise ValueError("compile: one process (compiled graphs under DDP are not tried here)")
            loss = torch.compile(loss)
        if parallel is not None and parallel.world_size > 1:
            ids = [parallel.device] if parallel.device.type == "cuda" else None
            loss = DistributedDataParallel(loss, device_ids=ids)
        self._loss = loss
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, total_updates)
            if cfg.lr_schedule == "cosine"
            else None
        )

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step on (B, window, .) physical-unit windows of state, action and contacts, and of
        the robots' parameters for a model that takes them (moved to the model's device here)."""
        self.model.train()
        keys = ("state", "action", "contacts", *(("robot_params",) if self.model.robot_param_dim else ()))
        if missing := [k for k in keys if k not in batch]:
            raise ValueError(f"the batch lacks {missing}, which this world model is trained on")
        on = {k: batch[k].to(self.device, non_blocking=True) for k in keys}
        # a compiled loss is traced at its first call (and retraced on new shapes): through nn.GRU
        # rather than around it
        tracing = torch._dynamo.config.patch(allow_rnn=True) if self.cfg.compile else contextlib.nullcontext()
        with tracing:
            losses = self._loss(*on.values())
        self.optimizer.zero_grad()
        losses["total"].backward()
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return {k: v.item() for k, v in losses.items()}
