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


def heldout_error(model: WorldModel, held: dict[str, torch.Tensor], history: int) -> dict:
    """Relative AR error of `model` on (B, T, .) physical-unit trajectories (normalized space), after
    `history` true steps; the model is left in eval mode. A model given the robots' parameters reads
    them from `held["robot_params"]`; any other model ignores them, so both are scored on one set."""
    s_n = model.normalizer.state(held["state"])
    a_n = model.normalizer.action(held["action"])
    params_n = None
    if model.robot_param_dim:
        if "robot_params" not in held:
            raise ValueError("this world model takes the robots' parameters and the held-out data has none")
        params_n = model.normalizer.robot_params(held["robot_params"])
    return autoregressive_error(
        rollout_trajectories(model, s_n, a_n, history, params_n=params_n), s_n, history
    )
