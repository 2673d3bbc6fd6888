"""The policy's interface in one home: the same observation and targets from NumPy and torch, the
sizes that exist, and the numbers the shipped policies were trained and evaluated with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rwm.robot import contract as C
from rwm.robot.policy_io import (
    OBS_DIM,
    OBS_DIM_WITH_LAST_ACTION,
    RAW_ACTION_LIMIT,
    includes_last_action,
    obs_dim,
    policy_observation,
    raw_to_targets,
    targets_to_raw,
)


def _inputs(rng: np.random.Generator, n: int = 5):
    state = rng.normal(size=(n, C.STATE_DIM))
    command = rng.normal(size=(n, C.COMMAND_DIM))
    targets = C.DEFAULT_JOINT_POS + rng.normal(scale=0.3, size=(n, C.ACTION_DIM))
    return state, command, targets


def test_observation_layout_is_table_s4_plus_the_last_raw_action() -> None:
    state, command, targets = _inputs(np.random.default_rng(0))
    obs = policy_observation(state, command, targets)
    assert obs.shape == (5, OBS_DIM_WITH_LAST_ACTION) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[:, 0:9], state[:, 0:9], rtol=1e-6)
    np.testing.assert_allclose(obs[:, 9:12], command, rtol=1e-6)
    np.testing.assert_allclose(
        obs[:, 12:24], state[:, C.JOINT_POS] - C.DEFAULT_JOINT_POS, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(obs[:, 24:36], state[:, C.JOINT_VEL], rtol=1e-6)
    np.testing.assert_allclose(obs[:, 36:48], (targets - C.DEFAULT_JOINT_POS) / 0.5, rtol=1e-5, atol=1e-6)
    assert policy_observation(state, command, None).shape == (5, OBS_DIM)


def test_numpy_and_torch_give_the_same_numbers() -> None:
    state, command, targets = _inputs(np.random.default_rng(1))
    t = lambda x: torch.from_numpy(x).float()  # noqa: E731
    np.testing.assert_allclose(
        policy_observation(t(state), t(command), t(targets)).numpy(),
        policy_observation(state, command, targets),
        atol=1e-5,
    )
    raw = np.random.default_rng(2).normal(scale=8.0, size=(5, 12))
    np.testing.assert_allclose(raw_to_targets(t(raw)).numpy(), raw_to_targets(raw), atol=1e-5)


def test_targets_are_clipped_float64_and_round_trip() -> None:
    raw = np.array([[-30.0, 30.0, 0.5] + [0.0] * 9], dtype=np.float32)  # a policy's float32 output
    targets = raw_to_targets(raw)
    assert targets.dtype == np.float64, "targets keep double precision (the simulator's)"
    np.testing.assert_allclose(targets[0, :3], C.DEFAULT_JOINT_POS[:3] + 0.5 * np.array([-10.0, 10.0, 0.5]))
    out = np.empty(12)
    raw_to_targets(raw[0], out=out)  # the control path's allocation-free form
    np.testing.assert_array_equal(out, targets[0])
    np.testing.assert_allclose(
        targets_to_raw(targets), np.clip(raw, -RAW_ACTION_LIMIT, RAW_ACTION_LIMIT), atol=1e-12
    )


def test_only_the_two_observation_sizes_exist() -> None:
    assert obs_dim(False) == 36 and obs_dim(True) == 48
    assert includes_last_action(48) and not includes_last_action(36)
    with pytest.raises(ValueError, match="36 or 48 wide"):
        includes_last_action(45)
