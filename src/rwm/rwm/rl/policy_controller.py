"""A trained policy as a data-collection controller, with Gaussian noise on its raw actions.

The noise widens the state distribution that the world model is trained on (coverage), as the
paper's pretraining data comes from a velocity-tracking policy with exploration.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rwm.robot import contract as C
from rwm.robot.policy_io import includes_last_action, policy_observation, raw_to_targets

Policy = Callable[[np.ndarray], np.ndarray]
"""Observations (N, obs_dim) -> raw actions (N, 12), e.g. rwm.export.policy_onnx.OnnxPolicy."""


class BatchPolicyController:
    """For the batched environment: (obs, state) -> joint targets."""

    def __init__(self, policy: Policy, action_noise: float = 0.0, seed: int = 0) -> None:
        self.policy, self.action_noise = policy, action_noise
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray, state: np.ndarray) -> np.ndarray:
        u = self.policy(obs)
        if self.action_noise > 0:
            u = u + self.rng.normal(0.0, self.action_noise, u.shape)
        return raw_to_targets(u)


class PolicyController:
    """For one robot (rosbag collection): (time, state) -> joint targets, given the command in force."""

    def __init__(self, policy: Policy, obs_dim: int, action_noise: float = 0.0) -> None:
        self.policy, self.action_noise = policy, action_noise
        self.include_last_action = includes_last_action(obs_dim)
        self.command = np.zeros(C.COMMAND_DIM)
        self.last_targets = C.DEFAULT_JOINT_POS.copy()
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.last_targets = C.DEFAULT_JOINT_POS.copy()

    def set_command(self, command: np.ndarray) -> None:
        self.command = np.asarray(command, dtype=np.float64)

    def __call__(self, t: float, state: np.ndarray) -> np.ndarray:
        last = self.last_targets if self.include_last_action else None
        obs = policy_observation(state[None], self.command[None], None if last is None else last[None])
        u = self.policy(obs)[0]
        if self.action_noise > 0:
            u = u + self.rng.normal(0.0, self.action_noise, u.shape)
        self.last_targets = raw_to_targets(u)
        return self.last_targets
