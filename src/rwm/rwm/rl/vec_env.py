"""rsl-rl's VecEnv over the batched MuJoCo ANYmal: the one seam between PPO and the simulator.

The policy outputs raw actions u; the robot receives joint targets a = q_default + 0.5 u
(CONTRACT.md). Observations are the group "policy" (Table S4 plus the last raw action).
"""

from __future__ import annotations

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from rwm.robot import contract as C
from rwm.robot.policy_io import raw_to_targets
from rwm.sim.batched_env import BatchedAnymalEnv, EnvConfig


class AnymalVecEnv(VecEnv):
    """Adapts `BatchedAnymalEnv` to rsl-rl (torch tensors on the CPU)."""

    def __init__(self, cfg: EnvConfig, env: BatchedAnymalEnv | None = None) -> None:
        self.env = env or BatchedAnymalEnv(cfg)
        self.cfg = cfg
        self.num_envs = self.env.num_envs
        self.num_actions = C.ACTION_DIM
        self.max_episode_length = self.env.max_episode_steps
        self.device = "cpu"
        self._obs = torch.from_numpy(self.env.observation())  # shares memory with the env's buffer

    @property
    def episode_length_buf(self) -> torch.Tensor:
        return torch.from_numpy(self.env.episode_step)

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        # rsl-rl randomizes episode lengths at start so that resets do not happen all at once.
        self.env.episode_step[:] = value.cpu().numpy()

    def get_observations(self) -> TensorDict:
        return TensorDict({"policy": self._obs.clone()}, batch_size=[self.num_envs])

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        out = self.env.step(raw_to_targets(actions.detach().cpu().numpy().astype(np.float64)))
        dones = out.terminated | out.truncated
        log = {f"/reward/{k}": float(np.mean(v)) for k, v in out.terms.items()}
        log["/episode/falls_per_step"] = float(out.terminated.mean())
        extras = {"time_outs": torch.from_numpy(out.truncated.copy()), "log": log}
        obs = TensorDict({"policy": torch.from_numpy(out.obs.copy())}, batch_size=[self.num_envs])
        reward = torch.from_numpy(out.reward.astype(np.float32))
        return obs, reward, torch.from_numpy(dones.astype(np.int64)), extras

    def close(self) -> None:
        self.env.close()
