"""A world model's relative autoregressive error on held-out trajectories: the validation figure of
pretraining, refinement from bags and the MBPO-PPO loop (one implementation for all three)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rwm.data.array_dataset import ArrayDataset
from rwm.evaluation.autoregressive_error import autoregressive_error, rollout_trajectories
from rwm.models.base import WorldModel


def trajectory_tensors(
    states: Sequence[np.ndarray], actions: Sequence[np.ndarray], length: int
) -> dict[str, torch.Tensor] | None:
    """The trajectories of at least `length` rows, cut to `length`: (B, length, .); None if there are none."""
    kept = [i for i, s in enumerate(states) if len(s) >= length]
    if not kept:
        return None
    return {
        "state": torch.from_numpy(np.stack([states[i][:length] for i in kept]).astype(np.float32)),
        "action": torch.from_numpy(np.stack([actions[i][:length] for i in kept]).astype(np.float32)),
    }


def heldout_tensors(dataset: ArrayDataset, length: int) -> dict[str, torch.Tensor]:
    """Every held-out trajectory of a dataset of at least `length` rows, cut to `length`."""
    trajs = [dataset.trajectory(i) for i in range(dataset.num_trajectories)]
    held = trajectory_tensors([t.state for t in trajs], [t.action for t in trajs], length)
    if held is None:
        raise ValueError(f"{dataset.path}: no trajectory of {length} steps")
    return held


def heldout_error(model: WorldModel, held: dict[str, torch.Tensor], history: int) -> dict:
    """Relative AR error of `model` on (B, T, .) physical-unit trajectories (normalized space), after
    `history` true steps; the model is left in eval mode."""
    s_n = model.normalizer.state(held["state"])
    a_n = model.normalizer.action(held["action"])
    return autoregressive_error(rollout_trajectories(model, s_n, a_n, history), s_n, history)
