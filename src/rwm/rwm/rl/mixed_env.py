"""rsl-rl's VecEnv of imagined and real robots side by side: MBPO's real ratio for PPO.

MBPO (Janner et al. 2019) trains its policy on batches that are mostly imagined and partly real
(5 % by default). Here some real (simulated) robots run inside every PPO rollout beside the imagined
ones, on the same policy, so PPO's gradient also comes from the real robots' falls, which the world
model may not show. Their transitions also go to the replay buffer (`AnymalVecEnv.recorder`), in
place of a separate collection, so that every real transition serves the model and the policy.
"""

from __future__ import annotations

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from rwm.rl.imagination_env import ImaginationEnv
from rwm.rl.vec_env import AnymalVecEnv
from rwm.robot import contract as C


class ImaginedAndRealEnv(VecEnv):
    """The imagined robots first, then the real ones, on the imagination's device."""

    def __init__(self, imagination: ImaginationEnv, real: AnymalVecEnv) -> None:
        self.imagination, self.real = imagination, real
        self._imagined = imagination.num_envs
        self.num_envs = imagination.num_envs + real.num_envs
        self.num_actions = C.ACTION_DIM
        # rsl-rl spreads the first episodes' lengths over this at the start: the imagined robots over
        # their whole rollouts, the real ones over the first of their longer episodes only (harmless)
        self.max_episode_length = imagination.max_episode_length
        self.device = imagination.device
        self.cfg = {"imagination": imagination.cfg, "real": real.cfg}

    @property
    def episode_length_buf(self) -> torch.Tensor:
        real = self.real.episode_length_buf.to(self.device, self.imagination.episode_length_buf.dtype)
        return torch.cat([self.imagination.episode_length_buf, real])

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.imagination.episode_length_buf = value[: self._imagined].to(self.device)
        self.real.episode_length_buf = value[self._imagined :]

    def _joined(self, imagined: TensorDict, real: TensorDict) -> TensorDict:
        policy = torch.cat([imagined["policy"], real["policy"].to(self.device)])
        return TensorDict({"policy": policy}, batch_size=[self.num_envs])

    def get_observations(self) -> TensorDict:
        return self._joined(self.imagination.get_observations(), self.real.get_observations())

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        obs_i, reward_i, done_i, extras_i = self.imagination.step(actions[: self._imagined])
        obs_r, reward_r, done_r, extras_r = self.real.step(actions[self._imagined :])
        log = {**extras_i["log"], **{f"/real{k}": v for k, v in extras_r["log"].items()}}
        time_outs = torch.cat([extras_i["time_outs"], extras_r["time_outs"].to(self.device)])
        return (
            self._joined(obs_i, obs_r),
            torch.cat([reward_i, reward_r.to(self.device)]),
            torch.cat([done_i, done_r.to(self.device)]),
            {"time_outs": time_outs, "log": log},
        )

    def close(self) -> None:
        self.imagination.close()
        self.real.close()
