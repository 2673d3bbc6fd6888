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
    states: Sequence[np.ndarray],
    actions: Sequence[np.ndarray],
    length: int,
    robot_params: Sequence[np.ndarray] | None = None,
) -> dict[str, torch.Tensor] | None:
    """The trajectories of at least `length` rows, cut to `length`: (B, length, .), with each one's
    (B, 8) robot parameters (first row of its (T, 8) `robot_params`) where known; None if there are none."""
    kept = [i for i, s in enumerate(states) if len(s) >= length]
    if not kept:
        return None
    out = {
        "state": torch.from_numpy(np.stack([states[i][:length] for i in kept]).astype(np.float32)),
        "action": torch.from_numpy(np.stack([actions[i][:length] for i in kept]).astype(np.float32)),
    }
    if robot_params is not None:
        out["robot_params"] = torch.from_numpy(
            np.stack([robot_params[i][0] for i in kept]).astype(np.float32)
        )
    return out


def heldout_tensors(dataset: ArrayDataset, length: int) -> dict[str, torch.Tensor]:
    """Every held-out trajectory of a dataset of at least `length` rows, cut to `length`."""
    trajs = [dataset.trajectory(i) for i in range(dataset.num_trajectories)]
    robot_params = None if dataset.robot_params is None else [t.robot_params for t in trajs]
    held = trajectory_tensors([t.state for t in trajs], [t.action for t in trajs], length, robot_params)
    if held is None:
        raise ValueError(f"{dataset.path}: no trajectory of {length} steps")
    return held


def heldout_params_n(model: WorldModel, held: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The normalized robot parameters of `held` for a model that takes them (refused where the
    held-out data has none), None for any other model."""
    if not model.robot_param_dim:
        return None
    if "robot_params" not in held:
        raise ValueError("this world model takes the robots' parameters and the held-out data has none")
    return model.normalizer.robot_params(held["robot_params"])


def heldout_error(model: WorldModel, held: dict[str, torch.Tensor], history: int) -> dict:
    """Relative AR error of `model` on (B, T, .) physical-unit trajectories (normalized space), after
    `history` true steps; the model is left in eval mode. A model given the robots' parameters reads
    them from `held["robot_params"]`; any other model ignores them, so both are scored on one set."""
    s_n = model.normalizer.state(held["state"])
    a_n = model.normalizer.action(held["action"])
    params_n = heldout_params_n(model, held)
    return autoregressive_error(
        rollout_trajectories(model, s_n, a_n, history, params_n=params_n), s_n, history
    )
