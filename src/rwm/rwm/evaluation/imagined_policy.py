"""A policy inside a world model's imagination, next to standing still: can the model tell walking
from standing before MBPO-PPO relies on it?

Both run the same imagined robots (same real starting histories, commands and random draws) for one
rollout of `steps`; reported per policy: the imagined reward per step, the tracking terms, and the
predicted falls. A world model fit for MBPO-PPO gives a good walking policy (e.g. the model-free PPO
expert) clearly more reward than standing, and few falls. This is how the sampling temperature of
`ImaginationConfig` was chosen (models/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from rwm.models.base import WorldModel
from rwm.rl.imagination_env import ImaginationConfig, ImaginationEnv
from rwm.storage.replay_buffer import ReplayBuffer


def imagined_rollout(
    model: WorldModel,
    buffer: ReplayBuffer,
    policy: Callable[[np.ndarray], np.ndarray],
    cfg: ImaginationConfig,
    steps: int = 100,
) -> dict[str, float]:
    """One imagined rollout of `steps` for every robot of `cfg` (one episode: no time-out inside)."""
    env = ImaginationEnv(model, buffer, replace(cfg, episode_steps=steps + 1))
    obs = env.get_observations()["policy"]
    falls, terms = 0, {}
    for _ in range(steps):
        raw = np.asarray(policy(obs.numpy().astype(np.float32)), dtype=np.float32)
        out, _, done, extras = env.step(torch.from_numpy(raw))
        obs = out["policy"]
        falls += int((done.bool() & ~extras["time_outs"]).sum())
        for k, v in extras["log"].items():
            terms[k] = terms.get(k, 0.0) + v / steps
    return {
        "reward_per_step": round(env.pop_reward_mean(), 5),
        "lin_vel_tracking": round(terms["/imagined_reward/lin_vel_tracking"], 4),
        "yaw_rate_tracking": round(terms["/imagined_reward/yaw_rate_tracking"], 4),
        "falls": falls,
        "robots": cfg.num_envs,
    }


def compare_with_standing(
    model: WorldModel,
    buffer_factory: Callable[[], ReplayBuffer],
    policy: Callable[[np.ndarray], np.ndarray],
    cfg: ImaginationConfig,
    steps: int = 100,
) -> dict[str, dict[str, float]]:
    """`imagined_rollout` of `policy` and of standing still (raw action 0), from identical starts."""
    results = {}
    for name, act in (("policy", policy), ("standing", lambda o: np.zeros((len(o), 12), np.float32))):
        torch.manual_seed(cfg.seed)
        results[name] = imagined_rollout(model, buffer_factory(), act, cfg, steps)
    return results
