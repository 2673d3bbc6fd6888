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
from rwm.sim.reward import tracking_reward
from rwm.storage.replay_buffer import TrajectoryRecorder


class AnymalVecEnv(VecEnv):
    """Adapts `BatchedAnymalEnv` to rsl-rl (torch tensors on the CPU)."""

    def __init__(
        self, cfg: EnvConfig, env: BatchedAnymalEnv | None = None, recorder: TrajectoryRecorder | None = None
    ) -> None:
        self.env = env or BatchedAnymalEnv(cfg)
        self.cfg = cfg
        self.recorder = recorder
        """Where every transition goes, for a world model to learn from (MBPO-PPO's real robots inside
        PPO's batch); None: nowhere."""
        self.steps_run, self.falls, self.tracking_sum = 0, 0, 0.0
        """Robot-steps, falls and summed normalized tracking since the last `pop_figures`."""
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
        targets = raw_to_targets(actions.detach().cpu().numpy().astype(np.float64))
        env = self.env
        before = (env.state.copy(), env.contacts.copy(), env.robot_params.copy()) if self.recorder else None
        out = env.step(targets)
        dones = out.terminated | out.truncated
        if before is not None:
            state, contacts, robot_params = before
            self.recorder.add(state, targets, contacts, robot_params, dones)
        self.steps_run += self.num_envs
        self.falls += int(out.terminated.sum())
        self.tracking_sum += float(tracking_reward(out.terms).sum())
        log = {f"/reward/{k}": float(np.mean(v)) for k, v in out.terms.items()}
        log["/episode/falls_per_step"] = float(out.terminated.mean())
        extras = {"time_outs": torch.from_numpy(out.truncated.copy()), "log": log}
        obs = TensorDict({"policy": torch.from_numpy(out.obs.copy())}, batch_size=[self.num_envs])
        reward = torch.from_numpy(out.reward.astype(np.float32))
        return obs, reward, torch.from_numpy(dones.astype(np.int64)), extras

    def pop_figures(self) -> tuple[int, int, float]:
        """Robot-steps, falls and mean normalized tracking per step since the last call."""
        figures = (self.steps_run, self.falls, self.tracking_sum / max(self.steps_run, 1))
        self.steps_run, self.falls, self.tracking_sum = 0, 0, 0.0
        return figures

    def close(self) -> None:
        self.env.close()
